"""Chat deliveries: one row per (approved revision, chat group), sent through a channel.

States ``pending → sending → sent | failed | uncertain`` (and ``cancelled``), each change
one ``UPDATE … WHERE state = old``, made only after the channel has answered.

Duplicate policy. Chat platforms have no idempotency key. The message ids of every part
(text, voice note) are stored the moment the channel reports it (``progress``), so a
restart resumes after the parts already recorded. A part can therefore be posted twice
only if the process dies after the platform accepted it and before its id was committed:
one request's round trip plus one small UPDATE. A lost answer (``OutcomeUnknown``) marks
the delivery ``uncertain``: officers see it and decide; it is never retried by itself.
The local outbox channel is idempotent (its rows are keyed by delivery), so deliveries
through it are exactly once.

Channel choice: a chat's platform channel if registered, else the local outbox (see
:mod:`cms.jobs.outbox`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cms import queue
from cms.channels import (
    ChatChannel,
    ChatUnavailable,
    Notice,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    SendResult,
    TemporaryFailure,
)
from cms.clock import at_local
from cms.db import rowcount, unit_of_work
from cms.jobs.context import Context
from cms.jobs.lifecycle import Failure, Kind, Outcome, finish, run_job
from cms.jobs.outbox import PLATFORM as OUTBOX
from cms.models import (
    Announcement,
    ChatGroup,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    Revision,
)
from cms.services import airtime, share, township
from cms.services.announcements import live_filter, reaches
from cms.services.errors import N_, Message
from cms.settings import Settings

log = logging.getLogger(__name__)

SEND_HOLD = timedelta(minutes=15)
VOICE_WAIT = timedelta(minutes=10)
"""How long a due delivery waits for its voice note to render before going out as text."""


def due_time(rev: Revision, now: datetime, tz) -> datetime:  # type: ignore[no-untyped-def]
    """The post time on the first day of the campaign (already past: it goes out at once)."""
    assert rev.chat_post_time is not None
    return at_local(rev.start_date, rev.chat_post_time, tz)


def plan_deliveries(session: Session, today: date, now: datetime, tz) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Create missing delivery rows and cancel those that no longer apply; returns both counts."""
    created = add_deliveries(session, missing_deliveries(session, today, now, tz))
    cancelled = cancel_stale(session) + cancel_ended(session, now, tz)
    return created, cancelled


def missing_deliveries(
    session: Session, today: date, now: datetime, tz: tzinfo
) -> list[tuple[int, int, datetime]]:
    """The deliveries that should exist and do not, as (revision id, chat id, due), found
    with reads only (the scheduler looks outside its write transaction)."""
    live = list(
        session.scalars(
            select(Revision)
            .join(Announcement, Announcement.approved_revision_id == Revision.id)
            .where(
                live_filter(),
                Revision.to_chats,
                Revision.chat_post_time.is_not(None),
                Revision.end_date >= today,
            )
        )
    )
    chats = list(session.scalars(select(ChatGroup).where(ChatGroup.active)))
    missing = []
    for rev in live:
        have = set(
            session.scalars(select(Delivery.chat_group_id).where(Delivery.revision_id == rev.id))
        )
        due = due_time(rev, now, tz)
        if not airtime.post_allowed(rev, max(due, now), tz):
            continue  # the event is over: a post now would announce what has happened
        for chat in chats:
            if chat.id in have or not reaches(rev, chat.area):
                continue
            missing.append((rev.id, chat.id, due))
    return missing


def add_deliveries(session: Session, missing: list[tuple[int, int, datetime]]) -> int:
    """Create the deliveries :func:`missing_deliveries` found, if still wanted; returns how many.

    Found in an older snapshot, each is checked again: its revision still the live one of
    its announcement, its chat still active, the row still missing.
    """
    if not missing:
        return 0
    revisions = {rev_id for rev_id, _, _ in missing}
    live = set(
        session.scalars(
            select(Announcement.approved_revision_id).where(
                live_filter(), Announcement.approved_revision_id.in_(revisions)
            )
        )
    )
    active = set(session.scalars(select(ChatGroup.id).where(ChatGroup.active)))
    have = {
        (rev_id, chat_id)
        for rev_id, chat_id in session.execute(
            select(Delivery.revision_id, Delivery.chat_group_id).where(
                Delivery.revision_id.in_(revisions)
            )
        )
    }
    created = 0
    for rev_id, chat_id, due in missing:
        if rev_id in live and chat_id in active and (rev_id, chat_id) not in have:
            session.add(Delivery(revision_id=rev_id, chat_group_id=chat_id, due_at=due))
            have.add((rev_id, chat_id))
            created += 1
    session.flush()
    return created


