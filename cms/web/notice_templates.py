"""Notice templates: the library, an office's own templates, and a new draft from one."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cms import tree
from cms.models import NoticeTemplate
from cms.roles import EDITORS, STAFF
from cms.services import announcements as ann_svc
from cms.services import templates as svc
from cms.services.errors import NotFound, ValidationError
from cms.services.scope import Scope
from cms.web import today
from cms.web.auth import rule
from cms.web.db import db, settings, transaction
from cms.web.forms import message

bp = Blueprint("notice_templates", __name__, url_prefix="/templates")

INPUT_TYPES = {
    svc.FieldKind.DATE: "date",
    svc.FieldKind.TIME: "time",
    svc.FieldKind.PHONE: "tel",
    svc.FieldKind.AMOUNT: "text",
    svc.FieldKind.TEXT: "text",
}
KIND_HINTS = {
    svc.FieldKind.DATE: "",
    svc.FieldKind.TIME: "",
    svc.FieldKind.PHONE: "0871-6512 3456 / 13812345678",
    svc.FieldKind.AMOUNT: "60",
    svc.FieldKind.TEXT: "",
}
# The rest of the draft's content the fill-in page asks for; the draft's page has the rest.
CONTENT_FIELDS = ("area_ids", "start_date", "end_date", "end_time", "chat_post_time")


@bp.get("/")
@rule(*STAFF)
def index() -> Any:
    """The templates this office may use, and its own to manage."""
    return render_template(
        "notice_templates/index.html",
        templates=svc.available(db(), g.user),
        own=[t for t in svc.available(db(), g.user, include_disabled=True) if t.editable],
        may_edit=g.user.role in EDITORS,
    )


def _row(template_id: int) -> NoticeTemplate:
    row = db().get(NoticeTemplate, template_id)
    if row is None or not any(
        t.row_id == row.id for t in svc.available(db(), g.user, include_disabled=True)
    ):
        abort(404, description=_("模板不存在"))
    return row


@bp.route("/new", methods=["GET", "POST"])
@bp.route("/<int:template_id>/edit", methods=["GET", "POST"])
@rule(*EDITORS)
def edit(template_id: int | None = None) -> Any:
    """Add a template for this office, or change or disable one of its own."""
    row = _row(template_id) if template_id is not None else None
    data = (
        {"name": row.name, "title": row.title, "body": row.body}
        if row is not None
        else {"name": "", "title": "", "body": ""}
    )
    if request.method == "POST":
        data = {k: request.form.get(k, "") for k in ("name", "title", "body")}
        with transaction(flash=False) as tx:
            saved = svc.save(
                db(), g.user, row, **data, active=request.form.get("action") != "disable"
            )
        if tx.fields:
            return render_template(
                "notice_templates/edit.html", row=row, data=data, errors=tx.fields
            ), 400
        if not tx.ok:
            abort(403, description=tx.message)
        flash(_("模板已停用") if not saved.active else _("模板已保存"), "success")
        return redirect(url_for(".index"))
    return render_template("notice_templates/edit.html", row=row, data=data, errors={})


@bp.route("/use/<key>", methods=["GET", "POST"])
@rule(*EDITORS)
def use(key: str) -> Any:
    """Fill a template in: a new draft, then the normal review."""
    try:
        template = svc.get(db(), g.user, key)
    except NotFound as exc:
        abort(404, description=message(exc))
    day = today(settings())
    office = tree.area_of_user(db(), g.user)
    if request.method == "POST":
        values = {f.name: request.form.get(f"field:{f.name}", "") for f in template.fields}
        content: dict[str, Any] = {
            "area_ids": request.form.getlist("area_ids"),
            "start_date": request.form.get("start_date", ""),
            "end_date": request.form.get("end_date", ""),
            "end_time": request.form.get("end_time", ""),
            "chat_post_time": request.form.get("chat_post_time", ""),
            "to_loudspeaker": "to_loudspeaker" in request.form,
            "to_chats": "to_chats" in request.form,
            "repeats": 2,
            "voice": tree.default_voice(db(), office),
        }
        with transaction(catch=ValidationError, flash=False) as tx:
            ann = svc.draft_from(db(), g.user, template, values, content, today=day)
        if not tx.ok:
            return render_template(
                "notice_templates/use.html",
                **_use_context(template, {**content, "fields": values}, tx.fields),
            ), 400
        flash(_("已按模板生成草稿：请检查内容，然后提交审核"), "success")
        return redirect(url_for("announcements.show", announcement_id=ann.id))
    start, end = ann_svc.default_window(day)
    data = {
        "area_ids": [],
        "start_date": start.isoformat(),
        "end_date": end.isoformat(),
        "end_time": "",
        "chat_post_time": "09:00",
        "to_loudspeaker": True,
        "to_chats": True,
        "fields": {},
    }
    return render_template("notice_templates/use.html", **_use_context(template, data, {}))


def _use_context(
    template: svc.Template, data: dict[str, Any], errors: dict[str, str]
) -> dict[str, Any]:
    return {
        "template": template,
        "fields": [
            {
                "name": f.name,
                "kind": f.kind.value,
                "type": INPUT_TYPES[f.kind],
                "hint": KIND_HINTS[f.kind],
                "value": data["fields"].get(f.name, ""),
            }
            for f in template.fields
        ],
        "areas": Scope.of(g.user).areas(db()),
        "data": data,
        "errors": errors,
    }
