"""One job runner: :func:`run_job` takes any queued row through its life.

Every kind of work (render a clip, build a program, send a delivery …) lives the same way:

1. wait for disk space (kinds that write audio) or for a reason of the kind (``not_yet``);
2. claim the row (one guarded ``UPDATE``: ready → running, one more attempt, a hold);
3. load what the work needs (a short read; no transaction is open while the work runs);
4. do the work (render, build, send) outside any transaction;
5. record the outcome with one guarded ``UPDATE`` (only if this worker still holds the claim):
   success as the kind says; a failure as the kind classifies it (:class:`Failure`): retried
   with backoff until the attempts run out, failed at once, or *uncertain* (sent perhaps, so
   never sent again without a person looking); out of disk space, the row goes back to the
   queue with its attempt refunded.

A kind is a :class:`Kind`: the row's model and states, and the four small functions that
differ (``load``, ``work``, ``record``, ``classify``). The work may raise :class:`Later` (it
cannot start yet: back to the queue, no attempt used) or :class:`Cancelled` (nothing to do
any more). Every outcome is an :class:`Outcome`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from cms import disk, queue
from cms.db import unit_of_work
from cms.jobs import diskspace
from cms.jobs.context import Context
from cms.models import JobState
from cms.queue import QueueModel, QueueState

log = logging.getLogger(__name__)

J = TypeVar("J")
R = TypeVar("R")


class Outcome(enum.StrEnum):
    """What became of one run of a job (counted per kind in the scheduler's pass report)."""

    DONE = "done"
    BUILT = "built"
    UNCHANGED = "unchanged"
    EMPTY = "empty"
    SENT = "sent"
    RETRY = "retry"
    PENDING = "pending"  # a delivery back in the queue, to be sent again later
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    WAITING = "waiting"
    NO_SPACE = diskspace.NO_SPACE
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    # The steps of an Official Account article (see cms.models.ArticleState).
    QUEUED = "queued"
    DRAFTED = "drafted"
    PUBLISHING = "publishing"
    PUBLISHED = "published"


class Later(Exception):
    """Raised by a job's work that cannot start yet: the row goes back to the queue until
    ``until`` and its attempt is refunded (a clip still rendering is no fault of the job)."""

    def __init__(self, until: datetime) -> None:
        super().__init__(until.isoformat())
        self.until = until


class Cancelled(Exception):
    """Raised by a job's work that has nothing to do any more (the notice ended)."""


@dataclass(frozen=True)
class Failure:
    """How a kind treats one error.

    Attributes:
        final: the state to leave the row in at once (failed, uncertain); ``None``: retry
            with backoff until the attempts run out, then the kind's failed state.
        retry_after: the platform asked to wait at least this many seconds.
        endless: never runs out of attempts (a platform that says "wait" is obeyed).
        error: the stored failure reason (default: :func:`cms.queue.error_text`).
        then: more work in the same transaction, given whether the row failed for good
            (an alert, a chat marked gone); it may return more values for the row.
    """

    final: QueueState | None = None
    retry_after: float | None = None
    endless: bool = False
    error: str | None = None
    then: Callable[[Session, bool], dict[str, Any] | None] | None = None


@dataclass(frozen=True)
class Kind(Generic[J, R]):
    """One kind of queued work; see the module doc for the life :func:`run_job` gives it."""

    name: str
    model: QueueModel
    hold: timedelta  # how long a claim holds before the row counts as abandoned
    load: Callable[[Session, Context, int], J | None]
    work: Callable[[Context, J], R]
    record: Callable[[Session, Context, J, R], Outcome]
    classify: Callable[[J, BaseException], Failure]
    ready: QueueState = JobState.PENDING
    running: QueueState = JobState.RUNNING
    failed: QueueState = JobState.FAILED  # out of attempts
    disk: bool = False  # writes audio: waits while the disk is short, gives back when full
    not_yet: Callable[[Session, int, datetime], bool] | None = None
    claim_if: Callable[[datetime], ColumnElement[bool]] | None = None
    load_writes: bool | str = False
    cancelled: QueueState | None = None  # the state :class:`Cancelled` leaves the row in
    after: Callable[[Context, int, Outcome], None] | None = None  # once recorded (committed)
    retry_outcome: Outcome = Outcome.RETRY
    outcomes: dict[QueueState, Outcome] = field(default_factory=dict)
    # The wait before the next attempt, given the attempts used and the platform's ask.
    backoff: Callable[[int, float | None], timedelta] = queue.backoff


def run_job(ctx: Context, kind: Kind[J, R], row_id: int) -> Outcome:
    """Claim, perform and record one row of ``kind``; returns what became of it."""
    ctx = ctx.for_job()
    if kind.disk and diskspace.hold(ctx, kind.model, row_id):
        return Outcome.NO_SPACE
    now = ctx.now()
    not_yet = kind.not_yet
    if not_yet is not None and unit_of_work(
        ctx.sessions, lambda s: not_yet(s, row_id, now), write=False
    ):
        return Outcome.WAITING
    extra = kind.claim_if(now) if kind.claim_if is not None else None
    if not unit_of_work(
        ctx.sessions,
        lambda s: queue.claim(
            s,
            kind.model,
            row_id,
            ready=kind.ready,
            running=kind.running,
            worker=ctx.worker,
            now=now,
            hold=kind.hold,
            extra=extra,
        ),
    ):
        return Outcome.SKIPPED
    job = unit_of_work(ctx.sessions, lambda s: kind.load(s, ctx, row_id), write=kind.load_writes)
    if job is None:
        return Outcome.SKIPPED
    try:
        result = kind.work(ctx, job)
    except Later as later:
        until = later.until
        unit_of_work(
            ctx.sessions,
            lambda s: finish(
                s, ctx, kind, row_id, kind.ready, attempts=kind.model.attempts - 1,
                next_attempt_at=until,
            ),
        )  # fmt: skip
        return Outcome.WAITING
    except Cancelled:
        if kind.cancelled is None:
            raise
        state = kind.cancelled
        unit_of_work(ctx.sessions, lambda s: finish(s, ctx, kind, row_id, state))
        return Outcome.CANCELLED
    except Exception as exc:
        if kind.disk and disk.is_disk_full(exc):
            log.warning("%s %s: no space left to write it; it waits", kind.name, row_id)
            return Outcome(diskspace.give_back(ctx, kind.model, row_id, ctx.worker))
        failure = kind.classify(job, exc)
        return unit_of_work(
            ctx.sessions, partial(_failed, ctx=ctx, kind=kind, row_id=row_id, exc=exc, how=failure)
        )
    outcome = unit_of_work(ctx.sessions, lambda s: kind.record(s, ctx, job, result))
    if kind.after is not None:
        kind.after(ctx, row_id, outcome)
    return outcome


def finish(
    session: Session, ctx: Context, kind: Kind[Any, Any], row_id: int, state: QueueState,
    **values: Any,
) -> bool:  # fmt: skip
    """Move the row this worker claimed from running to ``state``; False if it lost the claim."""
    return queue.finish(
        session, kind.model, row_id, running=kind.running, new=state, worker=ctx.worker, **values
    )


def _failed(
    session: Session, ctx: Context, kind: Kind[Any, Any], row_id: int, exc: BaseException,
    how: Failure,
) -> Outcome:  # fmt: skip
    attempts = session.scalar(select(kind.model.attempts).where(kind.model.id == row_id)) or 0
    error = how.error if how.error is not None else queue.error_text(exc)
    state = how.final
    if state is None and attempts >= queue.MAX_ATTEMPTS and not how.endless:
        state = kind.failed
    values = (how.then(session, state is not None) or {}) if how.then is not None else {}
    if state is None:
        next_at = ctx.now() + kind.backoff(attempts, how.retry_after)
        moved = finish(
            session, ctx, kind, row_id, kind.ready, last_error=error, next_attempt_at=next_at,
            **values,
        )  # fmt: skip
        return kind.retry_outcome if moved or not kind.outcomes else Outcome.SKIPPED
    moved = finish(
        session, ctx, kind, row_id, state, last_error=error, next_attempt_at=None, **values
    )
    if kind.outcomes:  # the kind reports the state it left (or that it lost the claim)
        return kind.outcomes[state] if moved else Outcome.SKIPPED
    return Outcome.FAILED
