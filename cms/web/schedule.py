"""Scheduling in the CMS: renders, programs, the lexicon, run sheets and the scheduler's status."""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from sqlalchemy import select

from cms import tree
from cms.models import (
    Alert,
    Area,
    ChatGroup,
    Clip,
    ClipProfile,
    Delivery,
    JobState,
    LexiconEntry,
    OutboxMessage,
    Outlet,
    Program,
    Revision,
    Role,
)
from cms.roles import ANY_USER, STAFF
from cms.services import airtime, township
from cms.services import announcements as ann_svc
from cms.services import budget as budget_svc
from cms.services import lexicon as lexicon_svc
from cms.services import programs as programs_svc
from cms.services import schedule as schedule_svc
from cms.services import share as share_svc
from cms.services import speech as speech_svc
from cms.services import terminals as terminal_svc
from cms.services.days import Outcome
from cms.services.errors import ValidationError, WorkflowError
from cms.services.labels import ENGINE_LABELS, JOB_LABELS
from cms.services.scope import Scope
from cms.services.text import (
    MAX_DATE,
    MAX_ID,
    MIN_DATE,
    in_date_range,
    parse_date,
    parse_id,
    parse_int,
)
from cms.web import today
from cms.web.auth import local_url, rule
from cms.web.db import db, read_only, settings, transaction
from cms.web.forms import announcement_or_404, audio_text, field_errors, int_arg, paginate
from cms.web.sendfile import file_body, respond

log = logging.getLogger(__name__)
bp = Blueprint("schedule", __name__, url_prefix="/schedule")

CALENDAR_DAYS = 14
SAMPLE_MAX_CHARS = 200


@bp.app_context_processor
def _labels() -> dict[str, Any]:
    return {"job_labels": JOB_LABELS, "engine_labels": ENGINE_LABELS}


def _back(default: str) -> Any:
    return redirect(local_url(request.form.get("next")) or default)


def _day(text: str) -> date:
    if text == "today":
        return today(settings())
    day = parse_date(text)
    if day is None or not in_date_range(day):
        abort(404)
    return day


def _outlet(outlet_id: int) -> Outlet:
    outlet = db().get(Outlet, outlet_id)
    if outlet is None or not Scope.of(g.user).has_outlet(outlet):
        abort(404, description=_("广播点不存在"))
    if g.user.role is Role.OPERATOR and outlet not in g.user.outlets:
        # Not found rather than forbidden: an operator learns nothing about other outlets.
        abort(404, description=_("广播点不存在"))
    return outlet


def _visible_outlets() -> list[Outlet]:
    if g.user.role is Role.OPERATOR:
        return sorted(g.user.outlets, key=lambda o: o.id)
    return list(
        db().scalars(
            select(Outlet).where(Scope.of(g.user).outlets()).order_by(Outlet.area_id, Outlet.id)
        )
    )


# -- status ------------------------------------------------------------------------------


@bp.get("/")
@rule(*STAFF)
def status() -> Any:
    """The scheduler: who holds it, its last tick, queue lengths, failures and alerts."""
    state = schedule_svc.status(db(), scope=Scope.of(g.user))
    return render_template(
        "schedule/status.html",
        lease=state.lease,
        alive=state.alive,
        last_tick=state.last_tick,
        queues=state.queues,
        failed_clips=state.failed_clips,
        failed_programs=state.failed_programs,
        bad_deliveries=state.bad_deliveries,
        alerts=state.alerts,
    )


def _in_scope(model: Any, row_id: int, inside: Any) -> None:
    """404 unless the row exists inside the user's area (a neighbour's row is not found)."""
    if db().scalar(select(model.id).where(model.id == row_id, inside)) is None:
        abort(404)


def _act(change: Callable[[], object], done: str) -> Any:
    """Run one audited change; commit and say so, or say why not (404 when the row is gone)."""
    with transaction(catch=WorkflowError, missing=True) as tx:
        change()
    if tx.ok:
        flash(done, "info")
    return _back(url_for("schedule.status"))


@bp.post("/clips/<int:clip_id>/retry")
@rule(*STAFF)
def retry_clip(clip_id: int) -> Any:
    """Queue a failed clip again."""
    _in_scope(Clip, clip_id, Scope.of(g.user).clips())
    return _act(
        lambda: schedule_svc.retry_clip(db(), clip_id, actor=g.user), _("已重新排队生成音频")
    )


