"""Clips: every revision in review or going out is rendered in the background, once.

A clip row exists per (revision, profile). Its ``cache_key`` hashes everything that shapes
the audio (spoken text, voice, rate, engine mode, the lexicon entries that occur in the
text, an uploaded recording), so adding a lexicon entry re-renders exactly the clips whose
text contains it, and the programs built from them follow.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms import disk, tree
from cms.db import rowcount, unit_of_work
from cms.models import (
    Announcement,
    Clip,
    ClipProfile,
    JobState,
    Priority,
    Recording,
    Revision,
    Status,
)
from cms.scheduler import diskspace, queue
from cms.scheduler.context import Context
from cms.services.announcements import live_filter

log = logging.getLogger(__name__)

RENDER_HOLD = timedelta(minutes=10)
AUDIO_PROFILE = {ClipProfile.LOUDSPEAKER: "loudspeaker", ClipProfile.VOICE: "voice_note"}


def relevant_entries(text: str, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lexicon entries whose written form occurs in ``text`` (the others change nothing)."""
    return [(w, s) for w, s in pairs if w in text]


def active_recording(session: Session, announcement_id: int) -> Recording | None:
    return session.scalar(
        select(Recording)
        .where(Recording.announcement_id == announcement_id, Recording.active)
        .order_by(Recording.created_at.desc(), Recording.id.desc())
    )


def clip_key(
    rev: Revision,
    profile: ClipProfile,
    pairs: Iterable[tuple[str, str]],
    recording: Recording | None,
    engine_mode: str,
) -> str:
    payload: dict[str, object] = {"profile": profile.value}
    if recording is not None:
        payload["recording"] = [recording.id, recording.path]
    else:
        payload.update(
            text=rev.speech,
            voice=rev.voice,
            rate=rev.rate,
            engine=engine_mode,
            lexicon=relevant_entries(rev.speech, pairs),
        )
    canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def profiles_for(rev: Revision) -> list[ClipProfile]:
    wanted = []
    if rev.to_loudspeaker:
        wanted.append(ClipProfile.LOUDSPEAKER)
    if rev.to_chats:
        wanted.append(ClipProfile.VOICE)
    return wanted


def revisions_needing_audio(session: Session, today: date) -> list[Revision]:
    """Revisions in review (so the reviewer can listen) and revisions going out."""
    revs: dict[int, Revision] = {}
    live = session.scalars(
        select(Revision)
        .join(Announcement, Announcement.approved_revision_id == Revision.id)
        .where(live_filter(), Revision.end_date >= today)
    )
    for rev in live:
        revs[rev.id] = rev
    reviewing = session.scalars(
        select(Revision)
        .join(Announcement, Announcement.latest_revision_id == Revision.id)
        .where(Announcement.status == Status.IN_REVIEW, Revision.end_date >= today)
    )
    for rev in reviewing:
        revs[rev.id] = rev
    return list(revs.values())


def plan_clips(session: Session, today: date, engine_mode: str) -> int:
    """Create or invalidate clip rows so every needed clip matches its inputs; returns changes.

    One clip per (revision, profile): its lexicon and engine are those of the revision's
    area (:func:`cms.tree.revision_area`), so a township's own entry changes
    the clips of that township's announcements only. ``engine_mode`` is the install's
    mode, used where no township chose its own.
    """
    lexicons = tree.Lexicons(session)
    values = tree.Values(session, [tree.TTS_ENGINE])
    changes = 0
    for rev in revisions_needing_audio(session, today):
        area = tree.revision_area(session, rev)
        pairs = lexicons.pairs(area)
        mode = values.engine_mode(area, engine_mode)
        recording = active_recording(session, rev.announcement_id)
        existing = {
            c.profile: c for c in session.scalars(select(Clip).where(Clip.revision_id == rev.id))
        }
        for profile in profiles_for(rev):
            key = clip_key(rev, profile, pairs, recording, mode)
            clip = existing.get(profile)
            if clip is None:
                session.add(Clip(revision_id=rev.id, profile=profile, cache_key=key))
                changes += 1
            elif clip.cache_key != key:
                changes += invalidate(session, clip.id, clip.cache_key, key)
    session.flush()
    return changes


