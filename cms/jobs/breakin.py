"""Break-ins built at once: one insert, shared by every outlet it reaches.

A pending break-in (see :mod:`cms.services.breakin`) is claimed like any queued row. Its
notice's loudspeaker clip is usually rendered already (notices in review are rendered so
the reviewer can listen); if not, it is rendered here, first in line. The insert is the
chime and the notice read twice, joined byte by byte (:func:`audio.program.build_program`)
once; each reached outlet gets a hard link to it (a copy where the file system cannot
link), so ``N`` outlets cost ``N`` directory entries, not ``N`` encodes. Then the operators
who linked a chat account hear about it, and the notice's pending chat posts become due.

A restart resumes from the rows: an insert already built is found unchanged by its hash,
an outlet's copy already made is made again harmlessly, a copy row already written stays.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms import queue
from cms.channels import ChannelError, Notice
from cms.db import WHEN_NEEDED, rowcount, unit_of_work
from cms.jobs import renders
from cms.jobs.context import Context
from cms.jobs.lifecycle import Cancelled, Failure, Kind, Later, Outcome, finish, run_job
from cms.models import (
    BreakIn,
    BreakInOutlet,
    ChatAccount,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    User,
    outlet_operator,
)
from cms.services import breakin as svc
from cms.services.errors import N_, Message, WorkflowError

log = logging.getLogger(__name__)

HOLD = timedelta(minutes=5)
WAIT = timedelta(seconds=1)
"""How soon a break-in whose clip another worker is rendering looks again."""
TITLE = "立即插播"


def breakins_dir(ctx: Context) -> Path:
    return ctx.settings.audio_dir / "breakins"


def insert_file(ctx: Context, row_id: int, day: str) -> Path:
    return breakins_dir(ctx) / day / f"breakin-{row_id}.mp3"


def outlet_file(ctx: Context, row_id: int, day: str, outlet_id: int) -> Path:
    return breakins_dir(ctx) / day / f"breakin-{row_id}" / f"outlet-{outlet_id}.mp3"


def due_ids(session: Session, ctx: Context) -> list[int]:
    now = ctx.now()
    return list(
        session.scalars(
            select(BreakIn.id)
            .where(queue.claimable(BreakIn, JobState.PENDING, now, JobState.RUNNING))
            .order_by(BreakIn.id)
        )
    )


def run_due(ctx: Context) -> int:
    """Build every break-in that is due; returns how many were built."""
    built = 0
    for row_id in unit_of_work(ctx.sessions, partial(due_ids, ctx=ctx), write=False):
        built += build_one(ctx, row_id) == "built"
    return built


@dataclass(frozen=True)
class _Job:
    row_id: int
    day: str
    revision_id: int
    title: str
    ended: bool
    clip_id: int | None
    clip_state: JobState | None
    clip_path: str | None
    clip_error: str | None
    outlet_ids: tuple[int, ...]


def _load(session: Session, ctx: Context, row_id: int) -> _Job | None:
    row = session.get(BreakIn, row_id)
    if row is None:
        return None
    clip = session.scalar(
        select(Clip).where(
            Clip.revision_id == row.revision_id, Clip.profile == ClipProfile.LOUDSPEAKER
        )
    )
    if clip is None and row.ended_at is None:
        # Not planned yet (approved a moment ago, before the next planning pass).
        renders.plan_clips(session, ctx.today(), ctx.settings.tts_engine)
        clip = session.scalar(
            select(Clip).where(
                Clip.revision_id == row.revision_id, Clip.profile == ClipProfile.LOUDSPEAKER
            )
        )
    return _Job(
        row_id=row.id,
        day=row.day.isoformat(),
        revision_id=row.revision_id,
        title=row.revision.title,
        ended=row.ended_at is not None,
        clip_id=clip.id if clip else None,
        clip_state=clip.state if clip else None,
        clip_path=clip.path if clip else None,
        clip_error=clip.last_error if clip else None,
        outlet_ids=tuple(o.id for o in svc.reached_outlets(session, row.revision)),
    )


def _build(ctx: Context, job: _Job) -> tuple[Path, float, dict[int, Path]]:
    """The insert and each outlet's copy of it (rendering the notice's clip first if need be)."""
    if job.ended or job.clip_id is None:
        raise Cancelled
    if job.clip_state is JobState.PENDING:
        renders.render_one(ctx, job.clip_id)
        job = (
            unit_of_work(ctx.sessions, lambda s: _load(s, ctx, job.row_id), write=WHEN_NEEDED)
            or job
        )
    if job.clip_state is not JobState.DONE or not job.clip_path:
        if job.clip_state is JobState.FAILED:
            raise WorkflowError(N_("音频未能生成"))
        # Another worker renders it right now: look again in a moment, no attempt used.
        raise Later(ctx.now() + WAIT)
    path, duration = _build_insert(ctx, job)
    return path, duration, _link_copies(ctx, job, path)


def _built(
    session: Session, ctx: Context, job: _Job, built: tuple[Path, float, dict[int, Path]]
) -> Outcome:
    path, duration, copies = built
    row = session.get(BreakIn, job.row_id)
    if row is None:
        return Outcome.SKIPPED
    ready = ctx.now()
    have = set(
        session.scalars(
            select(BreakInOutlet.outlet_id).where(BreakInOutlet.break_in_id == job.row_id)
        )
    )
    for outlet_id, copy in copies.items():
        if outlet_id not in have:
            session.add(
                BreakInOutlet(
                    break_in_id=job.row_id, outlet_id=outlet_id, path=str(copy), ready_at=ready
                )
            )
    moved = finish(
        session,
        ctx,
        BUILD,
        job.row_id,
        JobState.DONE,
        path=str(path),
        duration=duration,
        outlet_count=len(copies),
        built_at=ready,
        last_error=None,
        next_attempt_at=None,
    )
    # The notice's chat posts that wait for their post time go out now.
    session.execute(
        update(Delivery)
        .where(
            Delivery.revision_id == job.revision_id,
            Delivery.state == DeliveryState.PENDING,
            Delivery.due_at > ready,
        )
        .values(due_at=ready)
        .execution_options(synchronize_session=False)
    )
    return Outcome.BUILT if moved else Outcome.SKIPPED


def _classify(job: _Job, exc: BaseException) -> Failure:
    """A break-in is urgent: it fails at once, and the operators read the notice by hand."""
    from cms.services.alerts import raise_alert

    if not isinstance(exc, WorkflowError):
        log.exception("break-in %s: building the insert failed", job.row_id, exc_info=exc)

    def alert(session: Session, final: bool) -> None:
        raise_alert(
            session,
            "breakin_failed",
            Message(
                N_("紧急插播《{title}》未能生成，请广播员人工播报"),
                {"title": job.title},
            ),
            day=None,
            object_type="break_in",
            object_id=job.row_id,
        )

    return Failure(final=JobState.FAILED, then=alert)


def _notify(ctx: Context, row_id: int, outcome: Outcome) -> None:
    if outcome is Outcome.BUILT:
        notify(ctx, row_id)


BUILD: Kind[_Job, tuple[Path, float, dict[int, Path]]] = Kind(
    name="break-in",
    model=BreakIn,
    hold=HOLD,
    load=_load,
    work=_build,
    record=_built,
    classify=_classify,
    load_writes=WHEN_NEEDED,
    cancelled=JobState.CANCELLED,
    after=_notify,
)


def build_one(ctx: Context, row_id: int) -> Outcome:
    """Claim and build one break-in; returns built, waiting, failed, cancelled or skipped."""
    return run_job(ctx, BUILD, row_id)


def _build_insert(ctx: Context, job: _Job) -> tuple[Path, float]:
    """The shared insert: the chime, then the notice read twice (no closing line)."""
    from audio.program import ProgramItem, build_program

    renderer = ctx.renderer
    clip = renderer.get_clip(Path(job.clip_path or "").stem)
    if clip is None:
        raise FileNotFoundError(job.clip_path)
    result = build_program(
        [ProgramItem(clip=clip, revision=str(job.revision_id), title=job.title,
                     repeats=svc.INSERT_REPEATS)],
        insert_file(ctx, job.row_id, job.day),
        title=f"{TITLE} {job.title}",
        date=job.day,
        chime=renderer.chime(),
        closing=None,
    )  # fmt: skip
    return result.path, result.duration


def _link_copies(ctx: Context, job: _Job, insert: Path) -> dict[int, Path]:
    """Every reached outlet's copy of the insert: a hard link, or a copy if links fail."""
    folder = outlet_file(ctx, job.row_id, job.day, 0).parent
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for outlet_id in job.outlet_ids:
        target = outlet_file(ctx, job.row_id, job.day, outlet_id)
        tmp = target.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(insert, tmp)
        except OSError:
            shutil.copyfile(insert, tmp)
        os.replace(tmp, target)
        copies[outlet_id] = target
    return copies


