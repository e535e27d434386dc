"""Programs: each outlet's audio for each slot of a day, kept in step with what goes out.

At the build time (``DALABA_BUILD_TIME``, 04:00 by default) the day's program rows are
created; from then on every tick compares each program's inputs (the announcements that
reach the outlet, their clips and repeats) with what it was built from, and rebuilds it
when they differ, until its slot begins. An approval, a withdrawal, a lexicon change or a
changed slot therefore reaches every future program of the day within a tick.

An outlet with its own voice or engine (``outlet.voice``, ``outlet.tts_engine``) hears every
synthesised announcement spoken that way: the build renders those entries itself, through
the renderer's content-addressed cache (so each outlet variant is synthesised once), and
their inputs (voice, engine, text, lexicon) are part of the program's hash. A human
recording plays as recorded everywhere; a recording-only outlet (``recording``) skips the
announcements that have none, saying so in the manifest.

A program that was not built by its slot is still built within :data:`GRACE` after the
slot began (the operator may play it late); after that it is marked missed and an alert
is raised. A slot that begins before an urgent announcement's clip is ready raises an
alert to the operators at once (they read it out by hand or play the next slot).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload

from cms import disk, queue
from cms.clock import at_local
from cms.db import WHEN_NEEDED
from cms.jobs.context import Context
from cms.jobs.lifecycle import Failure, Kind, Later, Outcome, finish, run_job
from cms.jobs.renders import clips_ready
from cms.models import (
    Announcement,
    Area,
    Clip,
    JobState,
    Outlet,
    Priority,
    Program,
    Slot,
)
from cms.services import breakin, days
from cms.services.airtime import in_slot
from cms.services.alerts import raise_alert, raise_program_alert
from cms.services.announcements import (
    for_part,
    going_out_on,
    narrower_targets,
    reaching_outlets,
)
from cms.services.errors import N_, Message
from cms.services.programs import breaking_first, outlet_announcements

log = logging.getLogger(__name__)

GRACE = days.BUILD_GRACE
"""How long after its slot began a program that was not built is still built."""
PARTIAL_MARGIN = timedelta(minutes=3)
"""Closer than this to the slot, a program is built with the clips that are ready."""
URGENT_LEAD = timedelta(minutes=5)
"""An urgent announcement whose clip is not ready this close to a slot raises an alert."""
WAIT_RETRY = timedelta(seconds=15)
BUILD_HOLD = timedelta(minutes=10)
HASH_VERSION = 1


def slot_start(day: date, at: time, tz: ZoneInfo) -> datetime:
    return at_local(day, at, tz)


@dataclass
class Entry:
    """One announcement as it stands for one program."""

    announcement_id: int
    revision_id: int
    title: str
    repeats: int
    urgent: bool
    clip_id: int | None
    clip_key: str | None
    clip_path: str | None
    status: str  # ready | wait | skip
    reason: str | None = None
    synth: dict[str, Any] | None = None
    """For an outlet with its own voice or engine: what the build speaks instead of the clip
    (text, voice, rate, engine, lexicon pairs)."""


@dataclass
class Inputs:
    entries: list[Entry] = field(default_factory=list)

    @property
    def waiting(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "wait"]

    @property
    def ready(self) -> list[Entry]:
        return [e for e in self.entries if e.status == "ready"]

    def hash(self, program_key: tuple[object, ...]) -> str:
        payload = {
            "v": HASH_VERSION,
            "program": list(program_key),
            "entries": [
                [e.revision_id, e.clip_key, e.status, e.repeats, e.title] for e in self.entries
            ],
        }
        return hashlib.sha256(json.dumps(payload, ensure_ascii=False).encode()).hexdigest()


def inputs_for(
    session: Session,
    anns: list[Announcement],
    clips: dict[int, Clip] | None = None,
    outlet: Outlet | None = None,
    engine_mode: str | None = None,
    *,
    area: Area,
) -> Inputs:
    """What a program made of ``anns`` consists of now (``clips`` may be prefetched).

    With ``outlet``, its own voice and engine apply (see the module's docstring);
    ``engine_mode`` is the install's mode, used where no township chose its own.
    ``area`` is the outlet's: a notice aimed at part of it is titled with that part
    ("（三组）"), in the program's items and on the run sheet.
    """
    revs = [a.approved_revision for a in anns if a.approved_revision is not None]
    if clips is None:
        clips = clips_ready(session, (r.id for r in revs))
    inputs = Inputs()
    own = outlet is not None and bool(outlet.voice or outlet.tts_engine)
    for rev in revs:
        clip: Clip | None = clips.get(rev.id)
        synth = None
        if clip is None or clip.state in (JobState.PENDING, JobState.RUNNING):
            status, reason = "wait", None
        elif clip.state is JobState.DONE and clip.path:
            status, reason = "ready", None
        else:
            status, reason = "skip", (clip.last_error or Message(N_("音频未能生成")).dumps())
        if own and outlet is not None:
            status, reason, synth = _outlet_variant(
                session, outlet, rev, clip, status, reason, engine_mode
            )
        key = clip.cache_key if clip else None
        if synth is not None:
            canonical = json.dumps(synth, ensure_ascii=False, sort_keys=True)
            key = hashlib.sha256(canonical.encode()).hexdigest()
        inputs.entries.append(
            Entry(
                announcement_id=rev.announcement_id,
                revision_id=rev.id,
                title=for_part(rev.title, narrower_targets(rev, area)),
                repeats=rev.repeats,
                urgent=rev.priority is Priority.URGENT,
                clip_id=clip.id if clip else None,
                clip_key=key,
                clip_path=clip.path if clip and synth is None else None,
                status=status,
                reason=reason,
                synth=synth,
            )
        )
    return inputs


def _outlet_variant(
    session: Session,
    outlet: Outlet,
    rev: Any,
    clip: Clip | None,
    status: str,
    reason: str | None,
    engine_mode: str | None,
) -> tuple[str, str | None, dict[str, Any] | None]:
    """An entry's status at an outlet with its own voice or engine, and what to speak."""
    from cms import tree
    from cms.jobs.renders import active_recording, relevant_entries
    from cms.services.outlets import RECORDING_ONLY

    recording = active_recording(session, rev.announcement_id)
    if recording is not None:
        return status, reason, None  # a human recording plays as recorded everywhere
    if outlet.tts_engine == RECORDING_ONLY:
        return "skip", Message(N_("此广播点只播放录音，这条公告没有录音")).dumps(), None
    area = tree.revision_area(session, rev)
    engine = outlet.tts_engine or tree.engine_mode(session, area, engine_mode or "auto")
    synth = {
        "text": rev.speech,
        "voice": outlet.voice or rev.voice,
        "rate": rev.rate,
        "engine": engine,
        "lexicon": relevant_entries(rev.speech, tree.lexicon_pairs(session, area)),
    }
    return "ready", None, synth


def program_key(program: Program) -> tuple[object, ...]:
    """What identifies a program besides its content: a changed slot time or length rebuilds it."""
    slot = program.slot
    return (program.outlet_id, program.slot_id, program.day.isoformat(), slot.label, slot.minutes)


@dataclass
class DayPlan:
    created: int = 0
    queued: int = 0
    missed: int = 0
    alerts: int = 0


def plan_day(
    session: Session,
    day: date,
    now: datetime,
    tz: ZoneInfo,
    *,
    create: bool | Collection[int],
    explicit: bool = False,
    engine_mode: str | None = None,
    survey: dict[tuple[int, int], Inputs] | None = None,
) -> DayPlan:
    """Bring the program rows of ``day`` in line with what should play.

    ``create`` makes missing rows (at and after the build time, or for `build-day`): for
    every outlet, or only for the outlets whose ids it holds (each township has its own
    build time); ``explicit`` (the `build-day` command) rebuilds regardless of slot times.
    ``survey``: what each slot is made of, worked out beforehand by :func:`day_inputs` (the
    scheduler does that in a read transaction); a slot it lacks waits for the next pass.
    """
    report = DayPlan()
    outlets = active_outlets(session)
    existing = {
        (p.outlet_id, p.slot_id): p
        for p in session.scalars(select(Program).where(Program.day == day))
    }
    if survey is None:
        survey = day_inputs(session, day, engine_mode, outlets)
    for outlet in outlets:
        for slot in outlet.slots:
            inputs = survey.get((outlet.id, slot.id))
            if inputs is None:
                continue
            program = existing.pop((outlet.id, slot.id), None)
            times = days.SlotTimes.of(day, slot.at, slot.minutes, tz)
            start = times.start
            if not days.applies(times, outlet.created_at):
                # The slot ended before the outlet existed: nothing to build, nothing missed.
                if program is not None and program.state in (JobState.PENDING, JobState.FAILED):
                    queue.transition(
                        session, Program, program.id, program.state, JobState.CANCELLED
                    )
                continue
            if program is None:
                if not (create if isinstance(create, bool) else outlet.id in create):
                    continue
                program = Program(outlet_id=outlet.id, day=day, slot_id=slot.id)
                session.add(program)
                session.flush()
                report.created += 1
            wanted = inputs.hash(program_key(program))
            if not explicit and now >= start:
                # ``missed`` is a fact about the slot and stays set: a retried missed program
                # is built (late) and not marked missed a second time.
                if (
                    program.state is not JobState.DONE
                    and not program.missed
                    and now > times.deadline
                ):
                    _mark_missed(session, program)
                    report.missed += 1
                    report.alerts += 1
                continue
            if (
                program.state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)
                and program.input_hash != wanted
                and queue.transition(
                    session,
                    Program,
                    program.id,
                    program.state,
                    JobState.PENDING,
                    attempts=0,
                    next_attempt_at=None,
                    last_error=None,
                )
            ):
                report.queued += 1
            if not explicit and start - now <= URGENT_LEAD:
                late = [e for e in inputs.entries if e.urgent and e.status != "ready"]
                if late and program.state is not JobState.RUNNING:
                    titles = "、".join(f"《{e.title}》" for e in late)
                    if raise_alert(
                        session,
                        "urgent_late",
                        Message(
                            N_(
                                "紧急公告{titles}来不及合成进 {outlet} {slot} 的节目，"
                                "请广播员人工播报，或在下一时段播出"
                            ),
                            {"titles": titles, "outlet": outlet.name, "slot": slot.label},
                        ),
                        day=day,
                        object_type="program",
                        object_id=program.id,
                    ):
                        report.alerts += 1
    # Rows of outlets switched off or slots removed: nothing to build any more.
    for program in existing.values():
        if program.state in (JobState.PENDING, JobState.FAILED):
            queue.transition(
                session,
                Program,
                program.id,
                program.state,
                JobState.CANCELLED,
                last_error=Message(N_("广播点已停用或时段已删除")).dumps(),
            )
    return report