def cancel_ended(session: Session, now: datetime, tz) -> int:  # type: ignore[no-untyped-def]
    """Pending posts of notices whose event has ended (their end time on the last day)."""
    count = 0
    waiting = session.scalars(
        select(Delivery)
        .join(Revision, Revision.id == Delivery.revision_id)
        .where(Delivery.state == DeliveryState.PENDING, Revision.end_time.is_not(None))
    ).all()
    for delivery in waiting:
        if airtime.post_allowed(delivery.revision, now, tz):
            continue
        count += _cancel(session, delivery.id, Message(N_("活动已结束，不再发送")).dumps())
    return count


def _cancel(session: Session, delivery_id: int, reason: str) -> bool:
    return queue.transition(
        session,
        Delivery,
        delivery_id,
        DeliveryState.PENDING,
        DeliveryState.CANCELLED,
        last_error=reason,
    )


def cancel_stale(session: Session) -> int:
    """Pending deliveries of withdrawn or superseded revisions, or of chats switched off."""
    live_ids = select(Announcement.approved_revision_id).where(live_filter())
    count = 0
    stale = session.scalars(
        select(Delivery).where(
            Delivery.state == DeliveryState.PENDING, Delivery.revision_id.not_in(live_ids)
        )
    ).all()
    for delivery in stale:
        ann = delivery.revision.announcement
        reason = Message(N_("公告已撤回") if ann.withdrawn_at else N_("已被新版本取代")).dumps()
        count += _cancel(session, delivery.id, reason)
    off = select(ChatGroup.id).where(ChatGroup.active.is_(False))
    # Looked up first: this runs every tick and almost always finds nothing to write.
    if (
        session.scalar(
            select(Delivery.id)
            .where(Delivery.state == DeliveryState.PENDING, Delivery.chat_group_id.in_(off))
            .limit(1)
        )
        is None
    ):
        return count
    result = session.execute(
        update(Delivery)
        .where(Delivery.state == DeliveryState.PENDING, Delivery.chat_group_id.in_(off))
        .values(state=DeliveryState.CANCELLED, last_error=Message(N_("群聊已停用")).dumps())
        .execution_options(synchronize_session=False)
    )
    return count + rowcount(result)


def due_delivery_ids(session: Session, now: datetime, limit: int = 500) -> list[int]:
    stmt = (
        select(Delivery.id)
        .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
        .where(
            queue.claimable(Delivery, DeliveryState.PENDING, now, DeliveryState.SENDING),
            Delivery.due_at <= now,
            ChatGroup.active,
        )
        .order_by(Delivery.due_at, Delivery.id)
        .limit(limit)
    )
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class _SendJob:
    delivery_id: int
    chat_group_id: int
    platform: str
    chat_id: str
    title: str
    text: str
    voice_path: str | None
    voice_duration: float | None
    sent_ids: tuple[str, ...]
    attempts: int
    link: str | None = None  # the share page, for channels that cannot carry the audio
    # The chat's credentials, for its plugin (cms never reads them).
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)


def _voice(session: Session, revision_id: int) -> Clip | None:
    return session.scalar(
        select(Clip).where(Clip.revision_id == revision_id, Clip.profile == ClipProfile.VOICE)
    )


def _voice_pending(session: Session, delivery_id: int, now: datetime) -> bool:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return False
    clip = _voice(session, delivery.revision_id)
    waiting = clip is None or clip.state in (JobState.PENDING, JobState.RUNNING)
    # Measured from when the delivery was created too: a notice approved after its post
    # time still waits a little for its voice note instead of going out as text at once.
    return waiting and now < max(delivery.due_at, delivery.created_at) + VOICE_WAIT


def _load(session: Session, delivery_id: int, settings: Settings) -> _SendJob | None:
    delivery = session.get(Delivery, delivery_id)
    if delivery is None:
        return None
    rev, chat = delivery.revision, delivery.chat_group
    clip = _voice(session, rev.id)
    ready = clip is not None and clip.state is JobState.DONE and clip.path
    return _SendJob(
        delivery_id=delivery.id,
        chat_group_id=chat.id,
        platform=chat.platform,
        chat_id=chat.chat_id,
        title=rev.title,
        text=signed(rev.body, Message(*township.office_name(session, chat.area)).render()),
        voice_path=clip.path if ready else None,  # type: ignore[union-attr]
        voice_duration=clip.duration if ready else None,  # type: ignore[union-attr]
        sent_ids=tuple(str(i) for i in (delivery.message_ids or [])),
        attempts=delivery.attempts,
        link=share.share_url(settings, rev.announcement),
        credentials=dict(chat.credentials or {}),
    )


def signed(body: str, office: str) -> str:
    """The notice's text with its issuing office below it, as a notice posted in a group is
    signed (the chat's own township's office; not twice when the officer signed it)."""
    text = body.rstrip()
    if not office or text.endswith(office):
        return text
    return f"{text}\n\n{office}"


