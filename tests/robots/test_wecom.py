"""WeCom group robots end to end: the real dispatcher and client against the loopback API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from cms.channels import Notice, OutcomeUnknown, PermanentFailure
from cms.models import ChatGroup, Delivery, DeliveryState
from robots.base import Window
from robots.wecom import TEXT_BYTES, WeComChannel
from tests.bot.conftest import fresh
from tests.fakes.robot_base import RobotFault, amr_seconds
from tests.fakes.wecom_api import FakeWeCom
from tests.helpers import shown
from tests.robots.conftest import Dispatcher

KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
OTHER = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
LONG_BODY = "各位村民：今年汛期来得早，请大家注意防范。" * 80  # about 5,000 bytes


@pytest.fixture
def api() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server


def channel(**options: Any) -> WeComChannel:
    options.setdefault("throttle_wait", 0.2)
    options.setdefault("backoff", 0.05)
    options.setdefault("max_wait", 5.0)
    return WeComChannel(**options)


def _state(session: Session, delivery_id: int) -> Delivery:
    fresh(session)
    delivery = session.get(Delivery, delivery_id)
    assert delivery is not None
    return delivery


def test_text_and_voice_arrive_once_through_a_throttling_answer(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
    short_voice: Path,
) -> None:
    robot = bind("wecom", api.webhook(KEY), title="石桥村一组")
    rev = notice(voice=short_voice, duration=3.0)
    d = dispatcher(channel())
    [delivery_id] = d.queue(session, rev, [robot.id])
    api.fail(RobotFault.THROTTLE, robot=KEY, kind="send")
    assert d.run() == ["sent"]
    got = api.messages_to(KEY)
    # An approved notice has a share page: the text goes as markdown with its link.
    assert [m.msgtype for m in got] == ["markdown", "voice"]
    content = got[0].body["markdown"]["content"]
    assert content.startswith("**防汛紧急通知**\n") and "/s/" in content
    assert api.faults_fired[RobotFault.THROTTLE] == 1
    [upload] = api.uploads
    assert upload["type"] == "voice" and upload["filename"].endswith(".amr")
    assert 2.5 <= upload["seconds"] <= 3.5  # AMR-NB frames of 20 ms
    delivery = _state(session, delivery_id)
    assert delivery.state is DeliveryState.SENT
    assert delivery.message_ids == ["markdown-1", "voice-2"]


def test_long_text_splits_at_sentence_ends_and_long_clip_goes_as_mp3_file(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
    long_voice: Path,
) -> None:
    robot = bind("wecom", api.webhook(KEY))
    rev = notice(body=LONG_BODY, voice=long_voice, duration=70.0, shared=False)
    d = dispatcher(channel())
    d.queue(session, rev, [robot.id])
    assert d.run() == ["sent"]
    got = api.messages_to(KEY)
    texts = [m.body["text"]["content"] for m in got if m.msgtype == "text"]
    assert len(texts) == 3
    assert all(len(t.encode()) <= TEXT_BYTES for t in texts)
    signature = "\n\n清水镇宣传办"  # the chat's township signs the post
    assert all(t.endswith("。") for t in texts[:-1]) and texts[-1].endswith("。" + signature)
    assert "".join(texts).replace("【防汛紧急通知】\n", "") == LONG_BODY + signature
    assert got[-1].msgtype == "file"
    [upload] = api.uploads
    assert upload["type"] == "file" and upload["filename"].endswith(".mp3")


def test_markdown_with_the_share_link_when_the_notice_has_one(api: FakeWeCom) -> None:
    sent = WeComChannel().send(
        Notice(
            delivery_id=1,
            chat_id="x",
            title="停水通知",
            text="明天上午停水。请提前储水。",
            link="https://dalaba.example/s/abc",
            credentials={"webhook": api.webhook(KEY)},
        ),
        lambda ids: None,
    )
    assert sent.message_ids == ["markdown-1"]
    [m] = api.messages_to(KEY)
    content = m.body["markdown"]["content"]
    assert content.startswith("**停水通知**\n") and content.endswith(
        "(https://dalaba.example/s/abc)"
    )


def test_a_removed_robot_deactivates_the_chat_with_the_reason(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    dead = bind("wecom", api.webhook(KEY))
    alive = bind("wecom", api.webhook(OTHER))
    api.remove_robot(KEY)
    rev = notice()
    d = dispatcher(channel())
    dead_id, alive_id = d.queue(session, rev, [dead.id, alive.id])
    d.run()
    fresh(session)
    assert _state(session, dead_id).state is DeliveryState.FAILED
    chat = session.get(ChatGroup, dead.id)
    assert chat is not None and not chat.active
    assert "93000" in shown(chat.deactivated_reason) and "已失效" in shown(chat.deactivated_reason)
    assert KEY not in (chat.deactivated_reason or "")
    assert _state(session, alive_id).state is DeliveryState.SENT
    assert len(api.messages_to(OTHER)) == 1


def test_other_errcodes_fail_at_once_with_the_errmsg(api: FakeWeCom) -> None:
    long_title = "标" * 1000  # 3,000 bytes: WeCom refuses it (40058), no retries help
    with pytest.raises(PermanentFailure, match="40058"):
        WeComChannel().send(
            Notice(1, "x", long_title, "正文。", credentials={"webhook": api.webhook(KEY)}),
            lambda ids: None,
        )
    assert api.messages_to(KEY) == []


def test_lost_answers_are_uncertain_and_never_resent(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    a = bind("wecom", api.webhook(KEY))
    b = bind("wecom", api.webhook(OTHER))
    api.fail(RobotFault.DROP_AFTER, robot=KEY)
    api.fail(RobotFault.GARBAGE, robot=OTHER)
    rev = notice()
    d = dispatcher(channel())
    ids = d.queue(session, rev, [a.id, b.id])
    assert d.run() == ["uncertain", "uncertain"]
    assert len(api.messages_to(KEY)) == 1 and len(api.messages_to(OTHER)) == 1
    assert all(_state(session, i).state is DeliveryState.UNCERTAIN for i in ids)


def test_upload_faults_are_retried_and_the_notice_arrives_once(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
    short_voice: Path,
) -> None:
    robot = bind("wecom", api.webhook(KEY))
    api.fail(RobotFault.SERVER_ERROR, times=3, robot=KEY, kind="upload")  # > max_attempts
    api.fail(RobotFault.DROP_AFTER, robot=KEY, kind="upload")  # an upload posts nothing
    api.fail(RobotFault.GARBAGE, robot=KEY, kind="upload")
    rev = notice(voice=short_voice, duration=3.0, shared=False)
    d = dispatcher(channel())
    [delivery_id] = d.queue(session, rev, [robot.id])
    # The text goes out; the voice upload fails three times (back to the queue), then
    # a lost and a garbled upload answer are tried again at once.
    assert d.run() == ["pending", "sent"]
    assert [m.msgtype for m in api.messages_to(KEY)] == ["text", "voice"]
    assert len(api.uploads) == 3  # the dropped, the garbled and the accepted one
    assert _state(session, delivery_id).message_ids == ["text-1", "voice-2"]


def test_a_connection_dropped_before_recording_is_uncertain_too(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
) -> None:
    # The request was written; the client cannot tell whether the platform acted on it.
    robot = bind("wecom", api.webhook(KEY))
    api.fail(RobotFault.DROP_BEFORE, robot=KEY, kind="send")
    rev = notice()
    d = dispatcher(channel())
    [delivery_id] = d.queue(session, rev, [robot.id])
    assert d.run() == ["uncertain"]
    assert api.messages_to(KEY) == []
    assert "可能已送达" in shown(_state(session, delivery_id).last_error)


def test_the_limit_is_kept_per_robot_and_never_delays_another(api: FakeWeCom) -> None:
    import threading
    import time

    api.windows = ((3, 1.0),)
    wecom = channel(windows=[Window(3, 1.0)])
    times: dict[str, float] = {}

    def post(key: str, n: int) -> None:
        for i in range(n):
            wecom.send(
                Notice(i, key, "通知", f"第{i}条。", credentials={"webhook": api.webhook(key)}),
                lambda ids: None,
            )
        times[key] = time.monotonic() - start

    start = time.monotonic()
    busy = threading.Thread(target=post, args=(KEY, 7))
    busy.start()
    post(OTHER, 2)
    busy.join()
    assert api.refused == 0
    assert api.max_in_window(KEY, 3, 1.0) <= 3
    assert times[KEY] >= 2.0  # 7 messages at 3 a second
    assert times[OTHER] < 0.9  # not held up by the busy robot
    assert [m.body["text"]["content"][-3:] for m in api.messages_to(KEY)] == [
        f"第{i}条。"[-3:] for i in range(7)
    ]


def test_secret_key_never_in_logs_or_errors(
    api: FakeWeCom,
    bind: Callable[..., ChatGroup],
    notice: Callable[..., int],
    dispatcher: Callable[..., Dispatcher],
    session: Session,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    robot = bind("wecom", api.webhook(KEY))
    api.fail(RobotFault.SERVER_ERROR, times=10, robot=KEY)
    rev = notice()
    d = dispatcher(channel(max_attempts=2))
    [delivery_id] = d.queue(session, rev, [robot.id])
    d.run(passes=2)
    delivery = _state(session, delivery_id)
    assert delivery.last_error and "502" in shown(delivery.last_error)
    assert KEY not in delivery.last_error and KEY not in shown(delivery.last_error)
    assert "HTTP Request" in caplog.text  # httpx logged its requests, key hidden
    assert KEY not in caplog.text


def test_outcome_unknown_is_redacted(api: FakeWeCom) -> None:
    api.fail(RobotFault.DROP_AFTER)
    with pytest.raises(OutcomeUnknown) as info:
        WeComChannel().send(
            Notice(1, "x", "t", "正文。", credentials={"webhook": api.webhook(KEY)}),
            lambda ids: None,
        )
    assert KEY not in str(info.value)
    assert amr_seconds(b"not amr") is None


def test_the_fake_refuses_bad_voice_uploads_as_wecom_does(api: FakeWeCom, long_voice: Path) -> None:
    import httpx

    from robots.wecom import to_amr, upload_url

    url = upload_url(api.webhook(KEY), "voice")

    def upload(data: bytes) -> dict[str, Any]:
        return httpx.post(url, files={"media": ("v.amr", data, "audio/amr")}).json()

    assert upload(b"OggS not amr")["errcode"] == 40004
    assert upload(b"#!AMR\n" + b"\x3c" + b"\0" * (3 * 1024 * 1024))["errcode"] == 40006
    assert upload(to_amr(long_voice))["errcode"] == 40005  # 70 s > 60 s
    mp3 = httpx.post(
        upload_url(api.webhook(KEY), "file"), files={"media": ("a.mp3", b"RIFF....", "audio/mpeg")}
    ).json()
    assert mp3["errcode"] == 40005
    assert api.uploads == []


def test_a_clip_is_converted_once_for_all_robots_and_again_when_it_changes(
    api: FakeWeCom,
    short_voice: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import shutil

    import robots.wecom as wecom

    clip = tmp_path / "clip.ogg"
    shutil.copy(short_voice, clip)
    runs: list[Path] = []
    real = wecom.to_amr

    def counting(path: Path) -> bytes:
        runs.append(path)
        return real(path)

    monkeypatch.setattr(wecom, "to_amr", counting)
    sender = channel()
    for n in range(3):
        url = api.webhook(f"robot-key-{n:04d}")
        sender.send(
            Notice(n, f"chat-{n}", "通知", "请注意。", voice_path=clip, voice_duration=3.0,
                   credentials={"webhook": url}),
            lambda ids: None,
        )  # fmt: skip
    assert len(runs) == 1
    assert [u["type"] for u in api.uploads] == ["voice"] * 3
    assert len({u["size"] for u in api.uploads}) == 1

    clip.write_bytes(short_voice.read_bytes() + b"\0")  # re-rendered: size and time change
    assert wecom.converted(clip, "amr").startswith(b"#!AMR\n")
    assert len(runs) == 2


@pytest.fixture(scope="session")
def edge_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clip just over a minute (61 s) whose stored duration says 59.5 s."""
    from tests.robots.conftest import _sine

    return _sine(tmp_path_factory.mktemp("voice") / "edge.ogg", 61)