def notify(ctx: Context, row_id: int) -> int:
    """Tell the reached outlets' operators in their linked chats (once); returns how many."""
    now = ctx.now()

    def recipients(session: Session) -> tuple[str, list[tuple[str, str]]] | None:
        claimed = rowcount(
            session.execute(
                update(BreakIn)
                .where(BreakIn.id == row_id, BreakIn.notified_at.is_(None))
                .values(notified_at=now)
            )
        )
        if not claimed:
            return None
        row = session.get(BreakIn, row_id)
        assert row is not None
        outlet_ids = select(BreakInOutlet.outlet_id).where(BreakInOutlet.break_in_id == row_id)
        users = select(outlet_operator.c.user_id).where(outlet_operator.c.outlet_id.in_(outlet_ids))
        chats = session.execute(
            select(ChatAccount.platform, ChatAccount.external_id)
            .join(User, User.id == ChatAccount.user_id)
            .where(User.active, User.id.in_(users))
        ).all()
        return row.revision.title, [(p, c) for p, c in chats]

    found = unit_of_work(ctx.sessions, recipients)
    if found is None:
        return 0
    title, chats = found
    link = ctx.settings.base_url.rstrip("/") + "/operator/"
    text = Message(
        N_("紧急插播《{title}》已经生成，请立即打开广播页面播放，播完点“已播放”：{link}"),
        {"title": title, "link": link},
    ).render()
    sent = 0
    for platform, chat_id in chats:
        channel = ctx.registry.get(platform)
        if channel is None:
            continue
        try:
            channel.send(
                Notice(delivery_id=0, chat_id=chat_id, title=TITLE, text=text, link=link),
                lambda _ids: None,
            )
            sent += 1
        except ChannelError as exc:
            log.warning("break-in %s not posted to %s:%s: %s", row_id, platform, chat_id, exc)
    return sent
