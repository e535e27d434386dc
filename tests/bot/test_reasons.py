"""The Telegram channel's reasons (wait, network, lost answer, voice file) are messages of the
bot's own catalogue, stored as such and read in each reader's language; ``str(exc)`` stays
the Chinese sentence (logs)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask_babel import force_locale

from bot.channel import TelegramChannel
from cms import queue
from cms.channels import ChannelError, Notice, OutcomeUnknown, TemporaryFailure
from cms.services.errors import Message
from tests.fakes.telegram_api import FakeBotApi, Fault

CHINESE = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def _notice(voice: Path | None = None) -> Notice:
    return Notice(
        delivery_id=1,
        chat_id="-1001",
        title="停水通知",
        text="明天上午八点到十二点停水，请提前储水。",
        voice_path=voice,
        voice_duration=2.0 if voice else None,
    )


def _read(app: Flask, exc: ChannelError) -> tuple[str, str, Message]:
    """The reason as stored, then as a Chinese and an English page show it."""
    stored = queue.error_text(exc)
    shown = []
    for lang in ("zh_CN", "en"):
        with app.test_request_context(), force_locale(lang):
            shown.append(str(app.jinja_env.filters["message"](stored)))
    return shown[0], shown[1], Message.loads(stored)


def _raised(kind: type[ChannelError], send: Callable[[], object]) -> ChannelError:
    with pytest.raises(kind) as info:
        send()
    return info.value


def test_a_long_429_reads_in_each_language(
    app: Flask, make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    channel = make_channel(updates="none", max_wait=2.0)
    api.fail(Fault.RETRY_AFTER, retry_after=30, method="sendMessage")
    exc = _raised(TemporaryFailure, lambda: channel.send(_notice(), lambda _ids: None))
    zh, en, stored = _read(app, exc)
    assert stored.msgid == "Telegram 限流，{seconds:.0f} 秒后再试"
    assert zh == str(exc) == "Telegram 限流，30 秒后再试"
    assert en == "Telegram is throttling; trying again in 30 s"


def test_network_trouble_reads_in_each_language(
    app: Flask, channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.fail(Fault.BAD_GATEWAY, times=10, method="sendMessage")
    exc = _raised(TemporaryFailure, lambda: channel.send(_notice(), lambda _ids: None))
    zh, en, stored = _read(app, exc)
    assert zh == str(exc) and zh.startswith("网络错误：")
    assert en.startswith("Network error: ") and en.removeprefix("Network error: ") == (
        zh.removeprefix("网络错误：")  # the library's own words, kept as they are
    )
    assert not CHINESE.search(en)


def test_a_lost_answer_reads_in_each_language(
    app: Flask, channel: TelegramChannel, api: FakeBotApi
) -> None:
    api.fail(Fault.DROP_AFTER, method="sendMessage")
    lost = _raised(OutcomeUnknown, lambda: channel.send(_notice(), lambda _ids: None))
    zh, en, stored = _read(app, lost)
    assert stored.msgid == "Telegram 未应答：{detail}"
    assert zh == str(lost) and zh.startswith("Telegram 未应答：")
    assert en.startswith("Telegram did not answer: ") and not CHINESE.search(en)


def test_a_missing_voice_file_reads_in_each_language(
    app: Flask, channel: TelegramChannel, tmp_path: Path
) -> None:
    exc = _raised(
        TemporaryFailure,
        lambda: channel.send(_notice(voice=tmp_path / "gone.ogg"), lambda _ids: None),
    )
    zh, en, _stored = _read(app, exc)
    assert zh == str(exc) and zh.startswith("语音文件不可用：")
    assert en.startswith("The voice file is unusable: ") and "gone.ogg" in en


def test_a_stopped_bot_reads_in_each_language(
    app: Flask, make_channel: Callable[..., TelegramChannel]
) -> None:
    channel = make_channel(updates="none")
    channel.close()
    exc = _raised(TemporaryFailure, lambda: channel.send(_notice(), lambda _ids: None))
    zh, en, _stored = _read(app, exc)
    assert zh == str(exc) == "Telegram 机器人未运行"
    assert en == "The Telegram bot is not running"
