"""What people do to the scheduler's work from the web: retry, resolve, and what they see of it.

Every change to the scheduler's rows goes through here and leaves one audit entry naming who
did it. Each change is one guarded ``UPDATE … WHERE state = old``
(the scheduler's own rule), so a row that moved on in the meantime is never overwritten.

An *uncertain* delivery may already be in the group (the request went out, its answer was
lost). Sending it again without looking can post it twice, so its retry needs ``checked``:
the person confirms they looked in the group and it is not there; the audit entry keeps that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cms import lease, queue
from cms.clock import clock_of
from cms.models import (
    Alert,
    Clip,
    Delivery,
    DeliveryState,
    JobState,
    Outlet,
    Program,
    Receipt,
    Slot,
    User,
)
from cms.services import alerts as alerts_svc
from cms.services import audit, operators
from cms.services import days as days_svc
from cms.services.errors import N_, Message, NotFound, WorkflowError
from cms.services.programs import outlet_announcements
from cms.services.scope import Scope
from cms.settings import Settings

FAILURE_LIST_LIMIT = 50
# Enough of a failure reason to recognise it in the audit log (ffmpeg tails can be long).
ERROR_EXCERPT = 200

UNCERTAIN_NOT_CHECKED = N_(
    "这条发送结果不确定，可能已经发出。请先到群里确认确实没有收到，勾选确认后再重试。"
)


def _excerpt(text: str | None) -> str:
    return (text or "")[:ERROR_EXCERPT]


# -- changes -----------------------------------------------------------------------------


def retry_clip(session: Session, clip_id: int, *, actor: User | None) -> Clip:
    """Queue a failed clip again with fresh attempts.

    Raises:
        NotFound: no such clip.
        WorkflowError: the clip is not failed (nothing to retry).
    """
    clip = session.get(Clip, clip_id)
    if clip is None:
        raise NotFound(N_("音频 {id} 不存在"), id=clip_id)
    error = _retry_failed(session, clip, N_("这段音频不是失败状态，无需重试"))
    audit.record(
        session,
        actor,
        "clip.retry",
        clip,
        announcement=clip.revision.announcement_id,
        revision=clip.revision_id,
        profile=clip.profile.value,
        error=error,
    )
    session.refresh(clip)
    return clip


def retry_program(session: Session, program_id: int, *, actor: User | None) -> Program:
    """Queue a failed program again with fresh attempts.

    Raises:
        NotFound: no such program.
        WorkflowError: the program is not failed.
    """
    program = session.get(Program, program_id)
    if program is None:
        raise NotFound(N_("节目 {id} 不存在"), id=program_id)
    error = _retry_failed(session, program, N_("这个节目不是失败状态，无需重试"))
    audit.record(
        session,
        actor,
        "program.retry",
        program,
        outlet=program.outlet_id,
        day=program.day.isoformat(),
        slot=program.slot.at.strftime("%H:%M"),
        error=error,
    )
    session.refresh(program)
    return program


def _retry_failed(session: Session, row: Clip | Program, not_failed: str) -> str:
    """A failed clip or program back to the queue; returns its last error for the audit.

    (The caller writes the audit entry, with its action code spelt out: the audit page's
    labels are checked against the codes written in the source.)
    """
    error = _excerpt(row.last_error)
    if not queue.requeue(
        session, type(row), row.id, from_states=(JobState.FAILED,), ready=JobState.PENDING
    ):
        raise WorkflowError(not_failed)
    return error


def retry_delivery(
    session: Session, delivery_id: int, *, actor: User | None, checked: bool = False
) -> Delivery:
    """Send a failed delivery again; an uncertain one only when ``checked`` (see the module doc).

    Raises:
        NotFound: no such delivery.
        WorkflowError: the delivery is neither failed nor uncertain, or it is uncertain and
            nobody confirmed that the group does not have it.
    """
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        raise NotFound(N_("发送记录 {id} 不存在"), id=delivery_id)
    error = _excerpt(delivery.last_error)
    allowed = (
        (DeliveryState.FAILED, DeliveryState.UNCERTAIN) if checked else (DeliveryState.FAILED,)
    )
    previous = queue.requeue(
        session, Delivery, delivery_id, from_states=allowed, ready=DeliveryState.PENDING
    )
    if previous is None:
        session.refresh(delivery)
        if delivery.state is DeliveryState.UNCERTAIN:
            raise WorkflowError(UNCERTAIN_NOT_CHECKED)
        raise WorkflowError(N_("这条发送不是失败或不确定状态，无需重试"))
    chat = delivery.chat_group
    audit.record(
        session,
        actor,
        "delivery.retry",
        delivery,
        previous=previous.value,
        checked=checked,
        announcement=delivery.revision.announcement_id,
        revision=delivery.revision_id,
        chat=chat.title or chat.chat_id,
        error=error,
    )
    session.refresh(delivery)
    return delivery


def resolve_alert(
    session: Session, alert_id: int, *, actor: User | None, now: datetime | None = None
) -> Alert:
    """Mark an alert as dealt with.

    Raises:
        NotFound: no such alert.
        WorkflowError: it was already resolved (by someone else, or by the scheduler when the
            problem went away).
    """
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(N_("提醒 {id} 不存在"), id=alert_id)
    if not alerts_svc.resolve(session, alert_id, now or clock_of(session).now()):
        raise WorkflowError(N_("这条提醒已经处理过了"))
    audit.record(
        session,
        actor,
        "alert.resolve",
        alert,
        kind=alert.kind,
        day=alert.day.isoformat() if alert.day else None,
        about=f"{alert.object_type} {alert.object_id}" if alert.object_id else "",
        message=_excerpt(Message.loads(alert.message).render()),
    )
    return alert


# -- what the pages show -----------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerStatus:
    """The status page: the lease, the last tick, queue lengths, failures and open alerts."""

    lease: lease.LeaseState
    alive: bool
    last_tick: datetime | None
    queues: dict[str, dict[str, int]]
    failed_clips: list[Clip]
    failed_programs: list[Program]
    bad_deliveries: list[Delivery]
    alerts: list[Alert]


def status(
    session: Session, *, now: datetime | None = None, scope: Scope | None = None
) -> SchedulerStatus:
    """Everything the scheduler status page shows (reads only); only the scope's rows."""
    scope = scope or Scope()
    bind = session.get_bind()
    engine = bind if isinstance(bind, Engine) else bind.engine
    state = lease.read(engine)
    failed_clips = session.scalars(
        select(Clip)
        .where(Clip.state == JobState.FAILED, scope.clips())
        .order_by(Clip.updated_at.desc())
        .limit(FAILURE_LIST_LIMIT)
    ).all()
    failed_programs = session.scalars(
        select(Program)
        .where(Program.state == JobState.FAILED, scope.programs())
        .order_by(Program.day.desc(), Program.id)
        .limit(FAILURE_LIST_LIMIT)
    ).all()
    bad_deliveries = session.scalars(
        select(Delivery)
        .where(
            Delivery.state.in_([DeliveryState.FAILED, DeliveryState.UNCERTAIN]),
            scope.deliveries(),
        )
        .order_by(Delivery.updated_at.desc())
        .limit(FAILURE_LIST_LIMIT)
    ).all()
    return SchedulerStatus(
        lease=state,
        alive=state.alive(now or clock_of(session).now()),
        last_tick=_parse_time(state.info.get("last_tick")),
        queues=queue.queue_lengths(session),
        failed_clips=list(failed_clips),
        failed_programs=list(failed_programs),
        bad_deliveries=list(bad_deliveries),
        alerts=alerts_svc.open_alerts(session, where=scope.alerts()),
    )


