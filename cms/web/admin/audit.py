"""The audit log."""

from __future__ import annotations

from typing import Any

from flask import g, render_template, request
from flask_babel import gettext as _
from sqlalchemy import or_, select

from cms.models import AuditLog, NoticeTemplate
from cms.publishers import credential_labels
from cms.services import breakin as breakin_svc
from cms.services import templates as template_svc
from cms.services import users as user_svc
from cms.services.announcements import STATUS_LABELS
from cms.services.audit import (
    ACTION_LABELS,
    DETAIL_LABELS,
    OBJECT_LABELS,
    VIA_LABELS,
    actions_matching,
    detail_value,
)
from cms.services.chats import PLATFORM_LABELS
from cms.services.scope import Scope
from cms.web.admin import ADMIN, bp
from cms.web.auth import rule
from cms.web.db import db
from cms.web.forms import int_arg, paginate
from cms.web.publishing import publisher_nouns


@bp.get("/audit")
@rule(ADMIN)
def audit() -> Any:
    """The audit log, newest first."""
    stmt = (
        select(AuditLog)
        .where(Scope.of(g.user).audit())
        .order_by(AuditLog.at.desc(), AuditLog.id.desc())
    )
    action = (request.args.get("action") or "").strip()[:60]
    if action:
        # By what people read ("审核", "群聊") or by the code ("announcement.").
        # The labels as the page shows them (a publisher's action names its noun).
        codes = actions_matching(action, lambda label: _(label).format(noun=publisher_nouns()))
        stmt = stmt.where(or_(AuditLog.action.in_(codes), AuditLog.action.startswith(action)))
    page = paginate(stmt, int_arg("page", 1) or 1, 50)
    return render_template(
        "admin/audit.html",
        page=page,
        action=action,
        action_labels=ACTION_LABELS,
        # A publisher's credential fields (e.g. an account's id) read as its plugin names them.
        detail_labels={**credential_labels(), **DETAIL_LABELS},
        object_labels=OBJECT_LABELS,
        detail_value=detail_value,
        translate=_,
        detail_words=_detail_words(page.items),
    )


def _detail_words(entries: list[AuditLog]) -> dict[str, dict[str, str]]:
    """The words for the enum-like detail values on a page of the log (raw value → msgid or
    name): break-in rules, roles, states, platforms, how a play was confirmed, templates."""
    roles = {role.value: label for role, label in user_svc.ROLE_LABELS.items()}
    states = dict(STATUS_LABELS)
    templates = {t.key: t.name for t in template_svc.SHIPPED}
    ids = {
        int(key)
        for e in entries
        for key in [str((e.detail or {}).get("template", ""))]
        if key.isdigit()
    }
    if ids:
        rows = db().scalars(select(NoticeTemplate).where(NoticeTemplate.id.in_(ids)))
        templates |= {str(row.id): row.name for row in rows}
    return {
        "rule": dict(breakin_svc.RULES),
        "role": roles,
        "previous_status": states,
        "platform": dict(PLATFORM_LABELS),
        "via": dict(VIA_LABELS),
        "template": templates,
    }
