"""The local outbox channel: chat messages recorded in the database and shown in the CMS.

It is the default channel and the demo's. Every chat whose platform has no registered
channel (a "telegram" chat while no bot token is set, or any platform not installed) is
delivered here instead, so nothing is lost and officers can read what would have been
posted; such a delivery's message ids start with ``outbox:``. Once a real channel is
registered, new deliveries go through it; deliveries already recorded here are not
re-sent.

Unlike Telegram, the outbox has a natural idempotency key (delivery id + part number):
parts already recorded for a delivery are returned instead of written again, so a crash
between recording a part and the dispatcher noting it produces no duplicate.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from cms.channels import Notice, ProgressCallback, SendResult
from cms.db import unit_of_work
from cms.models import Delivery, OutboxMessage

log = logging.getLogger(__name__)

PLATFORM = "outbox"
ID_PREFIX = "outbox:"


class OutboxChannel:
    """Records each notice as a text message and, when there is audio, a voice message."""

    platform = PLATFORM
    idempotent = True

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        """Record the parts not yet recorded for this delivery; report each one."""
        parts: list[tuple[str, str, Path | None]] = [
            ("text", f"【{notice.title}】\n{notice.text}", None)
        ]
        if notice.voice_path is not None:
            parts.append(("voice", notice.title, notice.voice_path))
        ids: list[str] = []
        for index, (kind, text, path) in enumerate(parts):
            ids.append(
                unit_of_work(
                    self._sessions,
                    partial(
                        self._record, notice=notice, index=index, kind=kind, text=text, path=path
                    ),
                )
            )
            progress(list(ids))
        return SendResult(message_ids=ids)

    def _record(
        self, session: Session, notice: Notice, index: int, kind: str, text: str, path: Path | None
    ) -> str:
        existing = list(
            session.scalars(
                select(OutboxMessage.id)
                .where(OutboxMessage.delivery_id == notice.delivery_id)
                .order_by(OutboxMessage.id)
            )
        )
        if index < len(existing):
            return f"{ID_PREFIX}{existing[index]}"
        chat = session.scalar(
            select(Delivery.chat_group_id).where(Delivery.id == notice.delivery_id)
        )
        message = OutboxMessage(
            delivery_id=notice.delivery_id,
            chat_group_id=chat,
            kind=kind,
            text=text,
            file_path=str(path) if path else None,
        )
        session.add(message)
        session.flush()
        log.info("outbox: delivery %s part %s recorded", notice.delivery_id, index)
        return f"{ID_PREFIX}{message.id}"
