"""Daily reconciliation: what should have gone out against what did; gaps become alerts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms.models import Alert, Delivery, DeliveryState, JobState, Outlet, Program
from cms.scheduler.clock import at_local
from cms.scheduler.programs import GRACE, outlet_announcements, raise_alert, slot_start
from cms.services.errors import N_, Message

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
            start = slot_start(day, slot.at, tz)
            if now <= start + GRACE:
                continue
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
            ok = program.state is JobState.DONE and (
                program.path is None or Path(program.path).exists()
            )
            if ok and program.built_at is not None and program.built_at > start + GRACE:
                ok = False  # built too late to be played in its slot
            if ok:
                skipped = (program.manifest or {}).get("skipped") or []
                if skipped:
                    titles = "、".join(f"《{item.get('title', '')}》" for item in skipped)
                    gaps.programs += raise_alert(
                        session,
                        "program_incomplete",
                        Message(
                            N_("{outlet} {day} {slot} 的节目缺少{titles}（音频未能生成）"),
                            {
                                "outlet": outlet.name,
                                "day": day.isoformat(),
                                "slot": slot.label,
                                "titles": titles,
                            },
                        ),
                        day=day,
                        object_type="program",
                        object_id=program.id,
                    )
                continue
            if not program.missed:
                session.execute(
                    update(Program)
                    .where(Program.id == program.id)
                    .values(missed=True)
                    .execution_options(synchronize_session=False)
                )
            gaps.programs += raise_alert(
                session,
                "program_missed",
                Message(
                    N_("{outlet} {day} {slot} 的节目未按时就绪"),
                    {"outlet": outlet.name, "day": day.isoformat(), "slot": slot.label},
                ),
                day=day,
                object_type="program",
                object_id=program.id,
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
    gaps.resolved = resolve_fixed(session, now)
    return gaps


def resolve_fixed(session: Session, now: datetime) -> int:
    """Close delivery alerts whose delivery has since gone out, and retried programs that are done."""
    count = 0
    for alert in session.scalars(select(Alert).where(Alert.resolved_at.is_(None))):
        fixed = False
        if alert.object_type == "delivery" and alert.object_id:
            state = session.scalar(select(Delivery.state).where(Delivery.id == alert.object_id))
            fixed = state in (DeliveryState.SENT, DeliveryState.CANCELLED, None)
        elif alert.kind == "program_failed" and alert.object_id:
            built = session.scalar(select(Program.state).where(Program.id == alert.object_id))
            fixed = built in (JobState.DONE, None)
        if fixed:
            alert.resolved_at = now
            count += 1
    return count


def open_alerts(session: Session, limit: int = 100) -> list[Alert]:
    """Unresolved alerts, newest first (for the dashboard and the status page)."""
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.resolved_at.is_(None))
            .order_by(Alert.created_at.desc(), Alert.id.desc())
            .limit(limit)
        )
    )


def resolve(session: Session, alert_id: int, now: datetime) -> bool:
    alert = session.get(Alert, alert_id)
    if alert is None or alert.resolved_at is not None:
        return False
    alert.resolved_at = now
    return True
