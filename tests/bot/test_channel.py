"""The Telegram channel against the loopback Bot API: parts, resume, faults, limits."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from telegram.error import InvalidToken

from bot.application import Limits
from bot.channel import RejectedNotice, TelegramChannel, from_settings
from bot.text import tg_len
from cms.channels import (
    ChannelRegistry,
    ChatUnavailable,
    Notice,
    OutcomeUnknown,
    TemporaryFailure,
    load_channels,
)
from cms.settings import Settings
from tests.bot.conftest import wait_until
from tests.fakes.telegram_api import FakeBotApi, Fault
from tests.fakes.telegram_api import Limits as ServerLimits

BODY = "各位村民：本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加。"


def notice(chat_id: str = "-1001", voice: Path | None = None, **kw: object) -> Notice:
    values: dict[str, object] = {"title": "垃圾分类 <从我做起>", "text": BODY}
    values.update(kw)
    return Notice(
        delivery_id=1,
        chat_id=chat_id,
        voice_path=voice,
        voice_duration=2.04 if voice else None,
        **values,  # type: ignore[arg-type]
    )


def test_text_then_voice_note_with_title_duration_and_filename(
    channel: TelegramChannel, api: FakeBotApi, voice_note: Path
) -> None:
    reported: list[list[str]] = []
    result = channel.send(notice(voice=voice_note), reported.append)
    text, voice = api.messages_to("-1001")
    assert text.method == "sendmessage" and text.parse_mode == "HTML"
    assert text.text == f"<b>【垃圾分类 &lt;从我做起&gt;】</b>\n\n{BODY}"
    assert voice.method == "sendvoice"
    assert voice.duration == 2
    assert voice.filename and voice.filename.endswith(".ogg")
    assert voice.file_size == voice_note.stat().st_size
    assert voice.caption == "垃圾分类 &lt;从我做起&gt;"
    assert result.message_ids == ["1", "2"]
    assert result.new_chat_id is None
    assert reported == [["1"], ["1", "2"]]


def test_long_text_is_split_and_each_part_reported(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    reported: list[list[str]] = []
    result = channel.send(notice(text=BODY * 400), reported.append)
    sent = api.messages_to("-1001")
    assert len(sent) == 4 == len(result.message_ids)
    for m in sent:
        assert tg_len(html.unescape(re.sub(r"<[^>]+>", "", m.text))) <= 4096
    assert [len(r) for r in reported] == [1, 2, 3, 4]


def test_resume_skips_parts_already_sent(
    channel: TelegramChannel, api: FakeBotApi, voice_note: Path
) -> None:
    """After a restart only the parts missing from sent_ids go out."""
    result = channel.send(notice(voice=voice_note, sent_ids=("41",)), lambda ids: None)
    sent = api.messages_to("-1001")
    assert [m.method for m in sent] == ["sendvoice"]
    assert result.message_ids == ["41", str(sent[0].message_id)]


def test_a_failing_progress_stops_before_the_next_part(
    channel: TelegramChannel, api: FakeBotApi, voice_note: Path
) -> None:
    def progress(ids: list[str]) -> None:
        raise RuntimeError("database is gone")

    with pytest.raises(RuntimeError, match="database is gone"):
        channel.send(notice(voice=voice_note), progress)
    assert [m.method for m in api.messages_to("-1001")] == ["sendmessage"]


def test_short_429_is_waited_out(channel: TelegramChannel, api: FakeBotApi) -> None:
    api.fail(Fault.RETRY_AFTER, retry_after=1, method="sendMessage")
    started = time.monotonic()
    result = channel.send(notice(), lambda ids: None)
    assert time.monotonic() - started >= 1.0
    assert len(result.message_ids) == 1
    assert len(api.messages_to("-1001")) == 1


def test_long_429_goes_back_to_the_dispatcher_with_retry_after(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    channel = make_channel(updates="none", max_wait=2.0)
    api.fail(Fault.RETRY_AFTER, retry_after=30, method="sendMessage")
    with pytest.raises(TemporaryFailure) as info:
        channel.send(notice(), lambda ids: None)
    assert info.value.retry_after == 30
    assert api.messages_to("-1001") == []


@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.BAD_GATEWAY])
def test_5xx_is_retried_with_backoff(
    channel: TelegramChannel, api: FakeBotApi, fault: Fault
) -> None:
    api.fail(fault, times=2, method="sendMessage")
    channel.send(notice(), lambda ids: None)
    assert len(api.messages_to("-1001")) == 1
    assert api.faults_fired[fault] == 2


def test_persistent_5xx_is_a_temporary_failure(channel: TelegramChannel, api: FakeBotApi) -> None:
    api.fail(Fault.SERVER_ERROR, times=10, method="sendMessage")
    with pytest.raises(TemporaryFailure):
        channel.send(notice(), lambda ids: None)
    assert api.messages_to("-1001") == []


def test_a_lost_answer_is_outcome_unknown_and_not_resent(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    """The documented duplicate case: recorded by Telegram, answer lost, never retried here."""
    api.fail(Fault.DROP_AFTER, method="sendMessage")
    with pytest.raises(OutcomeUnknown):
        channel.send(notice(), lambda ids: None)
    assert len(api.messages_to("-1001")) == 1


def test_a_late_answer_is_outcome_unknown(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    channel = make_channel(updates="none")
    channel.application.bot._request[1]._client.timeout.read = 0.3  # type: ignore[attr-defined]
    api.slow_seconds = 1.0
    api.fail(Fault.SLOW, method="sendMessage")
    with pytest.raises(OutcomeUnknown):
        channel.send(notice(), lambda ids: None)
    assert len(api.messages_to("-1001")) == 1


def test_migrated_group_is_followed_and_reported(
    channel: TelegramChannel, api: FakeBotApi, voice_note: Path
) -> None:
    api.migrate("-1001", -1009990001)
    result = channel.send(notice(voice=voice_note), lambda ids: None)
    assert result.new_chat_id == "-1009990001"
    assert api.messages_to("-1001") == []
    assert [m.method for m in api.messages_to("-1009990001")] == ["sendmessage", "sendvoice"]


def test_kicked_bot_makes_the_chat_unavailable_and_others_still_work(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.kick("-1001")
    with pytest.raises(ChatUnavailable, match="kicked"):
        channel.send(notice("-1001"), lambda ids: None)
    channel.send(notice("-1002"), lambda ids: None)
    assert len(api.messages_to("-1002")) == 1


def test_a_missing_voice_file_is_temporary_and_resumes_after_the_text(
    channel: TelegramChannel, api: FakeBotApi, tmp_path: Path, voice_note: Path
) -> None:
    reported: list[list[str]] = []
    with pytest.raises(TemporaryFailure, match="语音文件"):
        channel.send(notice(voice=tmp_path / "gone.ogg"), reported.append)
    assert reported == [["1"]]
    result = channel.send(notice(voice=voice_note, sent_ids=tuple(reported[-1])), reported.append)
    assert [m.method for m in api.messages_to("-1001")] == ["sendmessage", "sendvoice"]
    assert result.message_ids == ["1", "2"]


def test_a_message_telegram_refuses_is_rejected_not_retried(
    channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.fail(Fault.BAD_REQUEST, method="sendMessage")
    with pytest.raises(RejectedNotice, match="parse entities"):
        channel.send(notice(), lambda ids: None)
    assert api.messages_to("-1001") == []
    assert [m for m, _ in api.requests].count("sendmessage") == 1


def test_overall_flood_limit_is_respected(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    """Server limit 20/s (Telegram's 30/s, scaled down): 60 sends to 60 groups keep to it."""
    limits = ServerLimits(overall_per_second=20)
    api.set_limits(limits)
    channel = make_channel(updates="none", limits=Limits.below(20, 20))
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: channel.send(notice(f"-{2000 + i}"), lambda ids: None), range(60)))
    elapsed = time.monotonic() - started
    assert api.sent_count() == 60
    assert api.refused <= 1
    bound = limits.bound_seconds(60, 1)
    assert bound == pytest.approx(2.0)
    assert bound * 0.95 <= elapsed <= bound * 3


