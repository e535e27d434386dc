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
from functools import lru_cache
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms import queue, tree
from cms.db import rowcount
from cms.jobs.context import Context
from cms.jobs.lifecycle import Failure, Kind, Outcome, finish, run_job
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
from cms.services.announcements import live_filter
from cms.services.speech import profiles_for

if TYPE_CHECKING:
    from audio.render import Clip as AudioClip

if TYPE_CHECKING:
    from audio.text import Lexicon

log = logging.getLogger(__name__)

RENDER_HOLD = timedelta(minutes=10)
AUDIO_PROFILE = {ClipProfile.LOUDSPEAKER: "loudspeaker", ClipProfile.VOICE: "voice_note"}


def relevant_entries(text: str, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The lexicon entries that change ``text`` as it is spoken (the others change nothing).

    Those the lexicon substitutes (:meth:`audio.text.Lexicon.matches`): whole words, a
    longer entry winning over one inside it. So a lexicon edit re-renders only the clips
    whose spoken text it changes.
    """
    from audio.errors import TextError

    occurring = tuple((w, s) for w, s in pairs if w in text)
    if not occurring:
        return []
    try:
        return list(_lexicon(occurring).matches(text))
    except TextError:  # an entry the renderer refuses too: the render reports it
        return list(occurring)


@lru_cache(maxsize=1024)
def _lexicon(pairs: tuple[tuple[str, str], ...]) -> Lexicon:
    from audio.text import Lexicon

    return Lexicon(pairs)


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
        # The file's name (its content hash), not where the data folder is mounted.
        payload["recording"] = [recording.id, PurePath(recording.path).name]
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


@dataclass(frozen=True)
class Rendered:
    """A finished clip's audio, which a clip with the same inputs (cache key) reuses."""

    path: str
    duration: float | None
    engine: str | None
    subtitles_path: str | None

    def values(self) -> dict[str, object]:
        """The columns of a clip that is done with this audio."""
        return {
            "state": JobState.DONE,
            "path": self.path,
            "duration": self.duration,
            "engine": self.engine,
            "fallback_reason": None,
            "subtitles_path": self.subtitles_path,
        }


@dataclass(frozen=True)
class ClipChange:
    """One clip to create (``clip_id`` None) or to queue again for new inputs."""

    revision_id: int
    profile: ClipProfile
    key: str
    clip_id: int | None = None
    old_key: str | None = None
    reuse: Rendered | None = None


def clip_changes(session: Session, today: date, engine_mode: str) -> list[ClipChange]:
    """What :func:`plan_clips` would change, found with reads only.

    The scheduler looks in a read transaction and writes the few changes in a short one
    (:func:`apply_clip_changes`): every clip's key is worked out on every tick, and that
    must not hold SQLite's one writer lock. A change whose key a finished clip already has
    (a new revision whose spoken inputs are unchanged: a new title, dates or targets)
    reuses that clip's audio instead of queueing a render.
    """
    lexicons = tree.Lexicons(session)
    values = tree.Values(session, [tree.TTS_ENGINE])
    changes: list[ClipChange] = []
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
                changes.append(ClipChange(rev.id, profile, key))
            elif clip.cache_key != key:
                changes.append(ClipChange(rev.id, profile, key, clip.id, clip.cache_key))
    rendered = _reusable(session, {c.key for c in changes})
    return [
        ClipChange(c.revision_id, c.profile, c.key, c.clip_id, c.old_key, rendered.get(c.key))
        for c in changes
    ]


def _reusable(session: Session, keys: set[str]) -> dict[str, Rendered]:
    """Finished clips with these keys whose audio is on disk, by key.

    A clip that fell back to another engine is not reused: rendered again, it may get the
    engine it was meant to have.
    """
    found: dict[str, Rendered] = {}
    if not keys:
        return found
    rows = session.scalars(
        select(Clip)
        .where(
            Clip.cache_key.in_(keys),
            Clip.state == JobState.DONE,
            Clip.path.is_not(None),
            Clip.fallback_reason.is_(None),
        )
        .order_by(Clip.id.desc())
    )
    for clip in rows:
        if clip.cache_key in found or clip.path is None or not Path(clip.path).is_file():
            continue
        found[clip.cache_key or ""] = Rendered(
            clip.path, clip.duration, clip.engine, clip.subtitles_path
        )
    return found


def apply_clip_changes(session: Session, changes: Iterable[ClipChange]) -> int:
    """Write what :func:`clip_changes` found; returns the clips created or queued again.

    Each change is guarded, so changes found in an older snapshot never undo newer ones: a
    clip is created only if its revision has none in that profile yet, and one is queued
    again only if it still has the key that was seen.
    """
    count = 0
    for change in changes:
        done = change.reuse.values() if change.reuse is not None else {}
        if change.clip_id is None:
            taken = session.scalar(
                select(Clip.id).where(
                    Clip.revision_id == change.revision_id, Clip.profile == change.profile
                )
            )
            if taken is None:
                session.add(
                    Clip(
                        revision_id=change.revision_id,
                        profile=change.profile,
                        cache_key=change.key,
                        **done,
                    )
                )
                count += 1
        else:
            count += invalidate(session, change.clip_id, change.old_key, change.key, **done)
    session.flush()
    return count


def plan_clips(session: Session, today: date, engine_mode: str) -> int:
    """Create or invalidate clip rows so every needed clip matches its inputs; returns changes.

    One clip per (revision, profile): its lexicon and engine are those of the revision's
    area (:func:`cms.tree.revision_area`), so a township's own entry changes
    the clips of that township's announcements only. ``engine_mode`` is the install's
    mode, used where no township chose its own.
    """
    return apply_clip_changes(session, clip_changes(session, today, engine_mode))


def invalidate(
    session: Session, clip_id: int, old_key: str | None, new_key: str, **done: object
) -> int:
    """Queue a clip again for new inputs (a running render of the old inputs is then ignored).

    ``done``: the audio of a finished clip with ``new_key`` (:meth:`Rendered.values`), which
    the clip takes at once instead of being queued.
    """
    values: dict[str, object] = {"state": JobState.PENDING, **done}
    result = session.execute(
        update(Clip)
        .where(
            Clip.id == clip_id,
            Clip.cache_key.is_(None) if old_key is None else Clip.cache_key == old_key,
        )
        .values(
            cache_key=new_key,
            attempts=0,
            next_attempt_at=None,
            claimed_by=None,
            claimed_until=None,
            last_error=None,
            **values,
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


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


def _render(ctx: Context, job: _Job) -> AudioClip:
    from audio.master import Profile
    from audio.text import Lexicon

    profile = Profile(AUDIO_PROFILE[job.profile])
    if job.recording:
        return ctx.renderer.render_recording(Path(job.recording), profile=profile, text=job.text)
    return ctx.renderer_for(job.engine).render(
        job.text,
        voice=job.voice,
        rate=job.rate,
        profile=profile,
        lexicon=Lexicon(tuple(job.lexicon)),
    )


def _rendered(session: Session, ctx: Context, job: _Job, clip: AudioClip) -> Outcome:
    # Only if the inputs did not change while we rendered; otherwise the newer key is
    # already queued and this result is simply not recorded.
    moved = finish(
        session,
        ctx,
        RENDER,
        job.clip_id,
        JobState.DONE,
        extra=Clip.cache_key == job.key,
        path=str(clip.path),
        duration=clip.duration,
        engine=str(clip.engine),
        fallback_reason=clip.fallback_reason,
        subtitles_path=str(clip.srt_path),
        last_error=None,
        next_attempt_at=None,
    )
    return Outcome.DONE if moved else Outcome.SKIPPED


def _classify(job: _Job, exc: BaseException) -> Failure:
    from audio.errors import AudioError, TextError, VoiceError

    if not isinstance(exc, AudioError):
        log.exception("clip %s: unexpected render error", job.clip_id, exc_info=exc)
    else:
        log.warning("clip %s: render failed: %s", job.clip_id, exc)
    # A text or voice the engine can never speak will not improve by retrying.
    return Failure(final=JobState.FAILED if isinstance(exc, TextError | VoiceError) else None)


RENDER: Kind[_Job, AudioClip] = Kind(
    name="clip",
    model=Clip,
    hold=RENDER_HOLD,
    load=lambda s, ctx, clip_id: _load(s, clip_id, ctx.settings.tts_engine),
    work=_render,
    record=_rendered,
    classify=_classify,
    disk=True,
)


def render_one(ctx: Context, clip_id: int) -> Outcome:
    """Claim, render and record one clip; returns done, retry, failed, no_space or skipped."""
    return run_job(ctx, RENDER, clip_id)


def clips_ready(session: Session, revision_ids: Iterable[int]) -> dict[int, Clip]:
    """Loudspeaker clip rows of the given revisions, by revision id."""
    ids = list(revision_ids)
    if not ids:
        return {}
    rows = session.scalars(
        select(Clip).where(Clip.revision_id.in_(ids), Clip.profile == ClipProfile.LOUDSPEAKER)
    )
    return {c.revision_id: c for c in rows}