@bp.post("/programs/<int:program_id>/retry")
@rule(*STAFF)
def retry_program(program_id: int) -> Any:
    """Queue a failed program again."""
    _in_scope(Program, program_id, Scope.of(g.user).programs())
    return _act(
        lambda: schedule_svc.retry_program(db(), program_id, actor=g.user),
        _("已重新排队生成节目"),
    )


@bp.post("/deliveries/<int:delivery_id>/retry")
@rule(*STAFF)
def retry_delivery(delivery_id: int) -> Any:
    """Send a failed delivery again (an uncertain one only once the group was checked)."""
    checked = request.form.get("checked") == "1"
    _in_scope(Delivery, delivery_id, Scope.of(g.user).deliveries())
    return _act(
        lambda: schedule_svc.retry_delivery(db(), delivery_id, actor=g.user, checked=checked),
        _("已重新排队发送"),
    )


@bp.post("/alerts/<int:alert_id>/resolve")
@rule(*STAFF)
def resolve_alert(alert_id: int) -> Any:
    """Mark an alert as dealt with."""
    _in_scope(Alert, alert_id, Scope.of(g.user).alerts())
    return _act(
        lambda: schedule_svc.resolve_alert(db(), alert_id, actor=g.user),
        _("提醒已标记为已处理"),
    )


# -- one announcement --------------------------------------------------------------------


@bp.get("/announcements/<int:announcement_id>")
@rule(*STAFF)
def renders(announcement_id: int) -> Any:
    """An announcement's renders, the programs it is in and its chat deliveries."""
    ann = announcement_or_404(announcement_id)
    revs: list[Revision] = []
    for rev in (ann.latest_revision, ann.approved_revision):
        if rev is not None and rev not in revs:
            revs.append(rev)
    clips = {
        rev.id: db().scalars(select(Clip).where(Clip.revision_id == rev.id)).all() for rev in revs
    }
    since = today(settings()) - timedelta(days=CALENDAR_DAYS)
    in_programs = (
        programs_svc.programs_with_revision(db(), ann.approved_revision_id, since)
        if ann.approved_revision_id
        else []
    )
    sends = (
        db()
        .scalars(
            select(Delivery)
            .join(Revision, Revision.id == Delivery.revision_id)
            .where(Revision.announcement_id == ann.id)
            .order_by(Delivery.due_at, Delivery.id)
        )
        .all()
    )
    return render_template(
        "schedule/renders.html",
        ann=ann,
        revs=revs,
        clips=clips,
        programs=in_programs,
        deliveries=sends,
        share_downloads=share_svc.download_counts(db(), ann.id),
    )


# -- lexicon -----------------------------------------------------------------------------


def _lexicon_area(errors: dict[str, str]) -> Area | None:
    """The township whose own lexicon is shown (none chosen: the county's); a bad choice
    is reported in ``errors`` and shows the county's."""
    try:
        return township.scoped_area(db(), g.user, request.values.get("area_id"))
    except ValidationError as exc:
        errors.update(field_errors(exc))
        return township.scoped_area(db(), g.user, None)  # the office's own lexicon


@bp.route("/lexicon", methods=["GET", "POST"])
@rule(*STAFF)
def lexicon() -> Any:
    """The pronunciation lexicon: the county's and each township's own; add an entry, listen."""
    errors: dict[str, str] = {}
    form = request.form if request.method == "POST" else {}
    area = _lexicon_area(errors)
    if request.method == "POST" and not errors:
        with transaction(catch=ValidationError, flash=False) as tx:
            entry = lexicon_svc.save_entry(
                db(),
                g.user,
                written=request.form.get("written"),
                spoken=request.form.get("spoken"),
                note=request.form.get("note", ""),
                area=area,
            )
            affected = lexicon_svc.affected_revisions(db(), entry.written, area)
        errors = tx.fields
        if tx.ok:
            flash(
                _("已保存“{w}”→“{s}”；{n} 条公告的音频和相关节目将自动重新生成。").format(
                    w=entry.written, s=entry.spoken, n=len(affected)
                ),
                "info",
            )
            return redirect(url_for("schedule.lexicon", area_id=area.id if area else None))
    entries = lexicon_svc.all_entries(db(), area)
    counts = {e.id: len(lexicon_svc.affected_revisions(db(), e.written, area)) for e in entries}
    # A township also sees the county's entries it inherits, and which of them it overrides.
    own = {e.written for e in entries}
    inherited = (
        [(w, s, w in own) for w, s in tree.lexicon_pairs(db(), area.parent)]
        if area is not None
        else []
    )
    sample_key = request.args.get("sample", "")
    return render_template(
        "schedule/lexicon.html",
        entries=entries,
        counts=counts,
        inherited=inherited,
        area=area,
        townships=township.scoped_townships(db(), g.user),
        errors=errors,
        form=form,
        sample_key=sample_key if _renderer().get_clip(sample_key) else None,
        sample_text=request.args.get("text", "")[:SAMPLE_MAX_CHARS],
    ), (400 if errors else 200)


