"""The scheduler's work, one pass at a time; APScheduler (see :mod:`runner`) only calls it.

Every pass is level-triggered: it compares the database with what should be and queues
the difference (clips to render, programs to rebuild, posts to send), then works through
the queue. Nothing depends on having seen an event, so a restart after any crash simply
resumes from the rows.
"""

from __future__ import annotations

import logging
import threading
import time as _time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import queue, tree
from cms.clock import at_local, local_day, parse_hhmm
from cms.db import WHEN_NEEDED, unit_of_work
from cms.jobs import articles, deliveries, diskspace, programs, reconcile, renders
from cms.jobs.context import Context
from cms.models import (
    Area,
    BreakIn,
    Clip,
    Delivery,
    DeliveryState,
    JobState,
    Outlet,
    Program,
    Slot,
)
from cms.services import announcements
from cms.services.airtime import in_slot

log = logging.getLogger(__name__)

DISPATCH_WORKERS = 12
"""Chats served side by side; the Telegram channel rate-limits across them itself. A worker
spends most of its time waiting (an HTTP answer, a robot's per-minute window, a pause after
a "too fast" or 5xx answer) and holds a database connection only for its short
transactions, so there are more workers than cores: with 4, a few robots pausing after
throttling answers held up every other robot's first post by seconds (bench/robots.py).
Kept below SQLAlchemy's default pool of 15 connections."""
BUILD_AHEAD_DAYS = 1
"""At the build time, programs are made for today and this many days after it."""


@dataclass
class PassReport:
    planned_clips: int = 0
    planned_programs: int = 0
    planned_deliveries: int = 0
    cancelled_deliveries: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, outcome: str) -> None:
        key = f"{kind}.{outcome}"
        self.outcomes[key] = self.outcomes.get(key, 0) + 1


@dataclass
class _Survey:
    """What a planning pass found in its read transaction (see :meth:`Scheduler.plan`)."""

    clips: list[renders.ClipChange]
    deliveries: list[tuple[int, int, datetime]]
    days: list[tuple[date, bool | set[int]]] = field(default_factory=list)
    inputs: dict[date, dict[tuple[int, int], programs.Inputs]] = field(default_factory=dict)


@dataclass
class BuildLine:
    outlet: str
    slot: str
    outcome: str
    duration: float | None
    overrun: bool
    path: str | None


