"""The township's staff channel on the settings page: which work robot, and what goes there."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, request, url_for
from flask_babel import gettext as _

from cms.models import Area, Role
from cms.services import staff as svc
from cms.services.chats import ROBOT_PLATFORMS
from cms.services.scope import Scope
from cms.web.auth import rule
from cms.web.db import db, settings, transaction
from cms.web.forms import form_id

bp = Blueprint("staff", __name__, url_prefix="/admin/staff-channel")


@bp.app_context_processor
def _staff_settings() -> dict[str, Any]:
    """``staff_settings(area)`` for the settings page's staff channel section."""

    def staff_settings(area: Area) -> dict[str, Any]:
        return {
            "robots": svc.robots_of(db(), area),
            "channel": svc.channel_of(db(), area),
            "events": svc.EVENTS,
        }

    return {"staff_settings": staff_settings, "robot_names": ROBOT_PLATFORMS}


@bp.post("")
@rule(Role.ADMIN)
def save() -> Any:
    """Bind, change or remove the township's staff channel."""
    area_id = form_id("area_id")
    area = db().get(Area, area_id) if area_id is not None else None
    if area is None or not Scope.of(g.user).contains(area):
        abort(404)  # a neighbour township's area answers as a missing one
    with transaction(flash=False) as tx:
        svc.bind(
            db(),
            g.user,
            area,
            form_id("chat_group_id"),
            request.form.getlist("events"),
            settings().now(),
        )
    if tx.ok:
        flash(_("工作群设置已保存"), "success")
    elif tx.fields:
        flash(tx.text, "error")
    else:
        abort(403, description=tx.message)
    return redirect(url_for("admin.settings_page", area_id=area.id) + "#staff-channel")