@bp.post("/lexicon/<int:entry_id>/delete")
@rule(*STAFF)
def lexicon_delete(entry_id: int) -> Any:
    """Remove a lexicon entry (affected clips are re-rendered)."""
    entry = db().get(LexiconEntry, entry_id)
    # The county's (install's) entries are the whole install's; a township's, its office's.
    if entry is None or not Scope.of(g.user).contains(entry.area):
        abort(404, description=_("读音条目 {id} 不存在").format(id=entry_id))
    area_id = entry.area_id
    with transaction(catch=(), missing=True):
        lexicon_svc.delete_entry(db(), g.user, entry_id)
    flash(_("已删除读音条目"), "info")
    return redirect(url_for("schedule.lexicon", area_id=area_id))


def _renderer() -> Any:
    """One renderer per app for samples (it shares the scheduler's content-addressed cache)."""
    renderer = current_app.extensions.get("dalaba.sample_renderer")
    if renderer is None:
        renderer = speech_svc.make_renderer(settings())
        current_app.extensions["dalaba.sample_renderer"] = renderer
    return renderer


@bp.post("/lexicon/sample")
@rule(*STAFF)
@read_only
def lexicon_sample() -> Any:
    """Render a short sample text with the current lexicon and play it."""
    from audio.errors import AudioError
    from audio.text import Lexicon

    errors: dict[str, str] = {}
    area = _lexicon_area(errors)
    back = area.id if area else None
    text = request.form.get("text", "").strip()[:SAMPLE_MAX_CHARS]
    if errors:
        flash("；".join(errors.values()), "error")
        return redirect(url_for("schedule.lexicon"))
    if not text:
        flash(_("请输入要试听的文字"), "error")
        return redirect(url_for("schedule.lexicon", area_id=back))
    entries = tuple(tree.lexicon_pairs(db(), area))
    try:
        clip = _renderer().render(text, lexicon=Lexicon(entries))
    except AudioError as exc:
        flash(_("试听音频生成失败：{e}").format(e=audio_text(exc)), "error")
        return redirect(url_for("schedule.lexicon", area_id=back))
    return redirect(url_for("schedule.lexicon", area_id=back, sample=clip.key, text=text))


# -- outlets: day, calendar, run sheet ---------------------------------------------------


@bp.get("/outlets")
@rule(*ANY_USER)
def outlets() -> Any:
    """Outlets with links to their day, calendar and run sheet."""
    return render_template("schedule/outlets.html", outlets=_visible_outlets())


def _day_programs(outlet: Outlet, day: date, planned: bool) -> list[schedule_svc.SlotDay]:
    return schedule_svc.slot_days(
        db(),
        outlet,
        day,
        now=settings().now(),
        tz=settings().tz,
        settings=settings(),
        planned=planned,
    )


@bp.get("/outlets/<int:outlet_id>/<day_text>")
@rule(*ANY_USER)
def outlet_day(outlet_id: int, day_text: str) -> Any:
    """One outlet's programs for one day: listen, manifest, what is planned."""
    outlet = _outlet(outlet_id)
    day = _day(day_text)
    planned = programs_svc.outlet_announcements(db(), outlet, day)
    return render_template(
        "schedule/outlet_day.html",
        outlet=outlet,
        day=day,
        slots=_day_programs(outlet, day, bool(planned)),
        planned=planned,
        prev_day=day - timedelta(days=1),
        next_day=day + timedelta(days=1),
        boxes=terminal_svc.day_statuses(db(), [outlet.id], day, settings().tz),
        box_statuses=terminal_svc.STATUS_LABELS,
        box_kinds=terminal_svc.KIND_LABELS,
    )