def test_the_60_s_limit_is_checked_on_the_converted_amr(
    api: FakeWeCom, edge_voice: Path, short_voice: Path
) -> None:
    """The stored duration is the source's (and may be off); WeCom measures the AMR it
    gets. Over 60 s as AMR the clip goes as an MP3 file, never refused at the platform."""
    from robots.wecom import amr_seconds as measured
    from robots.wecom import converted

    url = api.webhook(KEY)
    notice = Notice(1, "x", "通知", "今晚停电。", voice_path=edge_voice, voice_duration=59.5,
                    credentials={"webhook": url})  # fmt: skip
    assert [p.kind for p in channel().plan(notice)] == ["text", "file"]
    amr = converted(edge_voice, "amr")
    assert measured(amr) == amr_seconds(amr) and (measured(amr) or 0) > 60
    channel().send(notice, lambda ids: None)
    assert [m.msgtype for m in api.messages_to(KEY)] == ["text", "file"]
    assert [u["type"] for u in api.uploads] == ["file"]  # no voice upload was tried
    short = Notice(2, "x", "通知", "今晚停电。", voice_path=short_voice, voice_duration=3.0,
                   credentials={"webhook": url})  # fmt: skip
    [_, voice] = channel().plan(short)
    # The AMR's own length (the converter pads a little), not the stored 3.0 s.
    assert voice.kind == "voice" and voice.duration == measured(converted(short_voice, "amr"))
