"""The area tree, and the outlets with their slots and operators."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from audio.voices import VOICES
from cms import tree
from cms.models import OutletKind, Role, User
from cms.services import areas as area_svc
from cms.services import outlets as outlet_svc
from cms.services.errors import N_, DomainError, Message, ValidationError
from cms.services.labels import ENGINE_MODE_LABELS
from cms.services.scope import Scope
from cms.web.admin import ADMIN, bp
from cms.web.auth import rule
from cms.web.db import db, settings, transaction
from cms.web.forms import form_id, form_ids, message


@bp.route("/areas", methods=["GET", "POST"])
@rule(ADMIN)
def areas() -> Any:
    """The area tree; add an area under any node."""
    form: dict[str, Any] = {}
    status = 200
    if request.method == "POST":
        form = request.form.to_dict()
        parent_id = form_id("parent_id")
        with transaction() as tx:
            if parent_id is None and request.form.get("parent_id", "").strip():
                raise ValidationError({"parent_id": Message(N_("请选择存在的区域"))})
            area_svc.create_area(
                db(),
                g.user,
                name=form.get("name", ""),
                kind=form.get("kind", ""),
                parent_id=parent_id,
            )
        if tx.ok:
            flash(_("已添加区域“{name}”").format(name=form.get("name", "").strip()), "success")
            return redirect(url_for(".areas"))
        status = 400
    scope = Scope.of(g.user)
    return render_template(
        "admin/areas.html",
        areas=scope.areas(db()),
        kinds=area_svc.AREA_KIND_LABELS,
        form=form,
        top_allowed=scope.whole,
    ), status


@bp.post("/areas/<int:area_id>")
@rule(ADMIN)
def area_update(area_id: int) -> Any:
    """Rename or delete an area."""
    try:
        area = Scope.of(g.user).get_area(db(), area_id)
    except DomainError as exc:
        abort(404, description=message(exc))
    with transaction() as tx:
        if request.form.get("action") == "delete":
            area_svc.delete_area(db(), g.user, area)
            done = _("已删除")
        else:
            area_svc.rename_area(db(), g.user, area, request.form.get("name", ""))
            done = _("已保存")
    if tx.ok:
        flash(done, "success")
    return redirect(url_for(".areas"))


@bp.get("/outlets")
@rule(ADMIN)
def outlets() -> Any:
    """Outlets and their daily slots."""
    return render_template(
        "admin/outlets.html",
        outlets=outlet_svc.all_outlets(db(), Scope.of(g.user)),
        kinds=outlet_svc.OUTLET_KIND_LABELS,
        voices=VOICES,
        engines=outlet_svc.OUTLET_ENGINES,
    )


@bp.route("/outlets/new", methods=["GET", "POST"])
@bp.route("/outlets/<int:outlet_id>", methods=["GET", "POST"])
@rule(ADMIN)
def outlet_edit(outlet_id: int | None = None) -> Any:
    """Create or edit an outlet with its slots and operators."""
    outlet = None
    scope = Scope.of(g.user)
    if outlet_id is not None:
        try:
            outlet = outlet_svc.get_outlet(db(), outlet_id)
        except DomainError as exc:
            abort(404, description=message(exc))
        if not scope.has_outlet(outlet):
            abort(404, description=_("广播点不存在"))
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form
        with transaction(catch=ValidationError, flash=False) as tx:
            saved = outlet_svc.save_outlet(
                db(),
                g.user,
                outlet,
                name=form.get("name", ""),
                kind=form.get("kind", ""),
                area_id=form.get("area_id", ""),
                slots=form.get("slots", ""),
                loop_minutes=form.get("loop_minutes", "30"),
                note=form.get("note", ""),
                active="active" in form,
                voice=form.get("voice", ""),
                tts_engine=form.get("tts_engine", ""),
            )
            ids = form_ids("operator_ids")
            saved.operators = list(
                db().scalars(
                    select(User).where(User.id.in_(ids), User.role == Role.OPERATOR, scope.users())
                )
            )
        if tx.ok:
            flash(_("已保存"), "success")
            return redirect(url_for(".outlets"))
        errors = tx.fields
        data = {
            "name": form.get("name", ""),
            "kind": form.get("kind", ""),
            "area_id": form.get("area_id", ""),
            "slots": form.get("slots", ""),
            "loop_minutes": form.get("loop_minutes", ""),
            "note": form.get("note", ""),
            "active": "active" in form,
            "operator_ids": form.getlist("operator_ids"),
            "voice": form.get("voice", ""),
            "tts_engine": form.get("tts_engine", ""),
        }
    elif outlet is not None:
        data = {
            "name": outlet.name,
            "kind": outlet.kind.value,
            "area_id": str(outlet.area_id),
            "slots": ", ".join(f"{s.label} {s.minutes}" for s in outlet.slots),
            "loop_minutes": outlet.loop_minutes,
            "note": outlet.note,
            "active": outlet.active,
            "operator_ids": [str(u.id) for u in outlet.operators],
            "voice": outlet.voice or "",
            "tts_engine": outlet.tts_engine or "",
        }
    else:
        data = {
            "kind": OutletKind.LOUDSPEAKER.value,
            "slots": tree.default_slots(db(), tree.area_of_user(db(), g.user)),
            "loop_minutes": 30,
            "active": True,
            "operator_ids": [],
        }
    operators = list(
        db().scalars(
            select(User).where(User.role == Role.OPERATOR, scope.users()).order_by(User.username)
        )
    )
    return render_template(
        "admin/outlet_form.html",
        outlet=outlet,
        data=data,
        errors=errors,
        areas=scope.areas(db()),
        kinds=outlet_svc.OUTLET_KIND_LABELS,
        operators=operators,
        voices=VOICES,
        engines=outlet_svc.OUTLET_ENGINES,
        inherited_engine=ENGINE_MODE_LABELS.get(
            tree.engine_mode(db(), outlet.area if outlet else None, settings().tts_engine), ""
        ),
    ), (400 if errors else 200)