def test_group_flood_limit_holds_back_a_busy_group(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    """Per-group limit 4 per second (20/min, scaled): 8 parts to one group take about 1 s."""
    limits = ServerLimits(overall_per_second=0, group_max=4, group_period=1)
    api.set_limits(limits)
    channel = make_channel(updates="none", limits=Limits.below(10_000, 4, 1))
    started = time.monotonic()
    result = channel.send(notice(text="一句话。" * 8000), lambda ids: None)
    elapsed = time.monotonic() - started
    assert len(result.message_ids) == len(api.messages_to("-1001")) == 8
    assert api.refused <= 1
    assert elapsed >= limits.bound_seconds(8, 8) * 0.9


def test_telegram_out_of_reach_at_start_up_is_retried_in_the_background(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    api.fail(Fault.BAD_GATEWAY, times=10_000, method="getMe")
    channel = make_channel(updates="none", start_timeout=0.3, start_retry=0.1)
    assert not channel.running
    with pytest.raises(TemporaryFailure):
        channel.send(notice(), lambda ids: None)
    api.clear_faults()
    wait_until(lambda: channel.running)
    assert channel.send(notice(), lambda ids: None).message_ids == ["1"]


def test_a_rejected_token_fails_at_start(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    with pytest.raises(InvalidToken):
        make_channel(updates="none", token="999:not-the-token")


def test_from_settings_without_token_is_none(settings: Settings) -> None:
    assert not settings.plugin_env("DALABA_TELEGRAM_TOKEN")
    assert from_settings(settings) is None


def test_entry_point_registers_a_running_channel(bot_settings: Settings, api: FakeBotApi) -> None:
    registry = load_channels(bot_settings, ChannelRegistry())
    channel = registry.get("telegram")
    assert isinstance(channel, TelegramChannel)
    try:
        channel.send(notice("-1005"), lambda ids: None)
        assert len(api.messages_to("-1005")) == 1
        assert {c["command"] for c in api.commands} >= {"today", "bind", "program"}
    finally:
        channel.close()
    with pytest.raises(TemporaryFailure):
        channel.send(notice("-1005"), lambda ids: None)