@bp.get("/outlets/<int:outlet_id>/calendar")
@rule(*ANY_USER)
def calendar(outlet_id: int) -> Any:
    """The coming 14 days of one outlet: what is planned and what is built."""
    outlet = _outlet(outlet_id)
    start = today(settings())
    days = []
    for offset in range(CALENDAR_DAYS):
        day = start + timedelta(days=offset)
        anns = programs_svc.outlet_announcements(db(), outlet, day)
        days.append(
            {"day": day, "announcements": anns, "slots": _day_programs(outlet, day, bool(anns))}
        )
    return render_template("schedule/calendar.html", outlet=outlet, days=days)


@bp.get("/outlets/<int:outlet_id>/<day_text>/runsheet")
@rule(*ANY_USER)
def runsheet(outlet_id: int, day_text: str) -> Any:
    """The printable run sheet (播出单): slot, order, titles, durations."""
    outlet = _outlet(outlet_id)
    day = _day(day_text)
    planned = programs_svc.outlet_announcements(db(), outlet, day)
    estimates = {}
    for ann in planned:
        rev = ann.approved
        clip = db().scalar(
            select(Clip).where(
                Clip.revision_id == rev.id,
                Clip.profile == ClipProfile.LOUDSPEAKER,
                Clip.state == JobState.DONE,
            )
        )
        estimates[rev.id] = (
            clip.duration if clip and clip.duration else budget_svc.estimate(rev.speech, rev.rate)
        )
    sheet = []
    for row in _day_programs(outlet, day, bool(planned)):
        program = row.program
        items: list[dict[str, Any]] = []
        total: float | None = None
        if program is not None and program.manifest and program.state is JobState.DONE:
            # What was built, not what was planned.
            items = [
                {
                    "title": item.get("title", ""),
                    "repeats": item.get("repeats", 1),
                    "duration": item.get("duration"),
                }
                for item in program.manifest.get("items", [])
            ]
            total = program.duration
        elif row.outcome is Outcome.PENDING:
            # Not built yet and still due: what it will be built from now.
            items = [
                {
                    "title": ann_svc.for_part(
                        a.approved.title, ann_svc.narrower_targets(a.approved, outlet.area)
                    ),
                    "repeats": a.approved.repeats,
                    "duration": estimates[a.approved.id],
                }
                for a in airtime.in_slot(planned, day, row.slot.at)
            ]
            total = budget_svc.slot_seconds([(i["duration"], i["repeats"]) for i in items])
        sheet.append(
            {"slot": row.slot, "program": program, "items": items, "total": total, "row": row}
        )
    return render_template("schedule/runsheet.html", outlet=outlet, day=day, sheet=sheet)


# -- outbox ------------------------------------------------------------------------------


@bp.get("/outbox")
@rule(*STAFF)
def outbox() -> Any:
    """Chat messages recorded by the local outbox channel."""
    scope = Scope.of(g.user)
    stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc())
    if not scope.whole:
        stmt = stmt.where(
            OutboxMessage.chat_group_id.in_(select(ChatGroup.id).where(scope.chats()))
        )
    page = paginate(stmt, int_arg("page", 1) or 1, 50)
    ids = {m.chat_group_id for m in page.items if m.chat_group_id}
    chats = {
        c.id: c.title or c.chat_id
        for c in db().scalars(select(ChatGroup).where(ChatGroup.id.in_(ids)))
    }
    return render_template("schedule/outbox.html", page=page, chats=chats)


# -- the editor's duration budget --------------------------------------------------------