class Scheduler:
    """Plans and performs renders, program builds and deliveries for one database."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # -- planning ------------------------------------------------------------------------

    def build_time_passed(self, day: date, build_time: str | None = None) -> bool:
        tz = self.ctx.settings.tz
        at = parse_hhmm(build_time or self.ctx.settings.build_time)
        return self.ctx.now() >= at_local(day, at, tz)

    def built_ahead(self, session: Session, today: date) -> set[int]:
        """Active outlets whose township's build time has passed today (each township may
        set its own; see :mod:`cms.tree`)."""
        values = tree.Values(session, [tree.BUILD_TIME])
        default = self.ctx.settings.build_time
        passed: dict[str, bool] = {}
        ready: set[int] = set()
        rows = session.execute(
            select(Outlet.id, Area.path).join(Area, Area.id == Outlet.area_id).where(Outlet.active)
        )
        for outlet_id, path in rows:
            at = str(values.at_path(tree.BUILD_TIME, path, default))
            if at not in passed:
                passed[at] = self.build_time_passed(today, at)
            if passed[at]:
                ready.add(outlet_id)
        return ready

    def plan(self) -> PassReport:
        """Queue whatever differs from what should be.

        What should be is worked out in a read transaction: that is most of a pass, it runs
        every tick, and it must not hold SQLite's one writer lock while web requests wait.
        The differences are written in one short transaction, each change guarded, so one
        seen in the older snapshot never undoes a newer one (and what it missed, the next
        pass finds).
        """
        report = PassReport()
        now, tz = self.ctx.now(), self.ctx.settings.tz
        today = local_day(now, tz)
        mode = self.ctx.settings.tts_engine
        survey = unit_of_work(
            self.ctx.sessions, partial(self._survey, today=today, now=now), write=False
        )

        def work(session: Session) -> None:
            report.planned_clips = renders.apply_clip_changes(session, survey.clips)
            report.planned_programs = 0  # counted afresh if this runs again as a write
            for day, create in survey.days:
                plan = programs.plan_day(
                    session,
                    day,
                    now,
                    tz,
                    create=create,
                    engine_mode=mode,
                    survey=survey.inputs[day],
                )
                report.planned_programs += plan.queued + plan.created
            created = deliveries.add_deliveries(session, survey.deliveries)
            cancelled = deliveries.cancel_stale(session) + deliveries.cancel_ended(session, now, tz)
            report.planned_deliveries, report.cancelled_deliveries = created, cancelled

        # Most passes find nothing to change: those never take the write lock.
        unit_of_work(self.ctx.sessions, work, write=WHEN_NEEDED)
        return report

    def _survey(self, session: Session, today: date, now: datetime) -> _Survey:
        """The planning pass's reads: every clip's inputs, every slot's, the missing posts."""
        mode = self.ctx.settings.tts_engine
        survey = _Survey(
            clips=renders.clip_changes(session, today, mode),
            deliveries=deliveries.missing_deliveries(session, today, now, self.ctx.settings.tz),
        )
        days = set(session.scalars(select(Program.day).where(Program.day >= today).distinct()))
        # Today's programs are always due: normally yesterday's build made them, but a
        # fresh install or a PC that was off must not wait for today's build time.
        # Tomorrow's a day early, so that operators can fetch them the evening before
        # (USB sticks, boxes that download overnight): for each outlet once its
        # township's build time has passed.
        ahead = self.built_ahead(session, today)
        build = {today}
        if ahead:
            build |= {today + timedelta(days=n) for n in range(1, BUILD_AHEAD_DAYS + 1)}
        outlets = programs.active_outlets(session)
        for day in sorted(days | build):
            survey.days.append((day, True if day == today else ahead))
            survey.inputs[day] = programs.day_inputs(session, day, mode, outlets)
        return survey

    # -- work ----------------------------------------------------------------------------

    def render_due(self, report: PassReport | None = None, budget_s: float = 60.0) -> int:
        """Render ready clips until none is left or ``budget_s`` has passed (none while the disk
        is short of space: they wait)."""
        if diskspace.hold(self.ctx, Clip):
            return 0
        done = 0
        deadline = _time.monotonic() + budget_s
        tried: set[int] = set()
        out_of_space = False
        while _time.monotonic() < deadline and not out_of_space:
            ids = unit_of_work(
                self.ctx.sessions,
                lambda s: renders.due_clip_ids(s, self.ctx.now(), 20),
                write=False,
            )
            ids = [i for i in ids if i not in tried]
            if not ids:
                break
            for clip_id in ids:
                tried.add(clip_id)
                outcome = renders.render_one(self.ctx, clip_id)
                if report is not None:
                    report.count("clip", outcome)
                done += 1
                # Out of space: the rest wait too (the next pass records it for all at once).
                out_of_space = outcome == diskspace.NO_SPACE
                if _time.monotonic() >= deadline or out_of_space:
                    break
        return done

    def build_due(self, report: PassReport | None = None, partial: bool = False) -> int:
        """Build the due programs (none while the disk is short of space: they wait)."""
        if diskspace.hold(self.ctx, Program):
            return 0
        ids = unit_of_work(
            self.ctx.sessions, lambda s: programs.due_program_ids(s, self.ctx.now()), write=False
        )
        for program_id in ids:
            outcome = programs.build_one(self.ctx, program_id, partial=partial)
            if report is not None:
                report.count("program", outcome)
            if outcome == diskspace.NO_SPACE:
                # The rest wait as well; the next pass records it for all of them at once.
                break
        return len(ids)

    def dispatch_due(
        self, report: PassReport | None = None, workers: int = DISPATCH_WORKERS
    ) -> int:
        """Send due deliveries; chats in parallel (a channel may block on rate limits), each
        chat's posts in order, the chats taken in turns (see :func:`interleave`)."""
        ids = unit_of_work(
            self.ctx.sessions,
            lambda s: deliveries.due_delivery_ids(s, self.ctx.now()),
            write=False,
        )
        if not ids:
            return 0
        by_chat = unit_of_work(self.ctx.sessions, lambda s: _group_by_chat(s, ids), write=False)

        results: list[list[str]]
        if workers <= 1 or len(by_chat) == 1:
            results = [
                [deliveries.send_one(self.ctx, delivery_id) for delivery_id in group]
                for group in by_chat
            ]
        else:
            results = interleave(
                by_chat, lambda delivery_id: deliveries.send_one(self.ctx, delivery_id), workers
            )
        if report is not None:
            for outcomes in results:
                for outcome in outcomes:
                    report.count("delivery", outcome)
        return len(ids)

    def reconcile(self, day: date | None = None) -> reconcile.Gaps:
        now, tz = self.ctx.now(), self.ctx.settings.tz
        target = day or local_day(now, tz)
        return unit_of_work(
            self.ctx.sessions, lambda s: reconcile.reconcile_day(s, target, now, tz)
        )

    def escalate(self) -> int:
        """Alert officers to built programs that operators have not confirmed in time."""
        from cms.services.operators import escalate_unconfirmed

        now = self.ctx.now()
        return unit_of_work(
            self.ctx.sessions, lambda s: len(escalate_unconfirmed(s, now, self.ctx.settings))
        )

    def notify(self) -> int:
        """Send new alerts to the officers' linked chats."""
        from cms.jobs.notify import notify_alerts

        return notify_alerts(self.ctx)

    def staff_due(self, report: PassReport | None = None) -> int:
        """Tell the townships' staff channels what waits for them (cms.services.staff)."""
        from cms.jobs import staff

        return staff.tick(self.ctx, report)

    def run_once(self) -> PassReport:
        """One full pass: plan, render, plan again (new clips change programs), build, send."""
        report = self.plan()
        self.render_due(report)
        again = self.plan()
        report.planned_programs += again.planned_programs
        self.build_due(report)
        self.dispatch_due(report)
        self.publish_due(report)
        return report

    def publish_due(self, report: PassReport | None = None) -> int:
        """Official Account drafts for new approvals, and the publish requests officers made."""
        return articles.work_due(self.ctx, report)

    def release_orphans(self) -> int:
        """On taking the lease: hand back work claimed by scheduler processes that died."""

        def work(session: Session) -> int:
            n = 0
            for model, running, ready in (
                (Clip, JobState.RUNNING, JobState.PENDING),
                (Program, JobState.RUNNING, JobState.PENDING),
                (Delivery, DeliveryState.SENDING, DeliveryState.PENDING),
                (BreakIn, JobState.RUNNING, JobState.PENDING),
            ):
                n += queue.release_orphans(
                    session, model, running=running, ready=ready, worker=self.ctx.worker
                )
            return n

        count = unit_of_work(self.ctx.sessions, work)
        if count:
            log.info("resumed %d unfinished job(s) left by an earlier process", count)
        return count

    # -- the build-day command -----------------------------------------------------------

    def prepare_day(self, day: date) -> list[int]:
        """Create ``day``'s program rows and render every clip they need; returns program ids."""
        now, tz = self.ctx.now(), self.ctx.settings.tz

        def plan(session: Session) -> list[int]:
            renders.plan_clips(session, min(day, local_day(now, tz)), self.ctx.settings.tts_engine)
            programs.plan_day(
                session,
                day,
                now,
                tz,
                create=True,
                explicit=True,
                engine_mode=self.ctx.settings.tts_engine,
            )
            return list(
                session.scalars(
                    select(Program.id)
                    .join(Slot, Slot.id == Program.slot_id)
                    .join(Outlet, Outlet.id == Program.outlet_id)
                    .where(Program.day == day, Outlet.active)
                    .order_by(Outlet.id, Slot.at)
                )
            )

        ids = unit_of_work(self.ctx.sessions, plan)
        self.render_due(budget_s=3600)
        return ids

    def build_listed(self, ids: list[int]) -> Iterator[BuildLine]:
        """Build each program in ``ids`` now (an unchanged one is a quick no-op).

        Programs already built from the inputs they would be built from now (same input
        hash, their file, manifest and clips on disk) are reported unchanged from one read
        transaction, without claiming and loading each one: a county's unchanged day is
        hundreds of programs.
        """
        current = unit_of_work(
            self.ctx.sessions, partial(_up_to_date, ctx=self.ctx, ids=ids), write=False
        )
        for program_id in ids:
            if program_id in current:
                yield current[program_id]
                continue
            unit_of_work(self.ctx.sessions, partial(_requeue, program_id=program_id))
            outcome = programs.build_one(self.ctx, program_id, partial=True)
            yield unit_of_work(
                self.ctx.sessions, partial(_line, program_id=program_id, outcome=outcome)
            )

    def build_day(self, day: date) -> list[BuildLine]:
        """Build (or bring up to date) every outlet's programs for ``day``, synchronously."""
        return list(self.build_listed(self.prepare_day(day)))

    # -- status --------------------------------------------------------------------------

    def queue_lengths(self) -> dict[str, dict[str, int]]:
        return unit_of_work(self.ctx.sessions, queue.queue_lengths, write=False)