def active_outlets(session: Session) -> list[Outlet]:
    return list(
        session.scalars(
            select(Outlet)
            .where(Outlet.active)
            .options(selectinload(Outlet.slots))
            .order_by(Outlet.id)
        )
    )


def day_inputs(
    session: Session,
    day: date,
    engine_mode: str | None = None,
    outlets: list[Outlet] | None = None,
) -> dict[tuple[int, int], Inputs]:
    """What every active outlet's slots play on ``day`` now, by (outlet id, slot id).

    Reads only: this is most of a planning pass, and the scheduler works it out before
    taking the write lock.
    """
    if outlets is None:
        outlets = active_outlets(session)
    going = going_out_on(session, day)
    # One query for every clip of the day, not one per outlet and slot: this runs each tick.
    clips = clips_ready(session, (a.approved.id for a in going))
    reached = reaching_outlets(session, day, outlets, going=going)
    front = breakin.front_announcements(session, day)
    return {
        # What plays in this slot: a notice may end early on its last day or keep to parts
        # of the day (cms.services.airtime).
        (outlet.id, slot.id): inputs_for(
            session,
            in_slot(breaking_first(reached[outlet.id], front), day, slot.at),
            clips,
            outlet,
            engine_mode,
            area=outlet.area,
        )
        for outlet in outlets
        for slot in outlet.slots
    }


