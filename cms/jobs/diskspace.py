"""Renders and program builds wait while the disk is short of space, and resume when it is not.

Waiting is not failing: the row stays pending, no attempt is used, and ``last_error`` says
why (a stored :class:`~cms.services.errors.Message`, so each reader sees it in their own
language). Rows are put off by :data:`DISK_WAIT`; the first pass that finds space again
makes them due at once. When the database lives on the same full disk even that note
cannot be written; the rows then simply stay due and are checked again next pass.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from cms import disk, queue
from cms.db import WHEN_NEEDED, unit_of_work
from cms.jobs.context import Context
from cms.models import JobState
from cms.queue import QueueModel

log = logging.getLogger(__name__)

DISK_WAIT = timedelta(seconds=60)
"""How long work waits before it looks at the disk again (sooner once a pass finds space)."""
NO_SPACE = "no_space"
"""The outcome of a job that waits for space."""


def wait(
    session: Session,
    model: QueueModel,
    now: datetime,
    space: disk.DiskSpace,
    row_id: int | None = None,
) -> int:
    """Put off the due rows of ``model`` (or only ``row_id``), with the reason; returns how many."""
    return queue.postpone_due(session, model, now=now, row_id=row_id, **_waiting(space, now))


def _waiting(space: disk.DiskSpace, now: datetime) -> dict[str, Any]:
    """What a row that waits for space is given: pending (not running), due again after
    :data:`DISK_WAIT`, and why it waits."""
    return {
        "ready": JobState.PENDING,
        "running": JobState.RUNNING,
        "until": now + DISK_WAIT,
        "last_error": space.reason().dumps(),
    }


def resume(session: Session, model: QueueModel, now: datetime) -> int:
    """Make the rows of ``model`` that wait only for space due now."""
    waiting = model.last_error.startswith(disk.waiting_reason_prefix(), autoescape=True)
    return queue.hasten(session, model, ready=JobState.PENDING, now=now, where=waiting)


def hold(ctx: Context, model: QueueModel, row_id: int | None = None) -> bool:
    """True when the disk is short: the due rows (or ``row_id``) then wait for space.

    With space, rows that were waiting for it become due (for a whole pass, not per row).
    """
    now = ctx.now()
    space = disk.check(ctx.settings)
    _note(ctx, space)
    if not space.short:
        if row_id is None:
            # Every pass; it almost always finds nothing waiting: no write lock then.
            unit_of_work(ctx.sessions, lambda s: resume(s, model, now), write=WHEN_NEEDED)
        return False
    try:
        unit_of_work(ctx.sessions, lambda s: wait(s, model, now, space, row_id))
    except Exception as exc:
        if not disk.is_disk_full(exc):
            raise
        log.debug("cannot record the wait for space: the database's disk is full as well")
    return True


def give_back(ctx: Context, model: QueueModel, row_id: int, worker: str) -> str:
    """A claimed job ran out of space while writing: back to the queue, attempt refunded."""
    space = disk.check(ctx.settings)
    now = ctx.now()
    try:
        unit_of_work(
            ctx.sessions,
            lambda s: queue.give_back(s, model, row_id, worker=worker, **_waiting(space, now)),
        )
    except Exception as exc:
        if not disk.is_disk_full(exc):
            raise
        log.warning(
            "%s %s stays claimed until its hold expires: the disk is full", model.__name__, row_id
        )
    return NO_SPACE


def _note(ctx: Context, space: disk.DiskSpace) -> None:
    """Log when the disk becomes short and when it recovers, not at every pass."""
    was = ctx.shared.get("disk_short")
    if was == space.short:
        return
    ctx.shared["disk_short"] = space.short
    if space.short:
        log.warning(
            "disk short of space (%s MB free, %s MB needed): renders and builds wait",
            space.free_mb,
            space.need_mb,
        )
    elif was:
        log.info("disk space is back (%s MB free): renders and builds resume", space.free_mb)
