"""The database is the queue: claim, finish and retry rows with one guarded UPDATE each.

Every transition is ``UPDATE … WHERE id = :id AND state = :old`` (plus the claimant for
finishing), so a row is never taken twice and a worker whose claim was taken away after a
crash cannot overwrite the newer state.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from audio.errors import (
    AudioError,
    MasteringError,
    ProgramError,
    RecordingError,
    SynthesisError,
    TextError,
    VoiceError,
)
from cms.db import rowcount
from cms.models import (
    ArticleState,
    BreakIn,
    Clip,
    Delivery,
    DeliveryState,
    JobState,
    Program,
    PublisherArticle,
    StaffPost,
)
from cms.services.errors import N_, DomainError, Message, audio_message

QueueModel = (
    type[Clip]
    | type[Program]
    | type[Delivery]
    | type[PublisherArticle]
    | type[BreakIn]
    | type[StaffPost]
)
"""The kinds of row the queue holds (each has :class:`cms.models.QueueMixin`'s columns)."""
QueueState = JobState | DeliveryState | ArticleState
"""A queued row's state."""

MAX_ATTEMPTS = 5
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_CAP = timedelta(hours=1)
ERROR_CHARS = 2000


def backoff(attempts: int, retry_after: float | None = None) -> timedelta:
    """Delay before the next attempt: doubling from 30 s, capped, never below ``retry_after``."""
    delay = min(BACKOFF_BASE * (2 ** max(attempts - 1, 0)), BACKOFF_CAP)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return delay


def _update(
    session: Session, model: QueueModel, cond: list[ColumnElement[bool]], **values: Any
) -> int:
    """One guarded ``UPDATE model SET values WHERE cond``; how many rows it changed."""
    result = session.execute(
        update(model).where(*cond).values(**values).execution_options(synchronize_session=False)
    )
    return rowcount(result)


def claimable(
    model: QueueModel, ready_state: QueueState, now: datetime, running: QueueState | None = None
) -> ColumnElement[bool]:
    """SQL condition: a row ready to be taken now (or, given ``running``, a claim that expired)."""
    ready = and_(
        model.state == ready_state,
        or_(model.next_attempt_at.is_(None), model.next_attempt_at <= now),
    )
    if running is None:
        return ready
    # A claim that outlived its hold belongs to a job that hung or died: take it again.
    return or_(ready, and_(model.state == running, model.claimed_until < now))


def claim(
    session: Session,
    model: QueueModel,
    row_id: int,
    *,
    ready: QueueState,
    running: QueueState,
    worker: str,
    now: datetime,
    hold: timedelta,
    extra: ColumnElement[bool] | None = None,
) -> bool:
    """Move one ready row to ``running`` for ``worker``; False when someone else got it."""
    cond = [model.id == row_id, claimable(model, ready, now, running)]
    if extra is not None:
        cond.append(extra)
    values = {"claimed_by": worker, "claimed_until": now + hold, "attempts": model.attempts + 1}
    return _update(session, model, cond, state=running, **values) == 1


def finish(
    session: Session,
    model: QueueModel,
    row_id: int,
    *,
    running: QueueState,
    new: QueueState,
    worker: str,
    extra: ColumnElement[bool] | None = None,
    **values: Any,
) -> bool:
    """Move a row this worker claimed from ``running`` to ``new``; False if it lost the claim."""
    cond = [model.id == row_id, model.state == running, model.claimed_by == worker]
    if extra is not None:
        cond.append(extra)
    return _update(session, model, cond, state=new, claimed_until=None, **values) == 1


def transition(
    session: Session,
    model: QueueModel,
    row_id: int,
    old: QueueState,
    new: QueueState,
    **values: Any,
) -> bool:
    """One ``UPDATE … WHERE state = old``; True when the row moved."""
    return (
        _update(session, model, [model.id == row_id, model.state == old], state=new, **values) == 1
    )


def postpone_due(
    session: Session,
    model: QueueModel,
    *,
    ready: QueueState,
    running: QueueState,
    now: datetime,
    until: datetime,
    row_id: int | None = None,
    **values: Any,
) -> int:
    """Put off the rows ready now (or one of them) until ``until``, using no attempt.

    For work that cannot start for a reason outside the job (a full disk): the row is not
    claimed, so its attempts stay as they are. A claim that expired is handed back too.
    """
    cond = [claimable(model, ready, now, running)]
    if row_id is not None:
        cond.append(model.id == row_id)
    return _update(
        session, model, cond, state=ready, claimed_by=None, claimed_until=None,
        next_attempt_at=until, **values,
    )  # fmt: skip


def give_back(
    session: Session,
    model: QueueModel,
    row_id: int,
    *,
    running: QueueState,
    ready: QueueState,
    worker: str,
    until: datetime,
    **values: Any,
) -> bool:
    """Return a row this worker claimed to the queue for later, refunding its attempt."""
    return finish(
        session,
        model,
        row_id,
        running=running,
        new=ready,
        worker=worker,
        attempts=_refunded(model),
        next_attempt_at=until,
        **values,
    )


def _refunded(model: QueueModel) -> Any:
    """The row's attempts less the one its claim counted (never below 0)."""
    return case((model.attempts > 0, model.attempts - 1), else_=0)


def requeue(
    session: Session,
    model: QueueModel,
    row_id: int,
    *,
    from_states: tuple[QueueState, ...],
    ready: QueueState,
) -> QueueState | None:
    """The retry button: a row in one of ``from_states`` goes back to ``ready``, fresh attempts.

    Returns the state the row left, or None when it was in none of them (each try is one
    guarded UPDATE, so a concurrent change is never overwritten). A missed program keeps
    ``missed``: built now, it is *built late* (see :mod:`cms.services.days`).
    """
    for old in from_states:
        if transition(
            session,
            model,
            row_id,
            old,
            ready,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
        ):
            return old
    return None


def queue_lengths(session: Session) -> dict[str, dict[str, int]]:
    """Rows per state for clips, programs, deliveries and Official Account articles."""
    out: dict[str, dict[str, int]] = {}
    for name, model in (
        ("clips", Clip),
        ("programs", Program),
        ("deliveries", Delivery),
        ("articles", PublisherArticle),
    ):
        rows = session.execute(select(model.state, func.count()).group_by(model.state)).all()
        out[name] = {state.value: count for state, count in rows}
    return out


def hasten(
    session: Session,
    model: QueueModel,
    *,
    ready: QueueState,
    now: datetime,
    where: ColumnElement[bool],
) -> int:
    """Make the ready rows that wait for a later time, and match ``where``, due at once."""
    cond = [model.state == ready, model.next_attempt_at > now, where]
    # Looked up first: this runs every tick and almost always finds nothing to write.
    if session.scalar(select(model.id).where(*cond).limit(1)) is None:
        return 0
    return _update(session, model, cond, next_attempt_at=None)


def release_orphans(
    session: Session, model: QueueModel, *, running: QueueState, ready: QueueState, worker: str
) -> int:
    """Hand rows claimed by earlier scheduler processes back to the queue.

    Only the lease holder runs work, so a running row claimed by anyone else belongs to a
    process that died or lost the lease; its attempt is not counted against it.
    """
    cond = [
        model.state == running,
        or_(model.claimed_by.is_(None), ~model.claimed_by.startswith(f"{worker}/")),
    ]
    return _update(
        session, model, cond, state=ready, claimed_by=None, claimed_until=None,
        attempts=_refunded(model),
    )  # fmt: skip


def error_text(exc: BaseException, limit: int = ERROR_CHARS) -> str:
    """The failure reason of ``exc`` as stored in a ``last_error`` column (see :func:`error_message`)."""
    return error_message(exc, limit).dumps()


# What kind of failure each audio error is, said in the reader's language before its detail.
_AUDIO_HEADLINES: tuple[tuple[type[AudioError], str], ...] = (
    (TextError, N_("文字无法朗读：{detail}")),
    (VoiceError, N_("语音设置无效：{detail}")),
    (SynthesisError, N_("语音合成失败：{detail}")),
    (RecordingError, N_("录音无法使用：{detail}")),
    (MasteringError, N_("音频处理失败：{detail}")),
    (ProgramError, N_("节目无法编排：{detail}")),
)


def _shortened(message: Message, limit: int) -> Message:
    params = {
        name: _shortened(value, limit)
        if isinstance(value, Message)
        else value[:limit]
        if isinstance(value, str)
        else value
        for name, value in message.params.items()
    }
    return Message(message.msgid, params)


def error_message(exc: BaseException, limit: int = ERROR_CHARS) -> Message:
    """A failure as a message rendered in the reader's language.

    Domain errors carry their own message, and so do audio errors (a message id with
    parameters, see :mod:`audio.errors`); an audio error without one gets a translated
    headline naming the kind of failure, with the library's text after it. A chat channel's
    error carries its message as ``message`` too (:class:`cms.channels.ChannelError`; its
    parameters, the platform's code and words, are cut like ``detail``). Anything else (a
    platform's answer, a network error) is technical detail kept as is.
    """
    if isinstance(exc, DomainError):
        return exc.message
    carried = getattr(exc, "message", None)
    if isinstance(carried, Message) and carried.params:
        return _shortened(carried, limit)
    detail = (str(exc) or type(exc).__name__)[:limit]
    if isinstance(exc, AudioError) and exc.msgid:
        # An audio error raised with a message id and parameters translates as a whole;
        # its technical detail (ffmpeg's log, another library's text) is cut like ``detail``.
        return _shortened(audio_message(exc), limit)
    for kind, headline in _AUDIO_HEADLINES:
        if isinstance(exc, kind):
            return Message(headline, {"detail": detail})
    return Message(detail)