def _mark_missed(session: Session, program: Program) -> None:
    session.execute(
        update(Program)
        .where(Program.id == program.id, Program.state == program.state)
        .values(
            missed=True,
            state=JobState.FAILED if program.state is not JobState.RUNNING else program.state,
            last_error=program.last_error or Message(N_("播出时间已过，节目未能按时生成")).dumps(),
        )
        .execution_options(synchronize_session=False)
    )
    raise_program_alert(
        session,
        "program_missed",
        N_("{outlet} {day} {slot} 的节目未能按时生成（已错过播出时间）"),
        program,
    )


def due_program_ids(session: Session, now: datetime, limit: int = 200) -> list[int]:
    stmt = (
        select(Program.id)
        .join(Slot, Slot.id == Program.slot_id)
        .where(queue.claimable(Program, JobState.PENDING, now, JobState.RUNNING))
        .order_by(Program.day, Slot.at, Program.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def program_file(ctx: Context, day: date, outlet_id: int, at: time) -> Path:
    """A stable name per outlet, day and slot: operators' links keep working across rebuilds."""
    return ctx.programs_dir / day.isoformat() / f"outlet-{outlet_id}-{at.strftime('%H%M')}.mp3"


@dataclass
class _BuildJob:
    program_id: int
    day: date
    slot_at: time
    slot_minutes: int
    outlet_id: int
    outlet_name: str
    inputs: Inputs
    wanted: str
    start: datetime
    attempts: int


def _load(session: Session, ctx: Context, program_id: int) -> _BuildJob | None:
    program = session.get(Program, program_id)
    if program is None:
        return None
    outlet, slot = program.outlet, program.slot
    inputs = inputs_for(
        session,
        outlet_announcements(session, outlet, program.day, slot.at),
        outlet=outlet,
        engine_mode=ctx.settings.tts_engine,
        area=outlet.area,
    )
    return _BuildJob(
        program_id=program.id,
        day=program.day,
        slot_at=slot.at,
        slot_minutes=slot.minutes,
        outlet_id=outlet.id,
        outlet_name=outlet.name,
        inputs=inputs,
        wanted=inputs.hash(program_key(program)),
        start=slot_start(program.day, slot.at, ctx.settings.tz),
        attempts=program.attempts,
    )


def _build(ctx: Context, job: _BuildJob) -> tuple[dict[str, Any], str]:
    """Clips still rendering and the slot not near: look again soon, using no attempt."""
    now = ctx.now()
    if job.inputs.waiting and job.start - now > PARTIAL_MARGIN:
        raise Later(now + WAIT_RETRY)
    return _assemble(ctx, job)


def _built(
    session: Session, ctx: Context, job: _BuildJob, built: tuple[dict[str, Any], str]
) -> Outcome:
    values, outcome = built
    moved = finish(
        session,
        ctx,
        BUILD,
        job.program_id,
        JobState.DONE,
        input_hash=job.wanted,
        built_at=ctx.now(),
        last_error=None,
        next_attempt_at=None,
        **values,
    )
    return Outcome(outcome) if moved else Outcome.SKIPPED


def _classify(job: _BuildJob, exc: BaseException) -> Failure:
    from audio.errors import AudioError

    if isinstance(exc, AudioError):
        log.warning("program %s: build failed: %s", job.program_id, exc)
    else:
        log.exception("program %s: unexpected build error", job.program_id, exc_info=exc)

    def alert(session: Session, final: bool) -> dict[str, Any]:
        if final:
            raise_alert(
                session,
                "program_failed",
                Message(
                    N_("{outlet} {day} {slot} 的节目生成失败：{error}"),
                    {
                        "outlet": job.outlet_name,
                        "day": job.day.isoformat(),
                        "slot": f"{job.slot_at:%H:%M}",
                        "error": queue.error_message(exc),
                    },
                ),
                day=job.day,
                object_type="program",
                object_id=job.program_id,
            )
        # A program that failed for good keeps the hash it failed on (it is not tried again
        # until its inputs change); one that will be retried forgets it.
        return {"input_hash": job.wanted if final else None}

    return Failure(then=alert)


BUILD: Kind[_BuildJob, tuple[dict[str, Any], str]] = Kind(
    name="program",
    model=Program,
    hold=BUILD_HOLD,
    load=_load,
    work=_build,
    record=_built,
    classify=_classify,
    disk=True,
    load_writes=WHEN_NEEDED,
)
BUILD_PARTIAL = replace(BUILD, work=lambda ctx, job: _assemble(ctx, job))
"""A build that does not wait for clips still rendering (the slot is near, or asked for)."""


def build_one(ctx: Context, program_id: int, *, partial: bool = False) -> Outcome:
    """Claim and build one program; returns built, unchanged, empty, waiting, retry, failed,
    no_space or skipped.

    Waits (without using up an attempt) while clips are still rendering, unless the slot
    is near or ``partial`` is set; then it builds with the clips that are ready and lists
    the others in the manifest. Waits the same way while the disk is short of space.
    """
    return run_job(ctx, BUILD_PARTIAL if partial else BUILD, program_id)


def _speak(ctx: Context, synth: dict[str, Any]) -> tuple[Any, str | None]:
    """Render an outlet's own variant of an entry (cached); (clip, None) or (None, reason)."""
    from audio.errors import AudioError
    from audio.master import Profile
    from audio.text import Lexicon

    try:
        clip = ctx.renderer_for(synth["engine"]).render(
            synth["text"],
            voice=synth["voice"],
            rate=synth["rate"],
            profile=Profile.LOUDSPEAKER,
            lexicon=Lexicon(tuple((w, s) for w, s in synth["lexicon"])),
        )
    except AudioError as exc:
        if disk.is_disk_full(exc):
            raise
        from cms.services.errors import audio_message

        return None, audio_message(exc).dumps()
    return clip, None


def _assemble(ctx: Context, job: _BuildJob) -> tuple[dict[str, Any], str]:
    """Join the ready clips into the program file; returns the row's new values."""
    from audio.program import ProgramItem, build_program, manifest_path
    from audio.render import DEFAULT_CLOSING

    renderer = ctx.renderer
    items = []
    skipped = [
        {
            "announcement_id": e.announcement_id,
            "revision_id": e.revision_id,
            "title": e.title,
            "reason": e.reason if e.status == "skip" else Message(N_("音频尚未生成")).dumps(),
        }
        for e in job.inputs.entries
        if e.status != "ready"
    ]
    for entry in job.inputs.ready:
        if entry.synth is not None:
            clip, problem = _speak(ctx, entry.synth)
            if clip is None:
                skipped.append(
                    {
                        "announcement_id": entry.announcement_id,
                        "revision_id": entry.revision_id,
                        "title": entry.title,
                        "reason": problem,
                    }
                )
                continue
        else:
            clip = renderer.get_clip(Path(entry.clip_path or "").stem)
        if clip is None:
            skipped.append(
                {
                    "announcement_id": entry.announcement_id,
                    "revision_id": entry.revision_id,
                    "title": entry.title,
                    "reason": Message(N_("音频文件缺失，已重新排队生成")).dumps(),
                }
            )
            continue
        items.append(
            ProgramItem(
                clip=clip,
                revision=str(entry.revision_id),
                title=entry.title,
                repeats=entry.repeats,
            )
        )
    path = program_file(ctx, job.day, job.outlet_id, job.slot_at)
    base = {
        "outlet": job.outlet_name,
        "outlet_id": job.outlet_id,
        "day": job.day.isoformat(),
        "slot": job.slot_at.strftime("%H:%M"),
        "slot_minutes": job.slot_minutes,
        "announcements": [
            {
                "announcement_id": e.announcement_id,
                "revision_id": e.revision_id,
                "title": e.title,
                "repeats": e.repeats,
                "urgent": e.urgent,
            }
            for e in job.inputs.ready
        ],
        "skipped": skipped,
    }
    if not items:
        # Nothing to play: no file, so an operator link never serves a stale program.
        path.unlink(missing_ok=True)
        manifest_path(path).unlink(missing_ok=True)
        manifest = {**base, "items": [], "total_duration": 0.0}
        return (
            {"path": None, "duration": 0.0, "manifest": manifest, "overrun": False},
            "empty",
        )
    result = build_program(
        items,
        path,
        title=f"{job.outlet_name} {job.day.isoformat()} {job.slot_at:%H:%M}",
        date=job.day.isoformat(),
        chime=renderer.chime(),
        closing=renderer.render(DEFAULT_CLOSING),
    )
    manifest = {**result.manifest, **base}
    overrun = result.duration > job.slot_minutes * 60
    return (
        {
            "path": str(result.path),
            "duration": result.duration,
            "manifest": manifest,
            "overrun": overrun,
        },
        "built" if result.rebuilt else "unchanged",
    )
