"""One notice to 500 groups through the real dispatcher and channel, under injected faults.

Every group gets the notice exactly once (text and voice note), except the documented case:
a request whose answer was lost is recorded "uncertain" and never sent again by itself.
Nothing is lost: every delivery ends sent, uncertain, or failed because the bot was kicked
(and that chat is deactivated with the reason).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from bot.channel import TelegramChannel
from cms import queue
from cms.channels import ChannelRegistry
from cms.clock import ManualClock
from cms.db import make_session_factory, unit_of_work
from cms.jobs import deliveries
from cms.jobs.context import Context
from cms.models import (
    Area,
    ChatGroup,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
)
from cms.settings import Settings
from tests.bot.conftest import fresh
from tests.fakes.telegram_api import FakeBotApi, Fault

GROUPS = 500
PARTS = 2  # the text fits one message; then the voice note


def _groups(session: Session, area: Area, n: int) -> list[ChatGroup]:
    rows = [
        ChatGroup(platform="telegram", chat_id=str(-1_000_000_000 - i), title=f"群{i}", area=area)
        for i in range(n)
    ]
    session.add_all(rows)
    session.commit()
    return rows


def _dispatch_until_done(ctx: Context, clock: ManualClock, passes: int = 8) -> None:
    """What the scheduler's ticks do: send every due row, then let time pass for retries."""
    for _ in range(passes):
        ids = unit_of_work(
            ctx.sessions, lambda s: deliveries.due_delivery_ids(s, clock.now(), 1000)
        )
        if not ids:
            pending = unit_of_work(
                ctx.sessions,
                lambda s: s.scalar(
                    select(Delivery.id).where(Delivery.state == DeliveryState.PENDING).limit(1)
                ),
            )
            if pending is None:
                return
        for delivery_id in ids:
            deliveries.send_one(ctx, delivery_id)
        clock.advance(timedelta(hours=2))


@pytest.fixture
def notice_setup(
    session: Session,
    grid: dict[str, Area],
    make_announcement: Callable[..., Any],
    voice_note: Path,
) -> tuple[int, list[ChatGroup]]:
    groups = _groups(session, grid["g1"], GROUPS)
    ann = make_announcement("approved", title="防汛紧急通知", area_ids=[grid["v1"].id])
    rev_id = ann.approved_revision_id
    session.add(
        Clip(
            revision_id=rev_id,
            profile=ClipProfile.VOICE,
            state=JobState.DONE,
            path=str(voice_note),
            duration=2.0,
        )
    )
    now = datetime.now(UTC)
    session.add_all(
        Delivery(revision_id=rev_id, chat_group_id=g.id, due_at=now - timedelta(minutes=1))
        for g in groups
    )
    session.commit()
    return rev_id, groups


@pytest.fixture
def dispatcher(
    make_channel: Callable[..., TelegramChannel], bot_settings: Settings, engine: Engine
) -> tuple[Context, ManualClock]:
    channel = make_channel(updates="none", max_wait=3.0)
    registry = ChannelRegistry()
    registry.register(channel)
    clock = ManualClock(datetime.now(UTC))
    ctx = Context(
        settings=bot_settings,
        engine=engine,
        sessions=make_session_factory(engine),
        registry=registry,
        worker="test-worker",
        clock=clock,
    )
    return ctx, clock


