"""APScheduler as the clock: it only ticks; the database holds the work and the truth.

:func:`start_scheduler` starts a background scheduler whose jobs are short passes over
the queue tables (see :class:`cms.scheduler.core.Scheduler`). Every pass first checks
that this process holds the lease; a process that does not hold it keeps trying at each
heartbeat and takes over when the holder's lease expires (or at once when the holder was
a dead process on this machine), so a second ``dalaba serve`` is a warm standby.

Every job has ``coalesce=True`` and a ``misfire_grace_time``: APScheduler's default grace
of one second would silently skip the daily build after the PC was asleep or busy.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypedDict

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from cms import lease
from cms.channels import ChannelRegistry
from cms.clock import Clock, parse_hhmm
from cms.db import make_session_factory
from cms.disk import is_disk_full
from cms.jobs import breakin, terminals
from cms.jobs.context import Context
from cms.jobs.outbox import PLATFORM as OUTBOX
from cms.jobs.outbox import OutboxChannel
from cms.scheduler import priority
from cms.scheduler.core import Scheduler
from cms.settings import Settings

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0
LEASE_SECONDS = 30.0
RECONCILE_MINUTES = 10
ESCALATE_MINUTES = 5
# The executor of renders and builds (lower CPU priority), and its threads: render, build and
# the daily build each run one at a time.
WORK = "work"
WORK_THREADS = 3
# A holder that cannot renew stops this long before its lease expires, so that a process
# taking over at the expiry never overlaps it.
LEASE_MARGIN = timedelta(seconds=1)


class Tuning(TypedDict, total=False):
    """Keyword arguments of :func:`start_scheduler` that the environment may set."""

    tick_seconds: float
    lease_seconds: float


def tuning_from_env(environ: Mapping[str, str]) -> Tuning:
    """Optional knobs for tests and large installations (``DALABA_SCHEDULER_TICK`` / ``_LEASE``)."""
    out: Tuning = {}
    tick = _seconds(environ, "DALABA_SCHEDULER_TICK")
    if tick is not None:
        out["tick_seconds"] = tick
    lease = _seconds(environ, "DALABA_SCHEDULER_LEASE")
    if lease is not None:
        out["lease_seconds"] = lease
    return out


def _seconds(environ: Mapping[str, str], key: str) -> float | None:
    raw = environ.get(key)
    if not raw:
        return None
    value = float(raw)
    if not 0.05 <= value <= 3600:
        raise ValueError(f"{key} 应在 0.05–3600 秒之间（当前为 {raw!r}）")
    return value


@dataclass
class SchedulerHandle:
    """A running scheduler (or standby) in this process."""

    scheduler: Scheduler
    holder: str
    lease_ttl: timedelta
    _aps: BackgroundScheduler | None = None
    _leader: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # When the lease we last renewed expires (in the scheduler's clock); None: not held.
    holds_until: datetime | None = None
    started_at: datetime = field(init=False)

    def __post_init__(self) -> None:
        self.started_at = self.scheduler.ctx.now()

    @property
    def leader(self) -> bool:
        with self._lock:
            return self._leader

    def current_holder(self) -> str | None:
        return lease.read(self.scheduler.ctx.engine).holder

    def heartbeat(self) -> bool:
        """Renew or try to take the lease; on taking it, resume work orphaned by a crash."""
        ctx = self.scheduler.ctx
        now = ctx.now()
        try:
            held = lease.acquire(ctx.engine, self.holder, now, self.lease_ttl)
        except Exception as exc:
            # A busy or briefly unreachable database is not a lost lease: what we hold
            # stays ours until its expiry really passes, and nobody can take it before.
            held = self.holds_until is not None and now < self.holds_until - LEASE_MARGIN
            log.warning(
                "scheduler lease not renewed (%s); %s",
                exc,
                "still held until its expiry" if held else "no longer held",
            )
        else:
            if held:
                self.holds_until = now + self.lease_ttl
        with self._lock:
            was, self._leader = self._leader, held
        if not held:
            self.holds_until = None
        if held and not was:
            log.info("scheduler lease taken by %s: this process runs the scheduler", self.holder)
            self.scheduler.release_orphans()
            lease.record_info(
                ctx.engine, self.holder, started_at=self.started_at.isoformat(), pid=_pid()
            )
        elif was and not held:
            log.warning("scheduler lease lost: this process stops scheduling")
        return held

    def stop(self) -> None:
        """Stop ticking, wait for running jobs, and give the lease up for the next process."""
        if self._aps is not None:
            self._aps.shutdown(wait=True)
            self._aps = None
        if self.leader:
            lease.release(self.scheduler.ctx.engine, self.holder, self.scheduler.ctx.now())
            with self._lock:
                self._leader = False
        log.info("scheduler stopped")


def _pid() -> int:
    import os

    return os.getpid()


def start_scheduler(
    settings: Settings,
    engine: Engine,
    registry: ChannelRegistry,
    *,
    clock: Clock | None = None,
    tick_seconds: float = TICK_SECONDS,
    lease_seconds: float = LEASE_SECONDS,
    renderer_factory: Callable[[Settings], Any] | None = None,
) -> SchedulerHandle:
    """Start the scheduler (or a standby) for ``engine``; returns a handle with ``stop()``.

    The local outbox channel is registered unless the registry already has one. The
    first lease check happens before this returns, so ``handle.leader`` tells the caller
    whether this process runs the scheduler.
    """
    # APScheduler logs every run at INFO and every overlap at WARNING: with ticks of a few
    # seconds that drowns the log; our jobs log what they do themselves.
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    sessions = make_session_factory(engine, clock=clock or settings.clock)
    if registry.get(OUTBOX) is None:
        registry.register(OutboxChannel(sessions))
    ctx = Context(
        settings=settings,
        engine=engine,
        sessions=sessions,
        registry=registry,
        worker=lease.make_holder_id(),
        clock=clock or settings.clock,
        renderer_factory=renderer_factory,
    )
    handle = SchedulerHandle(
        scheduler=Scheduler(ctx), holder=ctx.worker, lease_ttl=timedelta(seconds=lease_seconds)
    )
    handle.heartbeat()
    # Renders and builds (ffmpeg, the speech engines) run in threads of their own at a lower
    # CPU priority, so that pages stay quick while they work (cms.scheduler.priority); the
    # lease, planning, chat posts and break-ins keep the normal one.
    work_pool = ThreadPoolExecutor(
        WORK_THREADS,
        pool_kwargs={"initializer": priority.lower_this_thread, "initargs": (settings.work_nice,)},
    )
    aps = BackgroundScheduler(
        timezone=settings.tz,
        daemon=True,
        executors={"default": ThreadPoolExecutor(10), WORK: work_pool},
    )
    tick = timedelta(seconds=tick_seconds)
    common: dict[str, Any] = {"coalesce": True, "max_instances": 1}
    short_grace = max(int(tick_seconds * 4), 30)
    now = datetime.now(UTC)  # APScheduler ticks on the real clock, whatever ours says

    def guarded(name: str, fn: Callable[[], Any]) -> Callable[[], None]:
        def job() -> None:
            if not handle.leader:
                return
            try:
                fn()
            except Exception as exc:
                if is_disk_full(exc):  # a state, not a bug: no traceback at every tick
                    log.warning("scheduler job %s: the disk is full; it runs again later", name)
                    return
                log.exception("scheduler job %s failed; it runs again at the next tick", name)

        job.__name__ = f"dalaba_{name}"
        return job

    sched = handle.scheduler

    def plan_pass() -> None:
        report = sched.plan()
        lease.record_info(
            engine,
            handle.holder,
            last_tick=ctx.now().isoformat(),
            queues=sched.queue_lengths(),
            last_plan={
                "clips": report.planned_clips,
                "programs": report.planned_programs,
                "deliveries": report.planned_deliveries,
                "cancelled": report.cancelled_deliveries,
            },
        )

    aps.add_job(
        handle.heartbeat,
        "interval",
        seconds=max(lease_seconds / 3, 0.05),
        id="lease",
        misfire_grace_time=max(int(lease_seconds), 1),
        **common,
    )
    for name, fn, executor in (
        ("plan", plan_pass, "default"),
        ("render", lambda: sched.render_due(budget_s=max(tick_seconds * 6, 30)), WORK),
        ("build", sched.build_due, WORK),
        ("dispatch", sched.dispatch_due, "default"),
        # Official Account drafts for new approvals, the 发布 requests, publish polling.
        ("publish", sched.publish_due, "default"),
        ("staff", sched.staff_due, "default"),
    ):
        aps.add_job(
            guarded(name, fn),
            "interval",
            seconds=tick.total_seconds(),
            id=name,
            next_run_time=now,
            misfire_grace_time=short_grace,
            executor=executor,
            **common,
        )
    # Break-ins (立即插播) are looked for every second or tick, whichever is sooner: the
    # look is one indexed query, and an emergency should not wait for the next tick.
    aps.add_job(
        guarded("breakin", lambda: breakin.run_due(ctx)),
        "interval",
        seconds=min(tick.total_seconds(), 1.0),
        id="breakin",
        next_run_time=now,
        misfire_grace_time=short_grace,
        **common,
    )
    build_at = parse_hhmm(settings.build_time)
    aps.add_job(
        guarded(
            "daily_build",
            lambda: (sched.plan(), sched.render_due(budget_s=600), sched.plan(), sched.build_due()),
        ),
        "cron",
        hour=build_at.hour,
        minute=build_at.minute,
        id="daily_build",
        executor=WORK,
        # A PC that was off at 04:00 still builds when it comes back in the morning.
        misfire_grace_time=6 * 3600,
        **common,
    )
    # Checks that look back over the day: each runs every few minutes, and one missed
    # while the PC slept runs once when it wakes (within its own interval).
    checks: tuple[tuple[str, Callable[[], Any], int], ...] = (
        ("reconcile", lambda: sched.reconcile(), RECONCILE_MINUTES),
        ("terminals", lambda: terminals.check_silent(ctx), RECONCILE_MINUTES),
        ("escalate", sched.escalate, ESCALATE_MINUTES),
        ("notify", sched.notify, 1),
    )
    for name, fn, minutes in checks:
        aps.add_job(
            guarded(name, fn),
            "interval",
            minutes=minutes,
            id=name,
            misfire_grace_time=minutes * 60,
            **common,
        )
    aps.add_job(
        guarded(
            "reconcile_yesterday",
            lambda: sched.reconcile(ctx.today() - timedelta(days=1)),
        ),
        "cron",
        hour=0,
        minute=20,
        id="reconcile_yesterday",
        misfire_grace_time=12 * 3600,
        **common,
    )
    aps.start()
    handle._aps = aps
    return handle