@bp.route("/budget", methods=["GET", "POST"])
@rule(*STAFF)
@read_only
def budget() -> Any:
    """JSON: the draft's spoken length and any slot it would make overrun."""
    data = request.values
    errors: dict[str, str] = {}
    text = (data.get("spoken_text") or "").strip() or (data.get("body") or "").strip()
    if len(text) > ann_svc.MAX_BODY:
        errors["body"] = _("正文太长")

    def number(name: str, default: int, lo: int, hi: int) -> int:
        raw = data.get(name, "")
        value = parse_int(raw) if raw != "" else default
        if value is None:
            errors[name] = _("应为整数")
            return default
        if not lo <= value <= hi:
            errors[name] = _("超出范围")
        return value

    rate = number("rate", 0, *ann_svc.RATE_RANGE)
    repeats = number("repeats", 1, 1, ann_svc.MAX_REPEATS)
    exclude = number("announcement_id", 0, 0, MAX_ID) or None
    raw_areas = data.getlist("area_ids") or (data.get("area_ids", "").split(","))
    area_ids: list[int] = []
    for item in raw_areas:
        if item.strip():
            area_id = parse_id(item)
            if area_id is None:
                errors["area_ids"] = _("区域编号无效")
            else:
                area_ids.append(area_id)
    scope = Scope.of(g.user)
    if area_ids and not scope.whole:
        inside = set(db().scalars(scope.area_ids().where(Area.id.in_(area_ids))))
        if set(area_ids) - inside:
            errors["area_ids"] = _("区域编号无效")
    dates: dict[str, date] = {}
    for name in ("start_date", "end_date"):
        day = parse_date(data.get(name, "")) if data.get(name) else today(settings())
        if day is None:
            errors[name] = _("应为 YYYY-MM-DD 格式的日期")
        elif not in_date_range(day):
            errors[name] = _("应在 {lo} 到 {hi} 之间").format(
                lo=MIN_DATE.isoformat(), hi=MAX_DATE.isoformat()
            )
        else:
            dates[name] = day
    end_time = None
    raw_end = (data.get("end_time") or "").strip()
    if raw_end:
        end_time = airtime.parse_time(raw_end)
        if end_time is None:
            errors["end_time"] = _("最后一天的结束时间应为 HH:MM")
    airtime_choice = data.get("airtime") or "all"
    if airtime_choice not in airtime.AIRTIME_LABELS:
        errors["airtime"] = _("播出时段无效")
    if errors:
        return jsonify({"errors": errors}), 400
    result = budget_svc.budget(
        db(),
        text=text,
        rate=rate,
        repeats=repeats,
        area_ids=area_ids,
        start=dates["start_date"],
        end=max(dates["end_date"], dates["start_date"]),
        exclude_announcement=exclude,
        end_time=end_time,
        airtime_choice=airtime_choice,
    )
    body = result.to_dict()
    if result.over:
        worst = body["worst"]
        body["message"] = _(
            "超出时段长度：{outlet} {day} {slot} 的节目预计 {total:.0f} 秒，时段只有 {limit} 秒"
        ).format(
            outlet=worst["outlet"],  # type: ignore[index]
            day=worst["day"],  # type: ignore[index]
            slot=worst["slot"],  # type: ignore[index]
            total=worst["total_seconds"],  # type: ignore[index]
            limit=worst["limit_seconds"],  # type: ignore[index]
        )
    else:
        body["message"] = _("预计朗读 {s:.0f} 秒（含重复 {t:.0f} 秒），不超出各时段长度").format(
            s=result.estimate_seconds, t=result.with_repeats_seconds
        )
    return jsonify(body)


# -- audio files -------------------------------------------------------------------------


def _send_audio(raw: str | None) -> Any:
    """Send a file from the data folder only; anything else is 404, never a path outside."""
    if not raw:
        abort(404)
    root = settings().data_dir.resolve()
    path = Path(raw).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        abort(404)
    mimetype = {".mp3": "audio/mpeg", ".ogg": "audio/ogg"}.get(
        path.suffix, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    # The one download path (conditionals, ranges, streaming) the operators' and share
    # downloads use.
    return respond(file_body(path), mimetype=mimetype, filename=path.name, fallback=path.name)


@bp.get("/audio/<kind>/<int:object_id>")
@rule(*ANY_USER)
def audio(kind: str, object_id: int) -> Any:
    """A clip, program or outbox voice note, to logged-in users allowed to see it."""
    if kind == "program":
        program = db().get(Program, object_id)
        if program is None:
            abort(404)
        _outlet(program.outlet_id)
        return _send_audio(program.path)
    if g.user.role not in STAFF:
        abort(404)
    scope = Scope.of(g.user)
    if kind == "clip":
        clip = db().scalar(select(Clip).where(Clip.id == object_id, scope.clips()))
        return _send_audio(clip.path if clip and clip.state is JobState.DONE else None)
    if kind == "outbox":
        msg = db().get(OutboxMessage, object_id)
        chat = db().get(ChatGroup, msg.chat_group_id) if msg and msg.chat_group_id else None
        if msg is not None and not scope.whole and not scope.has_chat(chat):
            abort(404)
        return _send_audio(msg.file_path if msg else None)
    abort(404)


@bp.get("/audio/sample/<key>")
@rule(*STAFF)
def sample_audio(key: str) -> Any:
    """A lexicon sample from the render cache."""
    clip = _renderer().get_clip(key)
    return _send_audio(str(clip.path) if clip else None)
