"""The scheduler's work: its status, retries, one announcement's renders, the outbox and audio."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from cms.models import Alert, ChatGroup, Clip, Delivery, JobState, OutboxMessage, Program, Revision
from cms.roles import ANY_USER, STAFF
from cms.services import programs as programs_svc
from cms.services import schedule as schedule_svc
from cms.services import share as share_svc
from cms.services.errors import WorkflowError
from cms.services.scope import Scope
from cms.web import today
from cms.web.auth import local_url, rule
from cms.web.db import db, settings, transaction
from cms.web.forms import announcement_or_404, int_arg, paginate
from cms.web.schedule import bp
from cms.web.schedule.common import CALENDAR_DAYS, outlet_or_404, send_audio


def _back(default: str) -> Any:
    return redirect(local_url(request.form.get("next")) or default)


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


# -- audio files -------------------------------------------------------------------------


@bp.get("/audio/<kind>/<int:object_id>")
@rule(*ANY_USER)
def audio(kind: str, object_id: int) -> Any:
    """A clip, program or outbox voice note, to logged-in users allowed to see it."""
    if kind == "program":
        program = db().get(Program, object_id)
        if program is None:
            abort(404)
        outlet_or_404(program.outlet_id)
        return send_audio(program.path)
    if g.user.role not in STAFF:
        abort(404)
    scope = Scope.of(g.user)
    if kind == "clip":
        clip = db().scalar(select(Clip).where(Clip.id == object_id, scope.clips()))
        return send_audio(clip.path if clip and clip.state is JobState.DONE else None)
    if kind == "outbox":
        msg = db().get(OutboxMessage, object_id)
        chat = db().get(ChatGroup, msg.chat_group_id) if msg and msg.chat_group_id else None
        if msg is not None and not scope.whole and not scope.has_chat(chat):
            abort(404)
        return send_audio(msg.file_path if msg else None)
    abort(404)
