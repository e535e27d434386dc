"""Posts to the townships' staff channels (cms.services.staff): collected, then sent once.

A post is a queued job run by :func:`cms.jobs.lifecycle.run_job`: claimed (``sending``,
committed, with a claim expiry) before it goes out. One still ``sending`` after its claim
expired belonged to a process that died mid-send: it may have arrived, so it becomes
``uncertain`` and is not sent again (the claim never takes it back). A robot that is busy
(rate limits) or unreachable gets the post again later, up to
:data:`cms.queue.MAX_ATTEMPTS` times; one that refuses it fails it with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cms import queue
from cms.channels import (
    ChannelError,
    Notice,
    OutcomeUnknown,
    SendResult,
    TemporaryFailure,
)
from cms.db import WHEN_NEEDED, rowcount, unit_of_work
from cms.jobs.context import Context
from cms.jobs.lifecycle import Failure, Kind, Later, Outcome, finish, run_job
from cms.models import DeliveryState, StaffPost
from cms.services import staff

log = logging.getLogger(__name__)

CLAIM = timedelta(minutes=5)
RETRY = timedelta(minutes=1)


class Report(Protocol):
    """Where outcomes are counted (the scheduler's pass report)."""

    def count(self, kind: str, outcome: str) -> None: ...


@dataclass(frozen=True)
class _Job:
    post_id: int
    platform: str
    chat_id: str
    text: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)


def _load(session: Session, ctx: Context, post_id: int) -> _Job | None:
    post = session.get(StaffPost, post_id)
    if post is None:
        return None
    chat = post.staff_channel.chat_group
    return _Job(post.id, chat.platform, chat.chat_id, post.text, dict(chat.credentials or {}))


def _notice(job: _Job) -> Notice:
    """What the robot's channel posts to the work group."""
    return Notice(
        delivery_id=0,
        chat_id=job.chat_id,
        title=staff.TITLE,
        text=job.text,
        credentials=job.credentials,
    )


def _send(ctx: Context, job: _Job) -> SendResult:
    channel = ctx.registry.get(job.platform)
    if channel is None:  # the robot's plugin is not loaded: the post waits, no attempt used
        raise Later(ctx.now() + RETRY)
    return channel.send(_notice(job), lambda _ids: None)


def _sent(session: Session, ctx: Context, job: _Job, _result: SendResult) -> Outcome:
    moved = finish(
        session, ctx, POST, job.post_id, DeliveryState.SENT, sent_at=ctx.now(), next_attempt_at=None
    )
    return Outcome.SENT if moved else Outcome.SKIPPED


def _classify(job: _Job, exc: BaseException) -> Failure:
    if isinstance(exc, TemporaryFailure):  # busy or unreachable: again later
        return Failure(retry_after=exc.retry_after)
    if isinstance(exc, OutcomeUnknown):  # it may be in the group already: never sent again
        return Failure(final=DeliveryState.UNCERTAIN)
    if isinstance(exc, ChannelError):  # refused (and would be again), or the chat is gone
        return Failure(final=DeliveryState.FAILED)
    # Whether the request went out is not known: as after a crash mid-send.
    log.exception("staff post %s: unexpected channel error", job.post_id, exc_info=exc)
    return Failure(final=DeliveryState.UNCERTAIN)


def _wait(_attempts: int, retry_after: float | None) -> timedelta:
    """A minute between attempts, or as long as the robot asked."""
    return timedelta(seconds=retry_after) if retry_after else RETRY


POST: Kind[_Job, SendResult] = Kind(
    name="staff post", model=StaffPost, hold=CLAIM, backoff=_wait,
    load=_load, work=_send, record=_sent, classify=_classify,
    # A post's states are a delivery's: pending → sending → sent | failed | uncertain.
    ready=DeliveryState.PENDING, running=DeliveryState.SENDING, failed=DeliveryState.FAILED,
    outcomes={DeliveryState.FAILED: Outcome.FAILED, DeliveryState.UNCERTAIN: Outcome.UNCERTAIN},
    # Only a pending post is claimed: one whose claim expired is the crash rule's (below).
    claim_if=lambda _now: StaffPost.state == DeliveryState.PENDING,
)  # fmt: skip


def send_one(ctx: Context, post_id: int) -> Outcome:
    """Claim, send and record one due post; returns what became of it."""
    return run_job(ctx, POST, post_id)


def abandon_expired(session: Session, now: datetime) -> int:
    """Posts still ``sending`` after their claim expired: the process died mid-send and the
    post may have arrived, so they become ``uncertain``; returns how many."""
    expired = (
        StaffPost.state == DeliveryState.SENDING,
        or_(StaffPost.claimed_until.is_(None), StaffPost.claimed_until < now),
    )
    # Looked up first: this runs every tick and almost always finds nothing to write.
    if session.scalar(select(StaffPost.id).where(*expired).limit(1)) is None:
        return 0
    return rowcount(
        session.execute(
            update(StaffPost)
            .where(*expired)
            .values(state=DeliveryState.UNCERTAIN, claimed_until=None)
            .execution_options(synchronize_session=False)
        )
    )


def tick(ctx: Context, report: Report | None = None) -> int:
    """Collect new events into posts and send the due ones; returns how many were sent."""
    now = ctx.now()

    def collect(session: Session) -> list[int]:
        abandon_expired(session, now)
        staff.collect(session, now, ctx.settings.base_url)
        return list(
            session.scalars(
                select(StaffPost.id)
                .where(queue.claimable(StaffPost, DeliveryState.PENDING, now))
                .order_by(StaffPost.id)
            )
        )

    # Most ticks find nothing new: those never take the write lock.
    ids: list[int] = unit_of_work(ctx.sessions, collect, write=WHEN_NEEDED)
    outcomes = [send_one(ctx, post_id) for post_id in ids]
    for post_id, outcome in zip(ids, outcomes, strict=True):
        if report is not None:
            report.count("staff_post", outcome)
        if outcome is not Outcome.SENT:
            log.info("staff post %s: %s", post_id, outcome)
    return outcomes.count(Outcome.SENT)
