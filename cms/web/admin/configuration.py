"""The settings of the county and each township, and the topic list."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from audio.voices import VOICES
from cms import tree
from cms.models import Setting, Topic, get_setting
from cms.services import topics as topic_svc
from cms.services import township
from cms.services.announcements import SELF_APPROVAL_SETTING
from cms.services.audit import record
from cms.services.errors import ValidationError
from cms.services.labels import ENGINE_MODE_LABELS
from cms.settings import TTS_ENGINES
from cms.web.admin import ADMIN, bp
from cms.web.auth import rule
from cms.web.db import db, settings, transaction
from cms.web.forms import chosen_area, form_id


@bp.route("/topics", methods=["GET", "POST"])
@rule(ADMIN)
def topics() -> Any:
    """The topic list."""
    if request.method == "POST":
        if not topic_svc.may_change(g.user):
            abort(403, description=_("主题由全县（整个系统）的管理员维护，乡镇管理员只能查看"))
        topic = None
        if request.form.get("topic_id", "").strip():
            topic_id = form_id("topic_id")
            topic = db().get(Topic, topic_id) if topic_id is not None else None
            if topic is None:
                abort(404, description=_("主题不存在"))
        # The box counts only where the form shows it (``active_shown``): a rename sent
        # without it keeps the topic's state.
        active = "active" in request.form if request.form.get("active_shown") else None
        with transaction() as tx:
            topic_svc.save_topic(
                db(), g.user, topic, name=request.form.get("name", ""), active=active
            )
        if tx.ok:
            flash(_("已保存"), "success")
        return redirect(url_for(".topics"))
    return render_template(
        "admin/topics.html",
        topics=topic_svc.all_topics(db()),
        may_change=topic_svc.may_change(g.user),
    )


@bp.route("/settings", methods=["GET", "POST"])
@rule(ADMIN)
def settings_page() -> Any:
    """Global settings and each township's own (empty: inherited from the county/global)."""
    errors: dict[str, str] = {}
    form: dict[str, str] = {}
    area = chosen_area(errors)
    if request.method == "POST" and not errors:
        form = {key: request.form[key] for key in township.KEYS if key in request.form}
        with transaction(catch=ValidationError, flash=False) as tx:
            township.save(db(), g.user, area, form, engines=_engines())
            if area is None:
                allow = "allow_self_approval" in request.form
                row = db().scalar(
                    select(Setting).where(
                        Setting.key == SELF_APPROVAL_SETTING, Setting.area_id.is_(None)
                    )
                )
                if row is None:
                    db().add(Setting(key=SELF_APPROVAL_SETTING, value=allow))
                elif row.value != allow:
                    row.value = allow
                record(db(), g.user, "setting.update", None, key=SELF_APPROVAL_SETTING, value=allow)
        if tx.ok:
            flash(_("已保存"), "success")
            return redirect(url_for(".settings_page", area_id=area.id if area else None))
        errors = tx.fields
    elif request.method == "POST":
        form = {key: request.form[key] for key in township.KEYS if key in request.form}
    defaults = tree.env_defaults(settings())
    values = tree.Values(db(), township.KEYS)
    rows = []
    for key in township.KEYS:
        resolved = values.resolve(key, area, defaults[key])
        own = not resolved.inherited_by(area)
        rows.append(
            {
                "key": key,
                "label": township.LABELS[key],
                "value": form.get(key, resolved.value if own else ""),
                "inherited": None if own else resolved,
                "shown": _shown(key, resolved.value),
            }
        )
    return render_template(
        "admin/settings.html",
        area=area,
        townships=township.scoped_townships(db(), g.user),
        rows=rows,
        errors=errors,
        voices=VOICES,
        engines={mode: ENGINE_MODE_LABELS[mode] for mode in _engines()},
        office_default=township.office_name(db(), area),
        allow_self_approval=(
            "allow_self_approval" in request.form
            if request.method == "POST"
            else bool(get_setting(db(), SELF_APPROVAL_SETTING, False))
        ),
    ), (400 if errors else 200)


def _shown(key: str, value: Any) -> str:
    """An inherited value as people read it (a voice's and an engine's label, not its id)."""
    if key == tree.DEFAULT_VOICE and value in VOICES:
        return _(VOICES[value].label)
    if key == tree.TTS_ENGINE and value in ENGINE_MODE_LABELS:
        return _(ENGINE_MODE_LABELS[value])
    return str(value or "")


def _engines() -> tuple[str, ...]:
    """The engine modes this install can run (neural needs its model folder)."""
    return tuple(
        mode for mode in TTS_ENGINES if mode != "neural" or settings().neural_model_dir is not None
    )
