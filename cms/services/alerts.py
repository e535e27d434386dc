"""Alerts: problems the scheduler found (a missed program, a silent terminal …) for people.

Each alert is raised once per kind, object and day, stored as a message id with its
parameters (rendered in the reader's language), and resolved by a person or by the
scheduler when the problem went away.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from cms.models import Alert, Program
from cms.services.errors import Message

log = logging.getLogger(__name__)


def raise_alert(
    session: Session,
    kind: str,
    message: Message,
    *,
    day: date | None,
    object_type: str,
    object_id: int | None,
) -> bool:
    """Create an alert once (kind × object × day); True when it is new."""
    exists = session.scalar(
        select(Alert.id).where(
            Alert.kind == kind,
            Alert.object_type == object_type,
            Alert.object_id == object_id,
            Alert.day == day if day is not None else Alert.day.is_(None),
        )
    )
    if exists is not None:
        return False
    session.add(
        Alert(
            kind=kind,
            message=message.dumps(),  # rendered in the reader's language when shown
            day=day,
            object_type=object_type,
            object_id=object_id,
        )
    )
    session.flush()
    log.warning("alert %s: %s", kind, message.render())
    return True


def raise_program_alert(
    session: Session,
    kind: str,
    msgid: str,
    program: Program,
    **params: str,
) -> bool:
    """:func:`raise_alert` about one program; the message takes ``{outlet}``, ``{day}`` and
    ``{slot}`` (the program's outlet's name, its day, its slot's label), and any further
    ``params``."""
    day = program.day
    names = {"outlet": program.outlet.name, "day": day.isoformat(), "slot": program.slot.label}
    return raise_alert(
        session,
        kind,
        Message(msgid, {**names, **params}),
        day=day,
        object_type="program",
        object_id=program.id,
    )


def open_alerts(
    session: Session, limit: int = 100, where: ColumnElement[bool] | None = None
) -> list[Alert]:
    """Unresolved alerts, newest first (for the dashboard and the status page).

    ``where``: a further condition (the reader's scope).
    """
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.resolved_at.is_(None), *([] if where is None else [where]))
            .order_by(Alert.created_at.desc(), Alert.id.desc())
            .limit(limit)
        )
    )


def resolve(session: Session, alert_id: int, now: datetime) -> bool:
    """Mark an open alert resolved at ``now``; False when there is none or it was resolved."""
    alert = session.get(Alert, alert_id)
    if alert is None or alert.resolved_at is not None:
        return False
    alert.resolved_at = now
    return True
