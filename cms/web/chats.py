"""Group chats in the CMS: bound chats, one-time binding and link codes, unbinding."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from cms.models import Role, User
from cms.services import areas as area_svc
from cms.services import chats as chat_svc
from cms.services.errors import DomainError
from cms.web.auth import rule
from cms.web.db import db, settings
from cms.web.forms import form_id, message

bp = Blueprint("chats", __name__, url_prefix="/chats")
ADMIN = Role.ADMIN


def _page(status: int = 200, **shown: Any) -> Any:
    chats = chat_svc.list_chats(db())
    return render_template(
        "chats/index.html",
        chats=chats,
        area_names={c.id: area_svc.full_name(db(), c.area) for c in chats},
        areas=area_svc.all_areas(db()),
        users=list(
            db().scalars(select(User).where(User.active).order_by(User.role, User.username))
        ),
        telegram_on=bool(settings().telegram_token),
        **shown,
    ), status


@bp.get("")
@rule(ADMIN)
def index() -> Any:
    """Bound chats, and forms for one-time codes."""
    return _page()


@bp.post("/codes")
@rule(ADMIN)
def binding_code() -> Any:
    """Create a one-time code that binds a group chat to an area; shown once."""
    area_id = form_id("area_id")
    if area_id is None:
        flash(_("请选择区域"), "error")
        return _page(400)
    try:
        area = area_svc.get_area(db(), area_id)
        code = chat_svc.create_binding_code(db(), g.user, area)
        db().commit()
    except DomainError as exc:
        db().rollback()
        flash(message(exc), "error")
        return _page(400)
    return _page(new_code=code, code_area=area_svc.full_name(db(), area))


@bp.post("/link-codes")
@rule(ADMIN)
def link_code() -> Any:
    """Create a one-time code that links an operator's chat account; shown once."""
    user_id = form_id("user_id")
    user = db().get(User, user_id) if user_id is not None else None
    if user is None:
        flash(_("请选择用户"), "error")
        return _page(400)
    try:
        code = chat_svc.create_link_code(db(), g.user, user)
        db().commit()
    except DomainError as exc:
        db().rollback()
        flash(message(exc), "error")
        return _page(400)
    return _page(new_link_code=code, link_user=user)


@bp.post("/<int:chat_group_id>/unbind")
@rule(ADMIN)
def unbind(chat_group_id: int) -> Any:
    """Stop posting to a chat."""
    try:
        chat = chat_svc.get_chat(db(), chat_group_id)
        chat_svc.unbind_chat(db(), g.user, chat, _("管理员在后台解除绑定"))
        db().commit()
        flash(_("已解除绑定"), "success")
    except DomainError as exc:
        db().rollback()
        flash(message(exc), "error")
    return redirect(url_for(".index"))