def _parse_time(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(text) if isinstance(text, str) and text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class SlotDay:
    """One slot of one outlet on one day, with its program (if any) and what became of it."""

    slot: Slot
    program: Program | None
    receipt: Receipt | None
    times: days_svc.SlotTimes
    outcome: days_svc.Outcome


def slot_days(
    session: Session,
    outlet: Outlet,
    day: date,
    *,
    now: datetime,
    tz: tzinfo,
    settings: Settings | None = None,
    planned: bool | None = None,
) -> list[SlotDay]:
    """Each slot of ``outlet`` on ``day`` with its outcome (the rule of :mod:`cms.services.days`).

    ``planned`` (whether anything reaches the outlet that day) is looked up when not given.
    """
    programs = {
        p.slot_id: p
        for p in session.scalars(
            select(Program).where(Program.outlet_id == outlet.id, Program.day == day)
        )
    }
    receipts = operators.receipts_for(session, programs.values())
    if planned is None:
        planned = bool(outlet_announcements(session, outlet, day))
    grace = operators.late_grace(session, settings)
    out = []
    for slot in outlet.slots:
        program = programs.get(slot.id)
        receipt = receipts.get(program.id) if program is not None else None
        times = days_svc.SlotTimes.of(day, slot.at, slot.minutes, tz)
        result = days_svc.outcome(
            times,
            outlet_created_at=outlet.created_at,
            program=program,
            receipt=receipt,
            now=now,
            late_grace=grace,
            planned=planned,
        )
        out.append(SlotDay(slot, program, receipt, times, result))
    return out
