"""Why a robot did not post, as stored and read: a message in the reader's language.

The robots' sentences are message ids of their own catalogue with the platform's code and
words as plain parameters; ``str(exc)`` (logs, the bind form's test message) stays the
Chinese sentence, and a plain-text reason (older rows, a platform's bare answer) still reads.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask_babel import force_locale

from cms import queue
from cms.channels import (
    ChannelError,
    ChatUnavailable,
    Notice,
    OutcomeUnknown,
    PermanentFailure,
    RateLimited,
    TemporaryFailure,
)
from cms.services.errors import Message
from robots.base import Window
from robots.wecom import WeComChannel
from tests.fakes.robot_base import RobotFault
from tests.fakes.wecom_api import FakeWeCom

KEY = "5f0e2a7c-reasons-4bc4-97a0-0ec2sifa5aaa"
CJK = ("\u4e00", "\u9fff")


@pytest.fixture
def api() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server


@pytest.fixture
def read(app: Flask) -> Callable[[str, str], str]:
    """A stored reason as a page in ``lang`` shows it (the ``message`` filter)."""

    def render(stored: str, lang: str) -> str:
        with app.test_request_context(), force_locale(lang):
            return str(app.jinja_env.filters["message"](stored))

    return render


def _failure(exc_type: type[ChannelError], send: Callable[[], Any]) -> ChannelError:
    with pytest.raises(exc_type) as info:
        send()
    return info.value


def _notice(webhook: str) -> Notice:
    return Notice(1, "robot-1", "停水通知", "明天上午停水。", credentials={"webhook": webhook})


def _chinese(text: str) -> bool:
    return any(CJK[0] <= ch <= CJK[1] for ch in text)


def test_a_refusal_is_stored_as_a_message_and_read_in_each_language(
    api: FakeWeCom, read: Callable[[str, str], str]
) -> None:
    webhook = api.webhook(KEY)
    api.remove_robot(KEY)  # 93000 from now on
    exc = _failure(
        ChatUnavailable, lambda: WeComChannel().send(_notice(webhook), lambda _ids: None)
    )
    stored = queue.error_text(exc)
    message = Message.loads(stored)
    assert message.msgid == "企业微信机器人 webhook 已失效或被删除（{code}：{message}）"
    assert message.params["code"] == 93000  # the platform's code and words stay as they are
    zh = read(stored, "zh_CN")
    assert zh == str(exc) and zh.startswith("企业微信机器人 webhook 已失效或被删除（93000：")
    en = read(stored, "en")
    assert en.startswith("The WeCom robot's webhook is no longer valid or was removed (93000: ")
    assert not _chinese(en)


def test_the_robots_own_limit_and_the_platforms_throttling_read_in_each_language(
    api: FakeWeCom, read: Callable[[str, str], str]
) -> None:
    # Our own window: one message a minute, and a send may wait 0.2 s at most.
    wecom = WeComChannel(windows=[Window(1, 60.0)], max_wait=0.2)
    wecom.send(_notice(api.webhook(KEY)), lambda _ids: None)
    full = _failure(RateLimited, lambda: wecom.send(_notice(api.webhook(KEY)), lambda _ids: None))
    stored = queue.error_text(full)
    assert read(stored, "zh_CN") == str(full)
    assert "企业微信机器人每分钟消息数已达上限，" in str(full) and " 秒后再发" in str(full)
    en = read(stored, "en")
    assert en.startswith("The WeCom robot has reached its messages-per-minute limit; sending again")
    assert not _chinese(en)

    # The platform's "too fast" (45009) past the longest pause allowed.
    api.fail(RobotFault.THROTTLE, times=5, robot="other-robot")
    slow = WeComChannel(throttle_wait=5.0, max_wait=1.0)
    throttled = _failure(
        RateLimited, lambda: slow.send(_notice(api.webhook("other-robot")), lambda _ids: None)
    )
    stored = queue.error_text(throttled)
    assert (
        read(stored, "zh_CN")
        == str(throttled)
        == ("企业微信限流：45009 api freq out of limit, hint: [fake]，5 秒后再试")
    )
    assert read(stored, "en") == (
        "WeCom is throttling: 45009 api freq out of limit, hint: [fake]; trying again in 5 s"
    )


def test_network_trouble_reads_in_each_language(
    api: FakeWeCom, read: Callable[[str, str], str]
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    closed = f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={KEY}"
    unreached = _failure(
        TemporaryFailure,
        lambda: WeComChannel(backoff=0.01).send(_notice(closed), lambda _ids: None),
    )
    stored = queue.error_text(unreached)
    assert (
        read(stored, "zh_CN")
        == str(unreached)
        == ("没能连上平台：网络不通或地址无法访问，请检查这台电脑的网络")
    )
    assert read(stored, "en") == (
        "Could not reach the platform: no network, or the address cannot be reached; "
        "check this computer's network"
    )

    api.fail(RobotFault.DROP_AFTER, robot=KEY)
    lost = _failure(
        OutcomeUnknown, lambda: WeComChannel().send(_notice(api.webhook(KEY)), lambda _ids: None)
    )
    stored = queue.error_text(lost)
    assert read(stored, "zh_CN") == str(lost) == "连接在平台应答前断开了，消息可能已送达"
    assert read(stored, "en") == (
        "The connection broke before the platform answered; the message may have been delivered"
    )
    assert KEY not in stored


def test_a_secret_in_a_platforms_words_is_scrubbed_from_the_stored_message(
    api: FakeWeCom,
) -> None:
    """The platform's own words are a parameter: redacted like the sentence around them."""
    api.fail(RobotFault.SERVER_ERROR, times=10, robot=KEY)
    exc = _failure(
        TemporaryFailure,
        lambda: WeComChannel(backoff=0.01, max_attempts=2).send(
            _notice(api.webhook(KEY)), lambda _ids: None
        ),
    )
    stored = queue.error_text(exc)
    assert "502" in Message.loads(stored).render() and KEY not in stored


def test_plain_text_reasons_and_long_platform_words_still_work(
    read: Callable[[str, str], str],
) -> None:
    plain = PermanentFailure("bot was kicked from the group chat")
    assert str(plain) == "bot was kicked from the group chat"
    stored = queue.error_text(plain)
    assert read(stored, "en") == read(stored, "zh_CN") == "bot was kicked from the group chat"
    # A platform's long answer is cut, the sentence around it kept whole.
    long_words = Message("钉钉拒绝了消息（{code}：{message}）", {"code": 1, "message": "x" * 5000})
    message = queue.error_message(PermanentFailure(long_words), limit=300)
    assert message.msgid == long_words.msgid and message.params["message"] == "x" * 300
    old = "平台拒收：机器人已被移出群"  # a row stored before reasons were messages
    assert read(old, "zh_CN") == old