def interleave(
    groups: list[list[int]], send: Callable[[int], str], workers: int
) -> list[list[str]]:
    """``send`` every id of every group on ``workers`` threads: one group's ids one after the
    other, in order, never two of a group at once; the groups taken in turns, one id each.

    Taking turns (rather than one worker sending a whole group) starts every chat's first
    post early, so every robot's per-minute window starts early too: when a robot's limit
    makes a later post wait, the others' windows have run as long and their waits end one
    after the other, instead of each chat starting its window only when a worker is free.
    A chat that waits holds one worker for one post, not for its whole backlog.

    Returns the outcomes per group; the first exception ``send`` raised is raised again
    after the others have finished (that group's later ids are not sent).
    """
    results: list[list[str]] = [[] for _ in groups]
    ready = deque(i for i, group in enumerate(groups) if group)
    cond = threading.Condition()
    busy = 0
    errors: list[BaseException] = []

    def work() -> None:
        nonlocal busy
        while True:
            with cond:
                while not ready and busy:
                    cond.wait()
                if not ready:
                    return
                index = ready.popleft()
                busy += 1
            delivery_id = groups[index][len(results[index])]
            outcome: str | None = None
            try:
                outcome = send(delivery_id)
            except BaseException as exc:  # noqa: BLE001 - raised again below
                errors.append(exc)
            with cond:
                busy -= 1
                if outcome is not None:
                    results[index].append(outcome)
                    if len(results[index]) < len(groups[index]):
                        ready.append(index)
                cond.notify_all()

    threads = [
        threading.Thread(target=work, name=f"dispatch-{n}", daemon=True)
        for n in range(min(workers, len(ready)))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return results


def _group_by_chat(session: Session, ids: list[int]) -> list[list[int]]:
    rows = session.execute(
        select(Delivery.id, Delivery.chat_group_id).where(Delivery.id.in_(ids))
    ).all()
    chat_of = dict(rows)
    groups: dict[int, list[int]] = {}
    for delivery_id in ids:  # keeps the due order within each chat
        groups.setdefault(chat_of.get(delivery_id, 0), []).append(delivery_id)
    return list(groups.values())


def _requeue(session: Session, program_id: int) -> None:
    program = session.get(Program, program_id)
    if program is not None and program.state in (
        JobState.DONE,
        JobState.FAILED,
        JobState.CANCELLED,
    ):
        queue.transition(
            session,
            Program,
            program_id,
            program.state,
            JobState.PENDING,
            next_attempt_at=None,
            attempts=0,
        )
    elif program is not None and program.state is JobState.PENDING:
        program.next_attempt_at = None


def _up_to_date(session: Session, ctx: Context, ids: list[int]) -> dict[int, BuildLine]:
    """Lines for the built programs among ``ids`` whose inputs have not changed since."""
    from audio.program import manifest_path

    found: dict[int, BuildLine] = {}
    built = list(
        session.scalars(select(Program).where(Program.id.in_(ids), Program.state == JobState.DONE))
    )
    for day in {p.day for p in built}:
        going = announcements.going_out_on(session, day)
        clips = renders.clips_ready(session, (a.approved.id for a in going))
        of_day = [p for p in built if p.day == day]
        reached = announcements.reaching_outlets(
            session, day, {p.outlet for p in of_day}, going=going
        )
        for program in of_day:
            slotted = in_slot(reached[program.outlet_id], day, program.slot.at)
            inputs = programs.inputs_for(
                session,
                slotted,
                clips,
                program.outlet,
                ctx.settings.tts_engine,
                area=program.outlet.area,
            )
            if program.input_hash != inputs.hash(programs.program_key(program)):
                continue
            if inputs.ready:
                path = programs.program_file(ctx, day, program.outlet_id, program.slot.at)
                files = [
                    path,
                    manifest_path(path),
                    *(Path(e.clip_path) for e in inputs.ready if e.clip_path),
                ]
                if program.path != str(path) or not all(f.is_file() for f in files):
                    continue
                outcome = "unchanged"
            elif program.path is None:
                outcome = "empty"
            else:
                continue
            found[program.id] = _line_of(program, outcome)
    return found


def _line(session: Session, program_id: int, outcome: str) -> BuildLine:
    program = session.get(Program, program_id)
    assert program is not None
    return _line_of(program, outcome)


def _line_of(program: Program, outcome: str) -> BuildLine:
    return BuildLine(
        outlet=program.outlet.name,
        slot=program.slot.label,
        outcome=outcome,
        duration=program.duration,
        overrun=program.overrun,
        path=program.path,
    )