def channel_for(ctx: Context, platform: str) -> ChatChannel:
    channel = ctx.registry.get(platform)
    if channel is None:
        channel = ctx.registry.get(OUTBOX)
    if channel is None:
        raise RuntimeError("no chat channel registered (the outbox channel is missing)")
    return channel


def _notice(job: _SendJob) -> Notice:
    return Notice(
        delivery_id=job.delivery_id,
        chat_id=job.chat_id,
        title=job.title,
        text=job.text,
        voice_path=Path(job.voice_path) if job.voice_path else None,
        voice_duration=job.voice_duration,
        sent_ids=job.sent_ids,
        link=job.link,
        credentials=job.credentials,
    )


def _send(ctx: Context, job: _SendJob) -> SendResult:
    def progress(ids: list[str]) -> None:
        # Each accepted part is committed at once: this is what keeps the duplicate window
        # down to one part's round trip.
        unit_of_work(
            ctx.sessions,
            lambda s: s.execute(
                update(Delivery)
                .where(
                    Delivery.id == job.delivery_id,
                    Delivery.state == DeliveryState.SENDING,
                    Delivery.claimed_by == ctx.worker,
                )
                .values(message_ids=[str(i) for i in ids])
                .execution_options(synchronize_session=False)
            ),
        )

    return channel_for(ctx, job.platform).send(_notice(job), progress)


def _sent(session: Session, ctx: Context, job: _SendJob, result: SendResult) -> Outcome:
    if result.new_chat_id and result.new_chat_id != job.chat_id:
        try:
            # In a savepoint: if the new id is already bound to another row, the delivery
            # must still be recorded as sent (or it would be sent again).
            with session.begin_nested():
                session.execute(
                    update(ChatGroup)
                    .where(ChatGroup.id == job.chat_group_id)
                    .values(chat_id=result.new_chat_id)
                    .execution_options(synchronize_session=False)
                )
            log.info("chat %s moved to %s", job.chat_id, result.new_chat_id)
        except IntegrityError:
            log.warning(
                "chat %s moved to %s, which is bound already", job.chat_id, result.new_chat_id
            )
    moved = finish(
        session,
        ctx,
        SEND,
        job.delivery_id,
        DeliveryState.SENT,
        message_ids=[str(i) for i in result.message_ids],
        sent_at=ctx.now(),
        last_error=None,
        next_attempt_at=None,
    )
    return Outcome.SENT if moved else Outcome.SKIPPED


def _classify(job: _SendJob, exc: BaseException) -> Failure:
    if isinstance(exc, TemporaryFailure):
        # A platform that says "wait" is obeyed, however often it says so: throttling is not
        # a fault of the delivery (the notice's end cancels it if the wait never ends).
        return Failure(retry_after=exc.retry_after, endless=isinstance(exc, RateLimited))
    if isinstance(exc, ChatUnavailable):
        reason = queue.error_text(exc, limit=300)

        def deactivate(session: Session, final: bool) -> None:
            session.execute(
                update(ChatGroup)
                .where(ChatGroup.id == job.chat_group_id, ChatGroup.active)
                .values(active=False, deactivated_reason=reason)
                .execution_options(synchronize_session=False)
            )
            log.warning("chat %s deactivated: %s", job.chat_id, reason)
            cancel_stale(session)

        return Failure(final=DeliveryState.FAILED, error=reason, then=deactivate)
    if isinstance(exc, PermanentFailure):
        # The platform will refuse this again: no retries, the reason is shown at once.
        return Failure(final=DeliveryState.FAILED)
    if isinstance(exc, OutcomeUnknown):
        # It may be in the chat already: never sent again without a person looking.
        return Failure(final=DeliveryState.UNCERTAIN)
    log.exception("delivery %s: unexpected channel error", job.delivery_id, exc_info=exc)
    return Failure()


SEND: Kind[_SendJob, SendResult] = Kind(
    name="delivery",
    model=Delivery,
    ready=DeliveryState.PENDING,
    running=DeliveryState.SENDING,
    failed=DeliveryState.FAILED,
    hold=SEND_HOLD,
    load=lambda s, ctx, delivery_id: _load(s, delivery_id, ctx.settings),
    work=_send,
    record=_sent,
    classify=_classify,
    not_yet=_voice_pending,
    claim_if=lambda now: Delivery.due_at <= now,
    retry_outcome=Outcome.PENDING,
    outcomes={DeliveryState.FAILED: Outcome.FAILED, DeliveryState.UNCERTAIN: Outcome.UNCERTAIN},
)


def send_one(ctx: Context, delivery_id: int) -> Outcome:
    """Claim, send and record one delivery; returns its outcome."""
    return run_job(ctx, SEND, delivery_id)
