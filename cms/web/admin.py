"""Administration: the area tree, outlets and slots, users and roles, topics, settings, audit."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import or_, select

from audio.voices import VOICES
from cms import tree
from cms.models import (
    ApiToken,
    AuditLog,
    NoticeTemplate,
    OutletKind,
    Role,
    Setting,
    Topic,
    User,
    get_setting,
)
from cms.services import areas as area_svc
from cms.services import breakin as breakin_svc
from cms.services import outlets as outlet_svc
from cms.services import templates as template_svc
from cms.services import topics as topic_svc
from cms.services import township
from cms.services import users as user_svc
from cms.services.announcements import SELF_APPROVAL_SETTING, STATUS_LABELS
from cms.services.audit import (
    ACTION_LABELS,
    DETAIL_LABELS,
    OBJECT_LABELS,
    VIA_LABELS,
    actions_matching,
    detail_value,
    record,
)
from cms.services.chats import PLATFORM_LABELS
from cms.services.errors import N_, DomainError, Message, NotFound, ValidationError
from cms.services.labels import ENGINE_MODE_LABELS
from cms.services.scope import Scope
from cms.settings import TTS_ENGINES
from cms.web.auth import remember_login, rule
from cms.web.db import db, settings, transaction
from cms.web.forms import field_errors, form_id, form_ids, int_arg, message, paginate

bp = Blueprint("admin", __name__, url_prefix="/admin")
ADMIN = Role.ADMIN


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


@bp.route("/users", methods=["GET", "POST"])
@rule(ADMIN)
def users() -> Any:
    """Users and roles; add a user."""
    form: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form.to_dict()
        form.pop("password", None)
        with transaction(catch=ValidationError, flash=False) as tx:
            user_svc.create_user(
                db(),
                g.user,
                username=request.form.get("username", ""),
                display_name=request.form.get("display_name", ""),
                role=request.form.get("role", ""),
                password=request.form.get("password", ""),
                area_id=request.form.get("area_id", ""),
            )
        if tx.ok:
            flash(_("已添加用户"), "success")
            return redirect(url_for(".users"))
        errors = tx.fields
    scope = Scope.of(g.user)
    all_users = list(
        db().scalars(select(User).where(scope.users()).order_by(User.role, User.username))
    )
    return render_template(
        "admin/users.html",
        users=all_users,
        locked={u.id for u in all_users if user_svc.is_locked(u, settings().now())},
        roles=user_svc.ROLE_LABELS,
        form=form,
        errors=errors,
        areas=scope.areas(db()),
        whole=scope.whole,
    ), (400 if errors else 200)


@bp.post("/users/<int:user_id>")
@rule(ADMIN)
def user_update(user_id: int) -> Any:
    """Change a user's name, role, active flag or password."""
    user = db().get(User, user_id)
    if user is None or not Scope.of(g.user).has_user(user):
        abort(404)
    with transaction() as tx:
        user_svc.update_user(
            db(),
            g.user,
            user,
            display_name=request.form.get("display_name", ""),
            role=request.form.get("role", ""),
            active="active" in request.form,
            password=request.form.get("password", ""),
            area_id=request.form.get("area_id"),
        )
    if tx.ok:
        if user.id == g.user.id:
            # A new password ends the admin's other sessions, not the one that set it.
            remember_login(user)
        flash(_("已保存"), "success")
    return redirect(url_for(".users"))


@bp.post("/users/<int:user_id>/unlock")
@rule(ADMIN)
def user_unlock(user_id: int) -> Any:
    """Lift a login lock (many failed logins from many addresses)."""
    user = db().get(User, user_id)
    if user is None or not Scope.of(g.user).has_user(user):
        abort(404)
    with transaction(catch=()):
        user_svc.unlock(db(), g.user, user)
    flash(_("已解除“{name}”的登录锁定").format(name=user.username), "success")
    return redirect(url_for(".users"))


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
    area = None
    try:
        area = township.scoped_area(db(), g.user, request.values.get("area_id"))
    except ValidationError as exc:
        errors = field_errors(exc)
        area = township.scoped_area(db(), g.user, None)  # the office's own values
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


@bp.route("/tokens", methods=["GET", "POST"])
@rule(ADMIN)
def tokens() -> Any:
    """API tokens: issue and revoke."""
    new_token = None
    scope = Scope.of(g.user)
    if request.method == "POST":
        with transaction() as tx:
            if request.form.get("action") == "revoke":
                token_id = form_id("token_id") or 0
                row = db().get(ApiToken, token_id)
                if row is not None and not scope.has_user(row.user):
                    raise NotFound(N_("令牌不存在"))
                user_svc.revoke_api_token(db(), g.user, token_id)
            else:
                owner = user_svc.get_user_by_name(db(), request.form.get("username", ""))
                if not scope.has_user(owner):
                    raise NotFound(N_("用户“{name}”不存在"), name=owner.username)
                new_token = user_svc.issue_api_token(
                    db(), g.user, owner, request.form.get("label", "")
                )
        if tx.ok and request.form.get("action") == "revoke":
            flash(_("令牌已吊销"), "success")
    rows = list(
        db().scalars(
            select(ApiToken)
            .join(User, User.id == ApiToken.user_id)
            .where(scope.users())
            .order_by(ApiToken.created_at.desc())
        )
    )
    return render_template("admin/tokens.html", tokens=rows, new_token=new_token)


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
        codes = actions_matching(action, _)
        stmt = stmt.where(or_(AuditLog.action.in_(codes), AuditLog.action.startswith(action)))
    page = paginate(stmt, int_arg("page", 1) or 1, 50)
    return render_template(
        "admin/audit.html",
        page=page,
        action=action,
        action_labels=ACTION_LABELS,
        detail_labels=DETAIL_LABELS,
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