def invalidate(session: Session, clip_id: int, old_key: str | None, new_key: str) -> int:
    """Queue a clip again for new inputs (a running render of the old inputs is then ignored)."""
    result = session.execute(
        update(Clip)
        .where(
            Clip.id == clip_id,
            Clip.cache_key.is_(None) if old_key is None else Clip.cache_key == old_key,
        )
        .values(
            cache_key=new_key,
            state=JobState.PENDING,
            attempts=0,
            next_attempt_at=None,
            claimed_by=None,
            claimed_until=None,
            last_error=None,
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


def retry(session: Session, clip_id: int) -> bool:
    """The officer's retry button: a failed clip goes back to the queue with fresh attempts."""
    return queue.transition(
        session,
        Clip,
        clip_id,
        JobState.FAILED,
        JobState.PENDING,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
    )


def due_clip_ids(session: Session, now: datetime, limit: int) -> list[int]:
    """Ready clips, urgent announcements and loudspeaker clips first."""
    stmt = (
        select(Clip.id)
        .join(Revision, Revision.id == Clip.revision_id)
        .where(queue.claimable(Clip, JobState.PENDING, now, JobState.RUNNING))
        .order_by(
            (Revision.priority == Priority.URGENT).desc(),
            (Clip.profile == ClipProfile.LOUDSPEAKER).desc(),
            Clip.id,
        )
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class _Job:
    clip_id: int
    key: str
    profile: ClipProfile
    text: str
    voice: str
    rate: int
    lexicon: list[tuple[str, str]]
    recording: str | None
    attempts: int
    engine: str


def _load(session: Session, clip_id: int, engine_mode: str) -> _Job | None:
    clip = session.get(Clip, clip_id)
    if clip is None or clip.cache_key is None:
        return None
    rev = clip.revision
    recording = active_recording(session, rev.announcement_id)
    area = tree.revision_area(session, rev)
    return _Job(
        clip_id=clip.id,
        key=clip.cache_key,
        profile=clip.profile,
        text=rev.speech,
        voice=rev.voice,
        rate=rev.rate,
        lexicon=relevant_entries(rev.speech, tree.lexicon_pairs(session, area)),
        recording=recording.path if recording else None,
        attempts=clip.attempts,
        engine=tree.engine_mode(session, area, engine_mode),
    )


def render_one(ctx: Context, clip_id: int) -> str:
    """Claim, render and record one clip; returns done, retry, failed, no_space or skipped."""
    ctx = ctx.for_job()
    if diskspace.hold(ctx, Clip, clip_id):
        return diskspace.NO_SPACE
    now = ctx.now()
    claimed = unit_of_work(
        ctx.sessions,
        lambda s: queue.claim(
            s,
            Clip,
            clip_id,
            ready=JobState.PENDING,
            running=JobState.RUNNING,
            worker=ctx.worker,
            now=now,
            hold=RENDER_HOLD,
        ),
    )
    if not claimed:
        return "skipped"
    job = unit_of_work(
        ctx.sessions, lambda s: _load(s, clip_id, ctx.settings.tts_engine), write=False
    )
    if job is None:
        return "skipped"
    from audio.errors import AudioError, TextError, VoiceError
    from audio.master import Profile
    from audio.text import Lexicon

    try:
        if job.recording:
            clip = ctx.renderer.render_recording(
                Path(job.recording), profile=Profile(AUDIO_PROFILE[job.profile]), text=job.text
            )
        else:
            clip = ctx.renderer_for(job.engine).render(
                job.text,
                voice=job.voice,
                rate=job.rate,
                profile=Profile(AUDIO_PROFILE[job.profile]),
                lexicon=Lexicon(tuple(job.lexicon)),
            )
    except Exception as exc:
        if disk.is_disk_full(exc):
            log.warning("clip %s: no space left to write the audio; it waits", clip_id)
            return diskspace.give_back(ctx, Clip, clip_id, ctx.worker)
        # A text or voice the engine can never speak will not improve by retrying.
        permanent = isinstance(exc, TextError | VoiceError)
        if not isinstance(exc, AudioError):
            log.exception("clip %s: unexpected render error", clip_id)
        else:
            log.warning("clip %s: render failed: %s", clip_id, exc)
        return unit_of_work(
            ctx.sessions, partial(_fail, ctx=ctx, job=job, exc=exc, permanent=permanent)
        )

    def done(session: Session) -> str:
        # Only if the inputs did not change while we rendered; otherwise the newer key is
        # already queued and this result is simply not recorded.
        moved = queue.finish(
            session,
            Clip,
            clip_id,
            running=JobState.RUNNING,
            new=JobState.DONE,
            worker=ctx.worker,
            extra=Clip.cache_key == job.key,
            path=str(clip.path),
            duration=clip.duration,
            engine=str(clip.engine),
            fallback_reason=clip.fallback_reason,
            subtitles_path=str(clip.srt_path),
            last_error=None,
            next_attempt_at=None,
        )
        return "done" if moved else "skipped"

    return unit_of_work(ctx.sessions, done)


def _fail(session: Session, ctx: Context, job: _Job, exc: BaseException, permanent: bool) -> str:
    attempts = session.scalar(select(Clip.attempts).where(Clip.id == job.clip_id)) or job.attempts
    if permanent or attempts >= queue.MAX_ATTEMPTS:
        queue.finish(
            session,
            Clip,
            job.clip_id,
            running=JobState.RUNNING,
            new=JobState.FAILED,
            worker=ctx.worker,
            last_error=queue.error_text(exc),
            next_attempt_at=None,
        )
        return "failed"
    queue.finish(
        session,
        Clip,
        job.clip_id,
        running=JobState.RUNNING,
        new=JobState.PENDING,
        worker=ctx.worker,
        last_error=queue.error_text(exc),
        next_attempt_at=ctx.now() + queue.backoff(attempts),
    )
    return "retry"


def clips_ready(session: Session, revision_ids: Iterable[int]) -> dict[int, Clip]:
    """Loudspeaker clip rows of the given revisions, by revision id."""
    ids = list(revision_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(Clip).where(Clip.revision_id.in_(ids), Clip.profile == ClipProfile.LOUDSPEAKER)
    )
    return {c.revision_id: c for c in rows}
