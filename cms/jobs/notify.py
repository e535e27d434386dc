"""Alerts reach the officers' own chats, not only the dashboard.

Officers (admins, editors, reviewers) who linked a chat account (``/link CODE`` with the bot)
get each new alert as a private message through the channel of their platform. An alert is
claimed (``notified_at`` set) before it is sent, so a crash never sends it twice; the price
is that a crash mid-send may skip it, which is acceptable because the dashboard lists every
open alert anyway. Without a channel for the platform (no bot token) nothing is claimed, so
alerts raised while the bot was down are sent once it runs, if they are still fresh.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms.channels import ChannelError, Notice
from cms.db import rowcount, unit_of_work
from cms.jobs.context import Context
from cms.models import Alert, ChatAccount, User
from cms.roles import STAFF
from cms.services.errors import Message

log = logging.getLogger(__name__)

FRESH_FOR = timedelta(hours=24)
"""Older unsent alerts stay on the dashboard only: a day-old alarm in a chat helps nobody."""
TITLE = "大喇叭提醒"


def _claim(session: Session, alert_id: int, now: datetime) -> int:
    """Mark the alert sent; 0 when another pass already did."""
    return rowcount(
        session.execute(
            update(Alert)
            .where(Alert.id == alert_id, Alert.notified_at.is_(None))
            .values(notified_at=now)
        )
    )


def notify_alerts(ctx: Context) -> int:
    """Send fresh, unsent, unresolved alerts to the officers' linked chats; returns how many."""
    now = ctx.now()

    def pending(session: Session) -> tuple[list[tuple[int, str]], list[tuple[str, str]]]:
        alerts = session.scalars(
            select(Alert)
            .where(
                Alert.notified_at.is_(None),
                Alert.resolved_at.is_(None),
                Alert.created_at >= now - FRESH_FOR,
            )
            .order_by(Alert.id)
        ).all()
        recipients = session.execute(
            select(ChatAccount.platform, ChatAccount.external_id)
            .join(User, User.id == ChatAccount.user_id)
            .where(User.active, User.role.in_(STAFF))
        ).all()
        # Chats speak Chinese: the stored message is rendered from its Chinese msgid.
        return [(a.id, Message.loads(a.message).render()) for a in alerts], [
            (p, chat) for p, chat in recipients
        ]

    alerts, recipients = unit_of_work(ctx.sessions, pending)
    reachable = [(p, chat) for p, chat in recipients if ctx.registry.get(p) is not None]
    if not alerts or not reachable:
        return 0
    sent = 0
    for alert_id, message in alerts:
        claimed = unit_of_work(
            ctx.sessions,
            partial(_claim, alert_id=alert_id, now=now),
        )
        if not claimed:
            continue  # another pass got it first
        for platform, chat_id in reachable:
            channel = ctx.registry.get(platform)
            assert channel is not None
            try:
                channel.send(
                    Notice(delivery_id=0, chat_id=chat_id, title=TITLE, text=message),
                    lambda _ids: None,
                )
            except ChannelError as exc:
                log.warning("alert %s not delivered to %s:%s: %s", alert_id, platform, chat_id, exc)
        sent += 1
    return sent
