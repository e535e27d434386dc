"""Group chats in the CMS: bound chats, one-time binding and link codes, unbinding."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from cms.channels import FormField, load_channel, plugins
from cms.models import ChatGroup, Role, User
from cms.services import areas as area_svc
from cms.services import chats as chat_svc
from cms.services.errors import N_, DomainError, NotFound, ValidationError
from cms.services.scope import Scope
from cms.web.auth import rule
from cms.web.db import db, settings, transaction
from cms.web.forms import field_errors, form_id, message

ADMIN_UNBOUND = N_("管理员在后台解除绑定")

bp = Blueprint("chats", __name__, url_prefix="/chats")


@bp.app_template_global()
def robot_platform_names(last_or: bool = False) -> str:
    """The installed platforms bound by an address (the group robots), translated and joined
    in the reader's way: "企业微信、钉钉、飞书", or with ``last_or`` "企业微信、钉钉或飞书"."""
    names = [_(p.label) for p in plugins().values() if p.by_address]
    if last_or and len(names) > 1:
        return _("{items}或{last}").format(items=_("、").join(names[:-1]), last=names[-1])
    return _("、").join(names)


@bp.app_template_global()
def robot_intros() -> list[str]:
    """The lines the robot platforms' plugins give for the bind form, each once."""
    return list(dict.fromkeys(p.intro for p in plugins().values() if p.by_address and p.intro))
ADMIN = Role.ADMIN


def _chat(chat_group_id: int) -> ChatGroup:
    """A chat bound inside the user's area (one outside it is not found)."""
    chat = chat_svc.get_chat(db(), chat_group_id)
    if not Scope.of(g.user).has_chat(chat):
        raise NotFound(N_("群聊 {id} 不存在"), id=chat_group_id)
    return chat


def _robot_fields() -> list[FormField]:
    """The bind form's inputs: every address-bound platform's declared fields, once each."""
    fields: dict[str, FormField] = {}
    for found in plugins().values():
        if found.by_address:
            for f in found.fields:
                fields.setdefault(f.name, f)
    return list(fields.values())


def _fields(form: dict[str, str]) -> dict[str, str]:
    """What the bind form was given for the platforms' own fields, by name."""
    return {f.name: form[f.name] for f in _robot_fields()}


def _page(status: int = 200, **shown: Any) -> Any:
    scope = Scope.of(g.user)
    # The platforms in the order their plugins give (the work robots, then Telegram).
    order = list(plugins())
    chats = sorted(
        (c for c in chat_svc.list_chats(db()) if scope.has_chat(c)),
        key=lambda c: order.index(c.platform) if c.platform in order else len(order),
    )
    return render_template(
        "chats/index.html",
        chats=chats,
        area_names={c.id: area_svc.full_name(db(), c.area) for c in chats},
        areas=scope.areas(db()),
        users=list(
            db().scalars(
                select(User).where(User.active, scope.users()).order_by(User.role, User.username)
            )
        ),
        # The platforms whose chats are bound by a code, each with whether it can send
        # (while it cannot, their chats wait in the local outbox).
        code_platforms=[
            (p, p.ready(settings())) for p in plugins().values() if not p.by_address
        ],
        robot_platforms=dict(chat_svc.ROBOT_PLATFORMS),
        robot_fields=_robot_fields(),
        platforms=dict(chat_svc.PLATFORM_LABELS),
        robot_form=(robot_form := shown.pop("robot_form", {})),
        robot_errors=shown.pop("robot_errors", {}),
        robot_hint=getattr(plugins().get(robot_form.get("platform", "")), "hint", None),
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
    with transaction() as tx:
        area = Scope.of(g.user).get_area(db(), area_id)
        code = chat_svc.create_binding_code(db(), g.user, area)
    if not tx.ok:
        return _page(400)
    return _page(new_code=code, code_area=area_svc.full_name(db(), area))


@bp.post("/link-codes")
@rule(ADMIN)
def link_code() -> Any:
    """Create a one-time code that links an operator's chat account; shown once."""
    user_id = form_id("user_id")
    user = db().get(User, user_id) if user_id is not None else None
    if user is None or not Scope.of(g.user).has_user(user):
        flash(_("请选择用户"), "error")
        return _page(400)
    with transaction() as tx:
        code = chat_svc.create_link_code(db(), g.user, user)
    if not tx.ok:
        return _page(400)
    return _page(new_link_code=code, link_user=user)


@bp.post("/<int:chat_group_id>/unbind")
@rule(ADMIN)
def unbind(chat_group_id: int) -> Any:
    """Stop posting to a chat."""
    with transaction() as tx:
        chat = _chat(chat_group_id)
        chat_svc.unbind_chat(db(), g.user, chat, ADMIN_UNBOUND)
    if tx.ok:
        flash(_("已解除绑定"), "success")
    return redirect(url_for(".index"))


@bp.post("/robots")
@rule(ADMIN)
def bind_robot() -> Any:
    """Bind a group robot (WeCom, DingTalk, Feishu …) by the fields its plugin declares (a
    webhook address and a secret), passed to the plugin as they are."""
    form = {
        name: request.form.get(name, "").strip()[:2000]
        for name in ("platform", *(f.name for f in _robot_fields()), "title", "area_id")
    }
    errors: dict[str, str] = {}
    area_id = form_id("area_id")
    if area_id is None:
        errors["area_id"] = _("请选择区域")
    with transaction(flash=False) as tx:
        hook_errors: dict[str, str] = {}
        try:
            chat_svc.validate_binding(
                form["platform"], form, allow_local=settings().allow_local_webhooks
            )
        except ValidationError as exc:
            hook_errors = field_errors(exc)
        errors.update(hook_errors)
        if errors:
            return _page(400, robot_form=form, robot_errors=errors)
        assert area_id is not None
        area = Scope.of(g.user).get_area(db(), area_id)
        chat = chat_svc.bind_robot(
            db(),
            g.user,
            platform=form["platform"],
            area=area,
            title=form["title"],
            allow_local=settings().allow_local_webhooks,
            **_fields(form),
        )
    if not tx.ok:
        return _page(400, robot_form=form, robot_errors={"form": tx.message})
    flash(
        _("已绑定机器人“{title}”到 {area}。可以点“发送测试消息”试一下。").format(
            title=chat.title or chat.chat_id, area=area_svc.full_name(db(), area)
        ),
        "success",
    )
    return redirect(url_for(".index"))


@bp.post("/<int:chat_group_id>/test")
@rule(ADMIN)
def test_message(chat_group_id: int) -> Any:
    """Post a short test message to a group robot and show the platform's answer."""
    try:
        chat = _chat(chat_group_id)
    except DomainError as exc:
        flash(message(exc), "error")
        return _page(404)
    if chat.platform not in chat_svc.ROBOT_PLATFORMS:
        flash(_("只有群机器人可以发送测试消息"), "error")
        return _page(400)
    with transaction(catch=()):
        answer = chat_svc.send_test_message(
            db(),
            g.user,
            chat,
            load_channel(settings(), chat.platform),
            allow_local=settings().allow_local_webhooks,
        )
    return _page(
        200 if answer.ok else 502,
        test_chat_id=chat.id,
        test_ok=answer.ok,
        test_answer=answer.message.render(_),
    )
