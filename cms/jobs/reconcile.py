"""Daily reconciliation: what should have gone out against what did; gaps become alerts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms.clock import at_local
from cms.models import Alert, Delivery, DeliveryState, JobState, Outlet, Program
from cms.services import days
from cms.services.airtime import in_slot
from cms.services.alerts import raise_alert, raise_program_alert
from cms.services.errors import N_, Message
from cms.services.programs import outlet_announcements

log = logging.getLogger(__name__)

DELIVERY_GRACE = timedelta(hours=1)
"""A delivery still not sent this long after it was due is a gap."""

STATE_LABELS = {
    DeliveryState.PENDING: N_("尚未发送"),
    DeliveryState.SENDING: N_("发送中断"),
    DeliveryState.FAILED: N_("发送失败"),
    DeliveryState.UNCERTAIN: N_("结果不确定"),
}


@dataclass
class Gaps:
    programs: int = 0
    deliveries: int = 0
    resolved: int = 0


def reconcile_day(session: Session, day: date, now: datetime, tz: ZoneInfo) -> Gaps:
    """Check ``day`` so far: every slot that has passed has a program, every due post went out."""
    gaps = Gaps()
    programs = {
        (p.outlet_id, p.slot_id): p
        for p in session.scalars(select(Program).where(Program.day == day))
    }
    for outlet in session.scalars(select(Outlet).where(Outlet.active)):
        anns = outlet_announcements(session, outlet, day)
        if not anns:
            continue
        for slot in outlet.slots:
            times = days.SlotTimes.of(day, slot.at, slot.minutes, tz)
            if now <= times.deadline or not days.applies(times, outlet.created_at):
                continue
            if not in_slot(anns, day, slot.at):
                continue  # nothing plays in this slot (cms.services.airtime)
            program = programs.get((outlet.id, slot.id))
            if program is None:
                # The scheduler was not running at all: record the gap as a missed program.
                program = Program(
                    outlet_id=outlet.id,
                    day=day,
                    slot_id=slot.id,
                    state=JobState.FAILED,
                    missed=True,
                    last_error=Message(N_("调度器未运行，节目未生成")).dumps(),
                )
                session.add(program)
                session.flush()
            # The receipt does not matter here: only built programs can be confirmed.
            result = days.outcome(
                times,
                outlet_created_at=outlet.created_at,
                program=program,
                receipt=None,
                now=now,
                late_grace=timedelta(0),
            )
            if result is days.Outcome.NOT_APPLICABLE:
                continue
            if program.path and not Path(program.path).exists():
                result = days.Outcome.MISSED  # built, but its file is gone: nothing was played
            if result not in (days.Outcome.MISSED, days.Outcome.BUILT_LATE):
                skipped = (program.manifest or {}).get("skipped") or []
                if skipped:
                    titles = "、".join(f"《{item.get('title', '')}》" for item in skipped)
                    gaps.programs += raise_program_alert(
                        session,
                        "program_incomplete",
                        N_("{outlet} {day} {slot} 的节目缺少{titles}（音频未能生成）"),
                        program,
                        titles=titles,
                    )
                continue
            if not program.missed:
                session.execute(
                    update(Program)
                    .where(Program.id == program.id)
                    .values(missed=True)
                    .execution_options(synchronize_session=False)
                )
            if result is days.Outcome.BUILT_LATE:
                continue  # missed at its time and since built (a retry): the alert is closed
            gaps.programs += raise_program_alert(
                session, "program_missed", N_("{outlet} {day} {slot} 的节目未按时就绪"), program
            )
    day_start = at_local(day, datetime.min.time(), tz)
    day_end = day_start + timedelta(days=1)
    late = session.scalars(
        select(Delivery).where(
            Delivery.due_at >= day_start,
            Delivery.due_at < day_end,
            Delivery.due_at < now - DELIVERY_GRACE,
            Delivery.state.in_(list(STATE_LABELS)),
        )
    )
    for delivery in late:
        gaps.deliveries += raise_alert(
            session,
            "delivery_gap",
            Message(
                N_("《{title}》发到群聊“{chat}”{state}{error}"),
                {
                    "title": delivery.revision.title,
                    "chat": delivery.chat_group.title or delivery.chat_group.chat_id,
                    "state": Message(STATE_LABELS[delivery.state]),
                    "error": Message(N_("：{error}"), {"error": Message.loads(delivery.last_error)})
                    if delivery.last_error
                    else "",
                },
            ),
            day=day,
            object_type="delivery",
            object_id=delivery.id,
        )
    gaps.resolved = resolve_fixed(session, now, tz)
    return gaps


def resolve_fixed(session: Session, now: datetime, tz: ZoneInfo) -> int:
    """Close delivery alerts whose delivery has since gone out, retried programs that are done,
    and missed-program alerts about slots that ended before their outlet existed."""
    count = 0
    for alert in session.scalars(select(Alert).where(Alert.resolved_at.is_(None))):
        fixed = False
        if alert.object_type == "delivery" and alert.object_id:
            state = session.scalar(select(Delivery.state).where(Delivery.id == alert.object_id))
            fixed = state in (DeliveryState.SENT, DeliveryState.CANCELLED, None)
        elif alert.kind in ("program_failed", "program_missed") and alert.object_id:
            # A missed program that was retried and built is closed like a failed one: the
            # same retry gives the same end state (built late) whichever slot it was.
            program = session.get(Program, alert.object_id)
            if program is None:
                fixed = True
            elif alert.kind == "program_failed":
                fixed = program.state is JobState.DONE and (
                    program.path is None or Path(program.path).exists()
                )
            else:
                times = days.SlotTimes.of_program(program, tz)
                fixed = (
                    days.is_built(program) and Path(program.path or "").exists()
                ) or not days.applies(times, program.outlet.created_at)
        if fixed:
            alert.resolved_at = now
            count += 1
    return count