@pytest.mark.slow
def test_fan_out_to_500_groups_under_faults(
    api: FakeBotApi,
    session: Session,
    notice_setup: tuple[int, list[ChatGroup]],
    dispatcher: tuple[Context, ManualClock],
) -> None:
    _rev_id, groups = notice_setup
    ctx, clock = dispatcher
    rnd = random.Random(5)
    chosen = rnd.sample([g.chat_id for g in groups], 20)
    kicked, migrated, lost_answer, never_got, stubborn = (
        chosen[0:3],
        chosen[3:6],
        chosen[6:10],
        chosen[10:12],
        chosen[12:15],
    )
    for chat_id in kicked:
        api.kick(chat_id)
    new_ids = {chat_id: -1_009_000_000 - i for i, chat_id in enumerate(migrated)}
    for old, new in new_ids.items():
        api.migrate(old, new)
    for chat_id in lost_answer:
        api.fail(Fault.DROP_AFTER, chat_id=chat_id, method="sendMessage")
    for chat_id in never_got:
        api.fail(Fault.DROP_BEFORE, chat_id=chat_id, method="sendVoice")
    for chat_id in stubborn:  # more 5xx than one pass retries: back to the queue, then sent
        api.fail(Fault.SERVER_ERROR, times=4, chat_id=chat_id, method="sendVoice")
    api.fail(Fault.RETRY_AFTER, times=8, retry_after=1, method="sendMessage")  # waited out
    api.fail(Fault.RETRY_AFTER, times=4, retry_after=90, method="sendVoice")  # re-queued
    api.fail(Fault.SERVER_ERROR, times=15, method="sendMessage")
    api.fail(Fault.BAD_GATEWAY, times=10, method="sendVoice")

    _dispatch_until_done(ctx, clock)

    fresh(session)
    rows = {d.chat_group.chat_id: d for d in session.scalars(select(Delivery))}
    states = {chat_id: d.state for chat_id, d in rows.items()}
    assert DeliveryState.PENDING not in states.values()
    assert DeliveryState.SENDING not in states.values()

    uncertain = set(lost_answer) | set(never_got)
    for group in groups:
        chat_id = group.chat_id
        delivery = rows[chat_id]
        where = str(new_ids.get(chat_id, chat_id))
        got = api.messages_to(where)
        if chat_id in kicked:
            assert delivery.state is DeliveryState.FAILED and got == []
            continue
        if chat_id in uncertain:
            assert delivery.state is DeliveryState.UNCERTAIN, chat_id
            assert len(got) <= PARTS  # never sent twice
            continue
        assert delivery.state is DeliveryState.SENT, (chat_id, delivery.last_error)
        assert [m.method for m in got] == ["sendmessage", "sendvoice"], chat_id
        assert delivery.message_ids == [str(m.message_id) for m in got]

    # The lost answers: the text reached the group once; the voice was never tried.
    for chat_id in lost_answer:
        assert [m.method for m in api.messages_to(chat_id)] == ["sendmessage"]
        assert rows[chat_id].message_ids == []
    # The voice request dropped before the server took it: text once, no voice.
    for chat_id in never_got:
        assert [m.method for m in api.messages_to(chat_id)] == ["sendmessage"]
        assert len(rows[chat_id].message_ids) == 1

    fresh(session)
    by_chat = {g.chat_id: g for g in session.scalars(select(ChatGroup))}
    for chat_id in kicked:
        assert not by_chat[chat_id].active, (rows[chat_id].last_error, rows[chat_id].attempts)
        assert "kicked" in (by_chat[chat_id].deactivated_reason or "")
    for old, new in new_ids.items():
        assert str(new) in by_chat and old not in by_chat
    assert sum(1 for g in by_chat.values() if g.active) == GROUPS - len(kicked)

    sent = sum(1 for s in states.values() if s is DeliveryState.SENT)
    assert sent == GROUPS - len(kicked) - len(uncertain)
    assert api.sent_count() == sent * PARTS + len(lost_answer) + len(never_got)


def test_a_crash_between_parts_resumes_with_the_voice_note_only(
    api: FakeBotApi,
    session: Session,
    grid: dict[str, Area],
    make_announcement: Callable[..., Any],
    voice_note: Path,
    dispatcher: tuple[Context, ManualClock],
) -> None:
    """The text went out and its id was committed, then the process died: no second text."""
    ctx, clock = dispatcher
    (group,) = _groups(session, grid["g1"], 1)
    ann = make_announcement("approved", area_ids=[grid["v1"].id])
    session.add(
        Clip(
            revision_id=ann.approved_revision_id,
            profile=ClipProfile.VOICE,
            state=JobState.DONE,
            path=str(voice_note),
            duration=2.0,
        )
    )
    delivery = Delivery(
        revision_id=ann.approved_revision_id,
        chat_group_id=group.id,
        due_at=clock.now() - timedelta(minutes=5),
    )
    session.add(delivery)
    session.commit()

    class Crash(BaseException):
        pass

    channel = ctx.registry.get("telegram")
    assert channel is not None
    original = channel.send

    def dying_send(notice, progress):  # type: ignore[no-untyped-def]
        def progress_then_die(ids: list[str]) -> None:
            progress(ids)
            raise Crash

        return original(notice, progress_then_die)

    channel.send = dying_send  # type: ignore[method-assign]
    with pytest.raises(Crash):
        deliveries.send_one(ctx, delivery.id)
    channel.send = original  # type: ignore[method-assign]
    fresh(session)
    assert session.get(Delivery, delivery.id).state is DeliveryState.SENDING  # type: ignore[union-attr]

    # The next scheduler process takes the orphan back and finishes it.
    restarted = Context(
        settings=ctx.settings,
        engine=ctx.engine,
        sessions=ctx.sessions,
        registry=ctx.registry,
        worker="next-process",
        clock=clock,
    )
    unit_of_work(
        ctx.sessions,
        lambda s: queue.release_orphans(
            s,
            Delivery,
            running=DeliveryState.SENDING,
            ready=DeliveryState.PENDING,
            worker="next-process",
        ),
    )
    assert deliveries.send_one(restarted, delivery.id) == "sent"
    assert [m.method for m in api.messages_to(group.chat_id)] == ["sendmessage", "sendvoice"]
    fresh(session)
    done = session.get(Delivery, delivery.id)
    assert done is not None and done.message_ids == ["1", "2"]
