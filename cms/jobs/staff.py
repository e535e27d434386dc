"""Posts to the townships' staff channels (cms.services.staff): collected, then sent once.

A post is claimed (``sending``, committed, with a claim expiry) before it goes out. One still
``sending`` after its claim expired belonged to a process that died mid-send: it may have
arrived, so it becomes ``uncertain`` and is not sent again. A robot that is busy (rate
limits) or unreachable gets the post again later, up to :data:`MAX_ATTEMPTS` times.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from cms.channels import (
    ChannelError,
    ChatUnavailable,
    Notice,
    OutcomeUnknown,
    PermanentFailure,
    TemporaryFailure,
)
from cms.db import WHEN_NEEDED, rowcount, unit_of_work
from cms.jobs.context import Context
from cms.models import StaffPost
from cms.services import staff

log = logging.getLogger(__name__)

CLAIM = timedelta(minutes=5)
RETRY = timedelta(minutes=1)
MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class _Job:
    post_id: int
    platform: str
    chat_id: str
    text: str
    attempts: int
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)


def _claim(ctx: Context, post_id: int, now: datetime) -> _Job | None:
    def work(session):  # type: ignore[no-untyped-def]
        claimed = rowcount(
            session.execute(
                update(StaffPost)
                .where(StaffPost.id == post_id, StaffPost.state == "pending")
                .values(
                    state="sending",
                    attempts=StaffPost.attempts + 1,
                    next_attempt_at=now + CLAIM,
                )
            )
        )
        if not claimed:
            return None
        post = session.get(StaffPost, post_id)
        chat = post.staff_channel.chat_group
        return _Job(
            post.id, chat.platform, chat.chat_id, post.text, post.attempts,
            dict(chat.credentials or {}),
        )  # fmt: skip

    job: _Job | None = unit_of_work(ctx.sessions, work)
    return job


def _finish(ctx: Context, post_id: int, **values: object) -> None:
    unit_of_work(
        ctx.sessions,
        lambda s: s.execute(
            update(StaffPost)
            .where(StaffPost.id == post_id, StaffPost.state == "sending")
            .values(**values)
        ),
    )


def send_one(ctx: Context, post_id: int) -> str:
    """Send one due post; returns what became of it."""
    now = ctx.now()
    job = _claim(ctx, post_id, now)
    if job is None:
        return "taken"
    channel = ctx.registry.get(job.platform)
    if channel is None:
        _finish(ctx, post_id, state="pending", next_attempt_at=now + RETRY)
        return "no_channel"
    notice = Notice(
        delivery_id=0,
        chat_id=job.chat_id,
        title=staff.TITLE,
        text=job.text,
        credentials=job.credentials,
    )
    try:
        channel.send(notice, lambda _ids: None)
    except TemporaryFailure as exc:
        give_up = job.attempts >= MAX_ATTEMPTS
        wait = timedelta(seconds=exc.retry_after) if exc.retry_after else RETRY
        _finish(
            ctx,
            post_id,
            state="failed" if give_up else "pending",
            next_attempt_at=None if give_up else now + wait,
            last_error=str(exc)[:500],
        )
        return "failed" if give_up else "retry"
    except OutcomeUnknown as exc:
        _finish(ctx, post_id, state="uncertain", last_error=str(exc)[:500])
        return "uncertain"
    except (PermanentFailure, ChatUnavailable, ChannelError) as exc:
        _finish(ctx, post_id, state="failed", last_error=str(exc)[:500])
        return "failed"
    _finish(ctx, post_id, state="sent", sent_at=now, next_attempt_at=None)
    return "sent"


def tick(ctx: Context) -> int:
    """Collect new events into posts and send the due ones; returns how many were sent."""
    now = ctx.now()

    def collect(session):  # type: ignore[no-untyped-def]
        # Claims that expired: the process died mid-send; the post may have arrived.
        expired = (StaffPost.state == "sending", StaffPost.next_attempt_at < now)
        if session.scalar(select(StaffPost.id).where(*expired).limit(1)) is not None:
            session.execute(update(StaffPost).where(*expired).values(state="uncertain"))
        staff.collect(session, now, ctx.settings.base_url)
        return list(
            session.scalars(
                select(StaffPost.id)
                .where(
                    StaffPost.state == "pending",
                    or_(StaffPost.next_attempt_at.is_(None), StaffPost.next_attempt_at <= now),
                )
                .order_by(StaffPost.id)
            )
        )

    # Most ticks find nothing new: those never take the write lock.
    ids: list[int] = unit_of_work(ctx.sessions, collect, write=WHEN_NEEDED)
    outcomes = [send_one(ctx, post_id) for post_id in ids]
    for post_id, outcome in zip(ids, outcomes, strict=True):
        if outcome != "sent":
            log.info("staff post %s: %s", post_id, outcome)
    return outcomes.count("sent")
