"""DingTalk and Feishu robots end to end: signatures, throttling, security settings, limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session

from cms import queue
from cms.channels import Notice
from cms.models import ChatGroup, Delivery, DeliveryState
from robots.base import Window
from robots.dingtalk import DingTalkChannel
from robots.feishu import FeishuChannel
from tests.bot.conftest import fresh
from tests.fakes.dingtalk_api import FakeDingTalk
from tests.fakes.feishu_api import FakeFeishu
from tests.fakes.robot_base import RobotFault
from tests.helpers import shown
from tests.robots.conftest import Dispatcher

D_TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
D_OTHER = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
D_SECRET = "SEC0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd"
F_TOKEN = "2b9f5e1a-3c4d-4e5f-8a9b-0c1d2e3f4a5b"
F_OTHER = "7c8d9e0f-1a2b-4c3d-9e8f-7a6b5c4d3e2f"
F_SECRET = "q0bMkS8kCcPzKXgd2xHG5e"
LINK = "https://dalaba.example/s/Zx9"


@pytest.fixture
def ding() -> Iterator[FakeDingTalk]:
    with FakeDingTalk() as server:
        yield server


@pytest.fixture
def lark() -> Iterator[FakeFeishu]:
    with FakeFeishu() as server:
        yield server


def fast(cls: type[Any], **options: Any) -> Any:
    options.setdefault("throttle_wait", 0.2)
    options.setdefault("backoff", 0.05)
    options.setdefault("max_wait", 5.0)
    return cls(**options)


def _delivery(session: Session, delivery_id: int) -> Delivery:
    fresh(session)
    delivery = session.get(Delivery, delivery_id)
    assert delivery is not None
    return delivery


# --- DingTalk ------------------------------------------------------------------------------------


def test_dingtalk_signed_markdown_arrives_once_through_throttling(
    ding: FakeDingTalk,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    robot = bind("dingtalk", ding.webhook(D_TOKEN, secret=D_SECRET), secret=D_SECRET)
    ding.fail(RobotFault.THROTTLE, times=2, robot=D_TOKEN)
    rev = notice()
    d = dispatcher(fast(DingTalkChannel))
    [delivery_id] = d.queue(session, rev, [robot.id])
    assert d.run() == ["sent"]
    [m] = ding.messages_to(D_TOKEN)
    assert m.msgtype == "markdown"
    assert m.body["markdown"]["title"] == "防汛紧急通知"
    assert m.body["markdown"]["text"].startswith("#### 防汛紧急通知\n\n各位村民")
    assert ding.faults_fired[RobotFault.THROTTLE] == 2
    assert _delivery(session, delivery_id).state is DeliveryState.SENT
    assert D_SECRET not in caplog.text and D_TOKEN not in caplog.text


def test_dingtalk_too_fast_then_redirects_waits_ten_minutes_and_never_fails(
    ding: FakeDingTalk,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    """130101, then HTTP 302 to a DingTalk page while the robot is blocked: nothing was
    posted each time; the delivery waits 10 minutes and tries again, however often."""
    robot = bind("dingtalk", ding.webhook(D_TOKEN))
    ding.fail(RobotFault.TOO_FAST, robot=D_TOKEN)
    rev = notice()
    d = dispatcher(fast(DingTalkChannel))
    [delivery_id] = d.queue(session, rev, [robot.id])
    assert d.run(passes=1) == []  # waits for a voice clip first, then goes without
    before = d.clock.now()
    assert d.run(passes=1) == ["pending"]
    waiting = _delivery(session, delivery_id)
    assert "130101" in shown(waiting.last_error) and "10 分钟" in shown(waiting.last_error)
    assert waiting.next_attempt_at is not None
    assert waiting.next_attempt_at.replace(tzinfo=before.tzinfo) - before >= timedelta(minutes=10)
    # Blocked: every try meets the redirect; more tries than any failure limit.
    outcomes = d.run(passes=queue.MAX_ATTEMPTS + 2)
    assert set(outcomes) == {"pending"}, outcomes
    assert ding.redirects == queue.MAX_ATTEMPTS + 2
    blocked = _delivery(session, delivery_id)
    assert blocked.state is DeliveryState.PENDING and "302" in shown(blocked.last_error)
    assert ding.messages_to(D_TOKEN) == []
    ding.unblock(D_TOKEN)
    assert d.run() == ["sent"]
    assert len(ding.messages_to(D_TOKEN)) == 1


def test_dingtalk_link_to_the_share_page(ding: FakeDingTalk) -> None:
    DingTalkChannel().send(
        Notice(
            1,
            "x",
            "停电通知",
            "今晚停电。",
            link=LINK,
            credentials={"webhook": ding.webhook(D_TOKEN)},
        ),
        lambda ids: None,
    )
    [m] = ding.messages_to(D_TOKEN)
    assert m.body["markdown"]["text"].endswith(f"[收听语音]({LINK})")


def test_dingtalk_wrong_secret_fails_at_once_and_others_are_unaffected(
    ding: FakeDingTalk,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    wrong = "SEC" + "f" * 64
    bad = bind("dingtalk", ding.webhook(D_TOKEN, secret=D_SECRET), secret=wrong)
    good = bind("dingtalk", ding.webhook(D_OTHER))
    rev = notice()
    d = dispatcher(fast(DingTalkChannel))
    bad_id, good_id = d.queue(session, rev, [bad.id, good.id])
    assert d.run() == ["failed", "sent"]
    failed = _delivery(session, bad_id)
    assert failed.attempts <= 1  # failed at once, no retries
    reason = shown(failed.last_error)
    assert "加签" in reason and "sign not match" in reason
    for stored in (reason, failed.last_error or ""):
        assert wrong not in stored and D_TOKEN not in stored
    chat = session.get(ChatGroup, bad.id)
    assert chat is not None and chat.active  # a setting to fix, not a dead robot
    assert _delivery(session, good_id).state is DeliveryState.SENT
    assert ding.messages_to(D_TOKEN) == []


def test_dingtalk_keyword_and_deleted_robot(
    ding: FakeDingTalk,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    keyword = bind("dingtalk", ding.webhook(D_TOKEN, keyword="大喇叭"))
    gone = bind("dingtalk", ding.webhook(D_OTHER))
    ding.remove_robot(D_OTHER)
    rev = notice()
    d = dispatcher(fast(DingTalkChannel))
    kw_id, gone_id = d.queue(session, rev, [keyword.id, gone.id])
    d.run()
    assert "自定义关键词" in shown(_delivery(session, kw_id).last_error)
    chat = session.get(ChatGroup, gone.id)
    assert chat is not None and not chat.active
    assert "300001" in shown(chat.deactivated_reason)


def test_dingtalk_limit_is_kept_server_side(ding: FakeDingTalk) -> None:
    ding.windows = ((4, 1.0),)
    channel = fast(DingTalkChannel, windows=[Window(4, 1.0)])
    url = ding.webhook(D_TOKEN)
    for i in range(9):
        channel.send(
            Notice(i, "x", "通知", f"第{i}条。", credentials={"webhook": url}), lambda ids: None
        )
    assert ding.refused == 0 and len(ding.messages_to(D_TOKEN)) == 9
    assert ding.max_in_window(D_TOKEN, 4, 1.0) <= 4


def test_unexpected_throttling_is_asked_again_soon_doubling_up_to_one_window(
    ding: FakeDingTalk,
) -> None:
    # Our count says there is room, the platform says "too fast" (another tool posts to the
    # same webhook): pause throttle_wait, then twice that, ..., never more than one window.
    channel = fast(DingTalkChannel, windows=[Window(20, 5.0)], throttle_wait=0.2)
    url = ding.webhook(D_TOKEN)
    ding.fail(RobotFault.THROTTLE, times=3, robot=D_TOKEN)
    started = time.monotonic()
    channel.send(Notice(1, "x", "通知", "第一条。", credentials={"webhook": url}), lambda ids: None)
    assert 0.2 + 0.4 + 0.8 <= time.monotonic() - started < 2.2
    assert ding.faults_fired[RobotFault.THROTTLE] == 3
    # The refused requests do not count against the robot's window: 19 more go at once.
    started = time.monotonic()
    for i in range(19):
        channel.send(
            Notice(2 + i, "x", "通知", f"第{i}条。", credentials={"webhook": url}), lambda ids: None
        )
    assert time.monotonic() - started < 3.0
    assert ding.refused == 0 and len(ding.messages_to(D_TOKEN)) == 20

    capped = fast(DingTalkChannel, windows=[Window(20, 0.5)], throttle_wait=0.4)
    other = ding.webhook(D_OTHER)
    ding.fail(RobotFault.THROTTLE, times=2, robot=D_OTHER)
    started = time.monotonic()
    capped.send(
        Notice(30, "y", "通知", "第一条。", credentials={"webhook": other}), lambda ids: None
    )
    assert 0.4 + 0.5 <= time.monotonic() - started < 0.4 + 0.8  # not 0.4 + 0.8
    assert len(ding.messages_to(D_OTHER)) == 1


def test_first_throttle_pause_is_a_twentieth_of_the_longest_window() -> None:
    assert DingTalkChannel().throttle_wait == 3.0
    assert FeishuChannel().throttle_wait == 3.0  # 100 a minute is the longer window
    assert DingTalkChannel(windows=[Window(20, 6.0)]).throttle_wait == pytest.approx(0.3)
    assert DingTalkChannel(throttle_wait=7.0).throttle_wait == 7.0


# --- Feishu --------------------------------------------------------------------------------------


def test_feishu_signed_post_with_listen_link_arrives_once_through_throttling(
    lark: FakeFeishu,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    robot = bind("feishu", lark.webhook(F_TOKEN, secret=F_SECRET), secret=F_SECRET)
    lark.fail(RobotFault.THROTTLE, robot=F_TOKEN)
    rev = notice()
    d = dispatcher(fast(FeishuChannel))
    [delivery_id] = d.queue(session, rev, [robot.id])
    assert d.run() == ["sent"]
    [m] = lark.messages_to(F_TOKEN)
    post = m.body["content"]["post"]["zh_cn"]
    assert post["title"] == "防汛紧急通知"
    assert post["content"][0][0]["text"].startswith("各位村民")
    assert _delivery(session, delivery_id).state is DeliveryState.SENT
    FeishuChannel().send(
        Notice(
            2,
            robot.chat_id,
            "停电",
            "今晚停电。",
            link=LINK,
            credentials=robot.credentials,
        ),
        lambda ids: None,
    )
    assert lark.messages_to(F_TOKEN)[-1].body["content"]["post"]["zh_cn"]["content"][-1] == [
        {"tag": "a", "text": "收听", "href": LINK}
    ]


def test_feishu_wrong_secret_fails_with_a_clear_reason(
    lark: FakeFeishu,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    bad = bind("feishu", lark.webhook(F_TOKEN, secret=F_SECRET), secret="WrongSecret123")
    good = bind("feishu", lark.webhook(F_OTHER))
    rev = notice()
    d = dispatcher(fast(FeishuChannel))
    bad_id, good_id = d.queue(session, rev, [bad.id, good.id])
    assert d.run() == ["failed", "sent"]
    stored = _delivery(session, bad_id).last_error or ""
    reason = shown(stored)
    assert "签名校验" in reason and "19021" in reason and "WrongSecret123" not in reason
    assert "WrongSecret123" not in stored


def test_feishu_long_text_stays_under_20_kb_and_dead_bot_deactivates(
    lark: FakeFeishu,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    body = "请各户在本周内完成医保缴费，逾期将影响报销。" * 400  # about 26 KB
    robot = bind("feishu", lark.webhook(F_TOKEN))
    gone = bind("feishu", lark.webhook(F_OTHER))
    lark.remove_robot(F_OTHER)
    rev = notice(body=body)
    d = dispatcher(fast(FeishuChannel))
    d.queue(session, rev, [robot.id, gone.id])
    d.run()
    got = lark.messages_to(F_TOKEN)
    assert len(got) == 2 and all(m.size < 20 * 1024 for m in got)
    fresh(session)
    chat = session.get(ChatGroup, gone.id)
    assert chat is not None and not chat.active and "19001" in shown(chat.deactivated_reason)


def test_feishu_both_limits_are_kept(lark: FakeFeishu) -> None:
    lark.windows = ((5, 1.0), (8, 3.0))
    channel = fast(FeishuChannel, windows=[Window(5, 1.0), Window(8, 3.0)])
    url = lark.webhook(F_TOKEN)
    for i in range(10):
        channel.send(
            Notice(i, "x", "通知", f"第{i}条。", credentials={"webhook": url}), lambda ids: None
        )
    assert lark.refused == 0 and len(lark.messages_to(F_TOKEN)) == 10
    assert lark.max_in_window(F_TOKEN, 5, 1.0) <= 5
    assert lark.max_in_window(F_TOKEN, 8, 3.0) <= 8


def test_feishu_5xx_and_dropped_answers(lark: FakeFeishu) -> None:
    from cms.channels import OutcomeUnknown

    url = lark.webhook(F_TOKEN)
    lark.fail(RobotFault.SERVER_ERROR, times=2)
    fast(FeishuChannel).send(
        Notice(1, "x", "通知", "正文。", credentials={"webhook": url}), lambda ids: None
    )
    assert len(lark.messages_to(F_TOKEN)) == 1
    lark.fail(RobotFault.DROP_AFTER)
    with pytest.raises(OutcomeUnknown) as info:
        fast(FeishuChannel).send(
            Notice(2, "x", "通知", "正文。", credentials={"webhook": url}), lambda ids: None
        )
    assert F_TOKEN not in str(info.value)
    assert len(lark.messages_to(F_TOKEN)) == 2


@pytest.mark.parametrize(
    ("answer", "waits"),
    [
        ({"code": 11232, "msg": "frequency limited"}, True),  # Feishu's flow control
        ({"code": 9499, "msg": "too many request"}, True),
        ({"code": 9499, "msg": "Bad Request"}, False),  # a malformed message never improves
    ],
)
def test_feishu_flow_control_answers_are_waited_out(answer: dict[str, Any], waits: bool) -> None:
    from cms.channels import PermanentFailure
    from robots import feishu
    from robots.base import Throttled

    with pytest.raises(Throttled if waits else PermanentFailure):
        feishu._check(answer)


def test_feishu_splits_on_the_json_bodys_bytes_not_the_texts(lark: FakeFeishu) -> None:
    """Short lines with quotes weigh far more as JSON than as text: 15 KB of text is a
    body of well over 20 KB. Each post is weighed as sent; nothing is refused or lost."""
    lines = [f'"{i}"\\' for i in range(2500)]  # about 20 KB of text, three times that in JSON
    text = "\n".join(lines)
    url = lark.webhook(F_TOKEN, secret=F_SECRET)
    FeishuChannel().send(
        Notice(1, "x", "名单", text, link=LINK, credentials={"webhook": url, "secret": F_SECRET}),
        lambda ids: None,
    )
    got = lark.messages_to(F_TOKEN)
    assert len(got) >= 4 and all(m.size < 20 * 1024 for m in got)
    sent = [
        row[0]["text"]
        for m in got
        for row in m.body["content"]["post"]["zh_cn"]["content"]
        if row[0]["tag"] == "text"
    ]
    assert sent == lines
    assert got[-1].body["content"]["post"]["zh_cn"]["content"][-1][0]["href"] == LINK


def test_feishu_names_what_is_too_long() -> None:
    from cms.channels import PermanentFailure

    huge = "https://dalaba.example/s/" + "x" * 21_000
    with pytest.raises(PermanentFailure) as exc:
        FeishuChannel().plan(Notice(1, "x", "停电", "今晚停电。", link=huge))
    assert "20 KB" in str(exc.value) and "分享链接" in str(exc.value)
