"""Commands and callbacks, driven through getUpdates from the loopback Bot API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.channel import TelegramChannel
from cms.models import (
    Area,
    ChatAccount,
    ChatGroup,
    Clip,
    ClipProfile,
    JobState,
    Outlet,
    OutletKind,
    Program,
    Receipt,
    Role,
    Slot,
    User,
)
from cms.services import chats
from cms.settings import Settings
from tests.bot.conftest import Clock, fresh, wait_until
from tests.fakes.telegram_api import FakeBotApi, SentMessage
from tests.helpers import shown

GROUP = -100111
OTHER_GROUP = -100222
ADMIN_ID = 501
MEMBER_ID = 502
OPERATOR_ID = 601


@pytest.fixture
def bot(make_channel: Callable[..., TelegramChannel]) -> TelegramChannel:
    return make_channel(updates="polling")


def say(api: FakeBotApi, text: str, *, chat: int = GROUP, user: int = MEMBER_ID) -> None:
    sender = api.user(user)
    where = api.private(sender) if chat == user else api.group(chat)
    api.push_command(chat=where, user=sender, text=text)


def reply(api: FakeBotApi, chat: int, contains: str, *, count: int = 1) -> list[SentMessage]:
    """Wait until the bot has sent ``count`` messages to ``chat`` containing ``contains``."""

    def found() -> list[SentMessage]:
        hits = [m for m in api.messages_to(chat) if contains in (m.text or m.caption)]
        return hits if len(hits) >= count else []

    return wait_until(found)


def idle(api: FakeBotApi) -> None:
    """Wait until the bot has fetched every queued update."""
    wait_until(lambda: api.pending_updates() == 0 or None)


def test_start_help_and_unknown_in_private(bot: TelegramChannel, api: FakeBotApi) -> None:
    say(api, "/start", chat=MEMBER_ID)
    reply(api, MEMBER_ID, "我是大喇叭通知机器人")
    say(api, "/help", chat=MEMBER_ID)
    reply(api, MEMBER_ID, "/today", count=2)
    say(api, "/whatever", chat=MEMBER_ID)
    reply(api, MEMBER_ID, "没有这个命令")
    say(api, "/weather@some_other_bot")
    say(api, "/whatever@dalaba_test_bot")
    reply(api, GROUP, "没有这个命令")
    assert len(api.messages_to(GROUP)) == 1
    assert {c["command"] for c in api.commands} >= {"today", "latest", "bind", "link", "program"}


def test_an_unbound_group_is_told_how_to_bind(bot: TelegramChannel, api: FakeBotApi) -> None:
    say(api, "/today")
    reply(api, GROUP, "还没有绑定")
    say(api, "/start")
    reply(api, GROUP, "/bind 绑定码", count=2)


def test_bind_needs_a_group_admin_and_a_valid_one_time_code(
    bot: TelegramChannel, api: FakeBotApi, session: Session, grid: dict[str, Area]
) -> None:
    code = chats.create_binding_code(session, None, grid["g1"])
    session.commit()

    say(api, f"/bind {code}", user=MEMBER_ID)
    reply(api, GROUP, "只有群管理员")
    fresh(session)
    assert chats.find_chat(session, "telegram", GROUP) is None

    api.set_member(GROUP, ADMIN_ID, "administrator")
    say(api, "/bind WRONGCODE", user=ADMIN_ID)
    reply(api, GROUP, "绑定码无效")

    say(api, f"/bind {code.lower()}", user=ADMIN_ID)
    reply(api, GROUP, "绑定成功：本群会收到“清水镇 / 石桥村 / 一组”的通知")
    fresh(session)
    bound = chats.bound_chat(session, "telegram", GROUP)
    assert bound is not None and bound.area_id == grid["g1"].id
    assert bound.title == "石桥村一组群"

    # One time only: the same code in another group is refused.
    api.set_member(OTHER_GROUP, ADMIN_ID, "creator")
    say(api, f"/bind {code}", chat=OTHER_GROUP, user=ADMIN_ID)
    reply(api, OTHER_GROUP, "绑定码无效")

    say(api, f"/bind {code}", chat=ADMIN_ID, user=ADMIN_ID)
    reply(api, ADMIN_ID, "请在要绑定的群里")


def test_unbind_is_for_admins_and_stops_the_group(
    bot: TelegramChannel, api: FakeBotApi, session: Session, grid: dict[str, Area]
) -> None:
    chats.bind_chat(session, None, platform="telegram", chat_id=GROUP, area=grid["v1"])
    session.commit()
    say(api, "/unbind", user=MEMBER_ID)
    reply(api, GROUP, "只有群管理员可以解除绑定")
    api.set_member(GROUP, ADMIN_ID, "administrator")
    say(api, "/unbind", user=ADMIN_ID)
    reply(api, GROUP, "已解除绑定")
    fresh(session)
    row = chats.find_chat(session, "telegram", GROUP)
    assert row is not None and not row.active and shown(row.deactivated_reason) == "已解除绑定"
    say(api, "/today")
    reply(api, GROUP, "还没有绑定")


def _voice_clip(session: Session, revision_id: int, path: Path) -> None:
    session.add(
        Clip(
            revision_id=revision_id,
            profile=ClipProfile.VOICE,
            state=JobState.DONE,
            path=str(path),
            duration=2.0,
        )
    )
    session.commit()


def test_today_and_latest_post_the_areas_notices_as_text_and_voice(
    bot: TelegramChannel,
    api: FakeBotApi,
    session: Session,
    grid: dict[str, Area],
    make_announcement: Callable[..., Any],
    voice_note: Path,
) -> None:
    # The group is bound to 一组 of 石桥村; a notice for 石桥村 reaches it, one for 柳林村 not.
    chats.bind_chat(session, None, platform="telegram", chat_id=GROUP, area=grid["g1"])
    session.commit()
    say(api, "/today")
    reply(api, GROUP, "没有发给")

    ours = make_announcement("approved", title="石桥村 <防汛> 通知", area_ids=[grid["v1"].id])
    make_announcement("approved", title="柳林村通知", area_ids=[grid["v2"].id])
    _voice_clip(session, ours.approved_revision_id, voice_note)

    say(api, "/today")
    texts = reply(api, GROUP, "【石桥村 &lt;防汛&gt; 通知】")
    voice = wait_until(lambda: [m for m in api.messages_to(GROUP) if m.method == "sendvoice"])
    assert voice[0].duration == 2 and voice[0].caption == "石桥村 &lt;防汛&gt; 通知"
    assert texts[0].text.startswith("<b>") and "各位村民" in texts[0].text
    assert not [m for m in api.messages_to(GROUP) if "柳林村" in m.text]

    say(api, "/latest")
    reply(api, GROUP, "【石桥村 &lt;防汛&gt; 通知】", count=2)
    wait_until(lambda: len([m for m in api.messages_to(GROUP) if m.method == "sendvoice"]) == 2)


def test_latest_without_notices(
    bot: TelegramChannel, api: FakeBotApi, session: Session, grid: dict[str, Area]
) -> None:
    chats.bind_chat(session, None, platform="telegram", chat_id=GROUP, area=grid["g2"])
    session.commit()
    say(api, "/latest")
    reply(api, GROUP, "还没有通知")


@pytest.fixture
def operator_program(
    session: Session,
    grid: dict[str, Area],
    make_user: Callable[..., User],
    bot_settings: Settings,
    clock: Clock,
) -> tuple[User, Program]:
    """An operator of an outlet whose 07:30 program is built; the clock reads 07:35."""
    tz = bot_settings.tz
    day = datetime.now(tz).date()
    clock.at = datetime.combine(day, time(7, 35), tzinfo=tz).astimezone(UTC)
    operator = make_user(Role.OPERATOR, display_name="李广播")
    outlet = Outlet(name="石桥村大喇叭", kind=OutletKind.LOUDSPEAKER, area=grid["v1"])
    outlet.operators.append(operator)
    slot = Slot(outlet=outlet, at=time(7, 30), minutes=10)
    path = bot_settings.data_dir / "programs" / "p.mp3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xfb\x90\x00" * 500)
    program = Program(
        outlet=outlet, slot=slot, day=day, state=JobState.DONE, path=str(path), duration=42.0
    )
    session.add_all([outlet, slot, program])
    session.commit()
    return operator, program


def test_link_then_program_then_played_records_one_receipt(
    bot: TelegramChannel,
    api: FakeBotApi,
    session: Session,
    operator_program: tuple[User, Program],
) -> None:
    operator, program = operator_program
    say(api, "/program", chat=OPERATOR_ID, user=OPERATOR_ID)
    reply(api, OPERATOR_ID, "还没有关联")

    code = chats.create_link_code(session, None, operator)
    session.commit()
    say(api, f"/link {code}", chat=GROUP, user=OPERATOR_ID)
    reply(api, GROUP, "请私聊机器人")
    say(api, f"/link {code}", chat=OPERATOR_ID, user=OPERATOR_ID)
    reply(api, OPERATOR_ID, "已关联大喇叭账号：李广播")

    say(api, "/program", chat=OPERATOR_ID, user=OPERATOR_ID)
    audio = wait_until(lambda: [m for m in api.messages_to(OPERATOR_ID) if m.method == "sendaudio"])
    assert "石桥村大喇叭" in audio[0].caption and audio[0].duration == 42
    assert audio[0].filename and audio[0].filename.endswith(".mp3")
    button = audio[0].reply_markup["inline_keyboard"][0][0]  # type: ignore[index]
    assert button == {"text": "已播放", "callback_data": f"played:{program.id}"}

    # Pressed three times (a double tap, then again later): one receipt.
    operator_user = api.user(OPERATOR_ID)
    for n in range(3):
        api.push_callback(user=operator_user, message=audio[0], data=button["callback_data"])
        wait_until(lambda n=n: len(api.callback_answers) == n + 1)
    answers = [a["text"] for a in api.callback_answers]
    assert answers[0] == "已记录播放，谢谢！"
    assert all("记录过播放" in a for a in answers[1:])
    fresh(session)
    receipts = list(session.scalars(select(Receipt).where(Receipt.program_id == program.id)))
    assert len(receipts) == 1
    assert receipts[0].user_id == operator.id and receipts[0].via == "bot"
    assert not receipts[0].late
    marked = api.messages_to(OPERATOR_ID)[-1].reply_markup
    assert marked is not None
    assert wait_until(
        lambda: (
            [m for m in api.messages_to(OPERATOR_ID) if m.method == "sendaudio"][0].reply_markup[
                "inline_keyboard"
            ][0][0]["text"]  # type: ignore[index]
            == "✓ 已播放"
        )
    )


def test_played_by_someone_else_is_refused(
    bot: TelegramChannel,
    api: FakeBotApi,
    session: Session,
    operator_program: tuple[User, Program],
    make_user: Callable[..., User],
) -> None:
    _operator, program = operator_program
    stranger = make_user(Role.OPERATOR)
    session.add(ChatAccount(user=stranger, platform="telegram", external_id="777"))
    session.commit()
    fake_message = SentMessage(chat_id="777", message_id=1, method="sendaudio", caption="x")
    api.push_callback(user=api.user(777), message=fake_message, data=f"played:{program.id}")
    wait_until(lambda: api.callback_answers)
    assert "不是该广播点的广播员" in api.callback_answers[0]["text"]
    assert api.callback_answers[0]["show_alert"] is True
    fresh(session)
    assert session.scalar(select(Receipt).where(Receipt.program_id == program.id)) is None


def test_migration_and_removal_updates_keep_the_binding_true(
    bot: TelegramChannel, api: FakeBotApi, session: Session, grid: dict[str, Area]
) -> None:
    chats.bind_chat(session, None, platform="telegram", chat_id=-4001, area=grid["v1"])
    chats.bind_chat(session, None, platform="telegram", chat_id=-4002, area=grid["v2"])
    session.commit()
    api.push_migration(-4001, -1004001)
    api.push_bot_removed(-4002, by=api.user(9, "王五"))
    idle(api)

    def settled() -> bool:
        fresh(session)
        moved = chats.find_chat(session, "telegram", -1004001)
        removed = chats.find_chat(session, "telegram", -4002)
        return moved is not None and removed is not None and not removed.active

    wait_until(settled)
    removed = chats.find_chat(session, "telegram", -4002)
    assert removed is not None and "移出" in (removed.deactivated_reason or "")
    assert chats.find_chat(session, "telegram", -4001) is None
    assert session.scalar(select(ChatGroup).where(ChatGroup.chat_id == "-1004001")).active


def test_expired_code_is_refused(
    bot: TelegramChannel, api: FakeBotApi, session: Session, grid: dict[str, Area]
) -> None:
    code = chats.create_binding_code(
        session, None, grid["v1"], now=datetime.now(UTC) - timedelta(days=2)
    )
    session.commit()
    api.set_member(GROUP, ADMIN_ID, "creator")
    say(api, f"/bind {code}", user=ADMIN_ID)
    reply(api, GROUP, "已过期")


def test_today_posts_at_most_five_notices(
    bot: TelegramChannel,
    api: FakeBotApi,
    session: Session,
    grid: dict[str, Area],
    make_announcement: Callable[..., Any],
) -> None:
    chats.bind_chat(session, None, platform="telegram", chat_id=GROUP, area=grid["v1"])
    session.commit()
    for n in range(6):
        make_announcement("approved", title=f"通知{n}", area_ids=[grid["town"].id])
    say(api, "/today")
    reply(api, GROUP, "今天还有 1 条通知")
    assert len([m for m in api.messages_to(GROUP) if m.text.startswith("<b>【通知")]) == 5


def test_a_failing_handler_says_sorry(
    bot: TelegramChannel, api: FakeBotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(chats, "bound_chat", broken)
    say(api, "/today")
    reply(api, GROUP, "抱歉，出了点问题")
