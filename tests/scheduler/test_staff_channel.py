"""The township's staff channel: "待审核 N 条" collected at most every 10 minutes, returned
notices to their author, program alerts and failures, through the real WeCom client and the
loopback WeCom robot, driven by the manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import queue
from cms.jobs import staff as staff_job
from cms.jobs.lifecycle import Outcome
from cms.models import Alert, Delivery, DeliveryState, Role, StaffPost, User
from cms.scheduler.core import PassReport
from cms.services import announcements, chats, staff
from cms.services.errors import Message, PermissionDenied, ValidationError
from robots.wecom import WeComChannel
from tests.fakes.robot_base import RobotFault
from tests.fakes.wecom_api import FakeWeCom
from tests.scheduler.helpers import local

KEY = "staff-robot-0001"


@pytest.fixture(autouse=True)
def local_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake robots listen on loopback: allow such webhooks, as a self-hosted relay would."""
    monkeypatch.setenv("DALABA_ALLOW_LOCAL_WEBHOOKS", "1")


@pytest.fixture
def api() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server


@pytest.fixture
def robot_ctx(ctx: Any) -> Any:
    ctx.registry.register(WeComChannel(throttle_wait=0.2, backoff=0.05, max_wait=2.0))
    return ctx


def texts(api: FakeWeCom) -> list[str]:
    return [
        str(m.body.get("text", {}).get("content") or m.body.get("markdown", {}).get("content"))
        for m in api.messages_to(KEY)
    ]


@pytest.fixture
def bound(
    session: Session,
    grid: dict[str, Any],
    api: FakeWeCom,
    make_user: Callable[..., User],
    clock: Any,
) -> Callable[..., Any]:
    def make(events: tuple[str, ...] = tuple(staff.EVENTS)) -> Any:
        robot = chats.bind_robot(
            session, None, platform="wecom", webhook=api.webhook(KEY), secret="",
            area=grid["town"], title="清水镇干部群",
        )  # fmt: skip
        admin = make_user(Role.ADMIN, area=grid["town"])
        channel = staff.bind(session, admin, grid["town"], robot.id, events, clock.now())
        session.commit()
        return channel

    return make


def test_reviewers_are_told_what_waits_collected_every_ten_minutes(  # type: ignore[no-untyped-def]
    robot_ctx, clock, settings, session, grid, today, make_announcement, make_user, bound, api
) -> None:
    bound()
    author = make_user(Role.EDITOR, display_name="王丽")
    clock.set(local(settings, today, "09:00"))
    make_announcement("in_review", author=author, title="村庄清洁行动", area_ids=[grid["v1"].id])
    make_announcement("in_review", author=author, title="户长会通知", area_ids=[grid["v2"].id])
    assert staff_job.tick(robot_ctx) == 1
    [first] = texts(api)
    assert "【待审核 2 条】" in first and "《村庄清洁行动》" in first and "《户长会通知》" in first
    assert f"{settings.base_url}/announcements/" in first

    # A third submission five minutes later is collected, not posted at once …
    clock.set(local(settings, today, "09:05"))
    make_announcement("in_review", author=author, title="停水通知", area_ids=[grid["v1"].id])
    assert staff_job.tick(robot_ctx) == 0
    # … and goes out when ten minutes have passed since the last post.
    clock.set(local(settings, today, "09:10"))
    assert staff_job.tick(robot_ctx) == 1
    assert "【待审核 3 条】" in texts(api)[-1]
    assert staff_job.tick(robot_ctx) == 0  # nothing new: nothing posted


def test_returned_notices_programs_and_failures(  # type: ignore[no-untyped-def]
    robot_ctx, clock, settings, session, grid, today, make_announcement, make_user, bound, api
) -> None:
    bound(("returned", "programs", "failures"))
    clock.advance(1)  # the failure below comes after the channel was set up
    author = make_user(Role.EDITOR, display_name="陈辉")
    ann = make_announcement("in_review", author=author, title="森林防火", area_ids=[grid["v1"].id])
    announcements.reject(session, make_user(Role.REVIEWER), ann, "请写明举报电话")
    session.add(
        Alert(
            kind="program_missed",
            message=Message(
                "{outlet} {slot} 的节目漏播", {"outlet": "石桥村大喇叭", "slot": "12:00"}
            ).dumps(),
            object_type="announcement",
            object_id=ann.id,
        )
    )
    chat = chats.bind_robot(
        session, None, platform="dingtalk",
        webhook="https://oapi.dingtalk.com/robot/send?access_token=" + "a" * 64,
        secret="", area=grid["v1"], title="石桥村民群",
    )  # fmt: skip
    approved = make_announcement("approved", title="停水通知", area_ids=[grid["v1"].id])
    session.add(
        Delivery(
            revision_id=approved.approved_revision_id,
            chat_group_id=chat.id,
            due_at=clock.now(),
            state=DeliveryState.FAILED,
            last_error=Message("机器人的安全设置拒绝了消息").dumps(),
        )
    )
    session.commit()
    assert staff_job.tick(robot_ctx) == 3
    returned, programs, failures = texts(api)
    assert "群聊“石桥村民群”：《停水通知》发送失败（机器人的安全设置拒绝了消息）" in failures
    assert "陈辉：您的《森林防火》被退回修改，审核意见：请写明举报电话" in returned
    assert "待审核" not in returned + programs  # review is not chosen
    assert "石桥村大喇叭 12:00 的节目漏播" in programs
    assert staff_job.tick(robot_ctx) == 0  # each event is told once


def test_a_busy_robot_gets_the_post_again_once(  # type: ignore[no-untyped-def]
    robot_ctx, clock, settings, session, grid, make_announcement, bound, api
) -> None:
    bound(("review",))
    make_announcement("in_review", title="医保缴费", area_ids=[grid["v1"].id])
    api.fail(RobotFault.SERVER_ERROR, robot=KEY, kind="send", times=10)
    staff_job.tick(robot_ctx)
    post = session.scalars(select(StaffPost)).one()
    session.refresh(post)
    assert post.state == "pending" and post.attempts == 1 and texts(api) == []
    with api.lock:  # the robot is back
        api._rules.clear()
    clock.set(clock.now() + timedelta(minutes=2))
    assert staff_job.tick(robot_ctx) == 1
    assert len(texts(api)) == 1


def test_only_the_townships_admin_binds_one_of_its_robots(  # type: ignore[no-untyped-def]
    session, grid, api, make_user, clock
) -> None:
    robot = chats.bind_robot(
        session, None, platform="wecom", webhook=api.webhook(KEY), secret="", area=grid["v1"],
        title="石桥村群",
    )  # fmt: skip
    with pytest.raises(PermissionDenied):
        staff.bind(session, make_user(Role.EDITOR), grid["town"], robot.id, ["review"], clock.now())
    admin = make_user(Role.ADMIN)
    with pytest.raises(ValidationError):
        staff.bind(session, admin, grid["v1"], robot.id, ["review"], clock.now())  # a village
    with pytest.raises(ValidationError):
        staff.bind(session, admin, grid["town"], robot.id + 99, ["review"], clock.now())
    channel = staff.bind(session, admin, grid["town"], robot.id, ["review", "bogus"], clock.now())
    assert channel is not None and channel.events == ["review"]
    assert staff.bind(session, admin, grid["town"], None, [], clock.now()) is None


def test_the_settings_page_chooses_the_robot_and_what_goes_there(  # type: ignore[no-untyped-def]
    client, session, grid, api, make_user
) -> None:
    from tests.conftest import login

    robot = chats.bind_robot(
        session, None, platform="wecom", webhook=api.webhook(KEY), secret="", area=grid["town"],
        title="清水镇干部群",
    )  # fmt: skip
    session.commit()
    login(client, make_user(Role.ADMIN))
    page = client.get(f"/admin/settings?area_id={grid['town'].id}").get_data(as_text=True)
    assert 'data-testid="staff-channel"' in page and "清水镇干部群" in page
    saved = client.post(
        "/admin/staff-channel",
        data={
            "area_id": grid["town"].id,
            "chat_group_id": robot.id,
            "events": ["review", "failures"],
        },
    )
    assert saved.status_code == 302
    session.rollback()
    channel = staff.channel_of(session, grid["town"])
    assert channel is not None and channel.chat_group_id == robot.id
    assert channel.events == ["review", "failures"]
    # The Chats page: the work robots first, Telegram last and marked.
    chats_page = client.get("/chats").get_data(as_text=True)
    assert chats_page.index('data-testid="robot-form"') < chats_page.index("telegram-section")
    assert "中国大陆无法直接访问" in chats_page


# -- the post's life through run_job (cms.jobs.lifecycle) ------------------------------------


class _Crash(BaseException):
    """The process dies (a BaseException: nothing in the job catches it)."""


def _post(session: Session) -> StaffPost:
    """The one post as the database has it now (not the test session's older snapshot)."""
    session.rollback()
    return session.scalars(select(StaffPost)).one()


def _reason(post: StaffPost) -> str:
    assert post.last_error is not None
    return Message.loads(post.last_error).render()


def test_a_post_whose_sender_died_mid_send_is_uncertain_and_never_sent_again(  # type: ignore[no-untyped-def]
    robot_ctx, clock, session, grid, make_announcement, bound, api, monkeypatch
) -> None:
    bound(("review",))
    make_announcement("in_review", title="医保缴费", area_ids=[grid["v1"].id])
    channel = robot_ctx.registry.get("wecom")
    real_send = channel.send

    def send_then_die(notice, progress):  # type: ignore[no-untyped-def]
        real_send(notice, progress)  # the robot accepted it …
        raise _Crash()  # … and the process died before recording it

    monkeypatch.setattr(channel, "send", send_then_die)
    with pytest.raises(_Crash):
        staff_job.tick(robot_ctx)
    monkeypatch.setattr(channel, "send", real_send)  # the next process
    post = _post(session)
    assert post.state == DeliveryState.SENDING and post.attempts == 1
    assert post.claimed_by is not None and post.claimed_by.startswith("test-worker/")
    assert post.claimed_until == clock.now() + staff_job.CLAIM
    assert len(texts(api)) == 1

    # While the claim holds, the post is someone's: not sent, not judged.
    assert staff_job.tick(robot_ctx) == 0
    assert _post(session).state == DeliveryState.SENDING
    # Expired, it is not taken again by the job runner …
    clock.advance(staff_job.CLAIM + timedelta(seconds=1))
    assert staff_job.send_one(robot_ctx, post.id) is Outcome.SKIPPED
    # … and the tick's crash rule makes it uncertain: it may have arrived.
    assert staff_job.tick(robot_ctx) == 0
    post = _post(session)
    assert post.state == DeliveryState.UNCERTAIN and post.claimed_until is None
    clock.advance(timedelta(hours=1))
    assert staff_job.tick(robot_ctx) == 0
    assert len(texts(api)) == 1  # never sent twice


def test_a_busy_robot_is_tried_each_minute_until_the_attempts_run_out(  # type: ignore[no-untyped-def]
    robot_ctx, clock, scheduler, session, grid, make_announcement, bound, api
) -> None:
    bound(("review",))
    make_announcement("in_review", title="医保缴费", area_ids=[grid["v1"].id])
    api.fail(RobotFault.SERVER_ERROR, robot=KEY, kind="send", times=1000)
    report = PassReport()
    for attempt in range(1, queue.MAX_ATTEMPTS):
        assert scheduler.staff_due(report) == 0
        post = _post(session)
        assert post.state == DeliveryState.PENDING and post.attempts == attempt
        assert post.next_attempt_at == clock.now() + staff_job.RETRY  # the same minute each time
        assert post.claimed_until is None and "HTTP 502" in _reason(post)
        clock.advance(staff_job.RETRY - timedelta(seconds=1))
        assert scheduler.staff_due(report) == 0  # not due yet: no attempt used
        assert _post(session).attempts == attempt
        clock.advance(timedelta(seconds=1))
    assert report.outcomes == {"staff_post.retry": queue.MAX_ATTEMPTS - 1}
    assert scheduler.staff_due(report) == 0
    post = _post(session)
    assert post.state == DeliveryState.FAILED and post.attempts == queue.MAX_ATTEMPTS
    assert post.next_attempt_at is None and "HTTP 502" in _reason(post)
    assert report.outcomes["staff_post.failed"] == 1
    clock.advance(timedelta(hours=1))
    assert scheduler.staff_due(report) == 0
    assert _post(session).attempts == queue.MAX_ATTEMPTS and texts(api) == []


def test_a_refused_post_fails_at_once_with_the_reason(  # type: ignore[no-untyped-def]
    robot_ctx, clock, session, grid, make_announcement, bound, api
) -> None:
    bound(("review",))
    make_announcement("in_review", title="医保缴费", area_ids=[grid["v1"].id])
    api.remove_robot(KEY)  # the group removed the robot: WeCom answers 93000
    report = PassReport()
    assert staff_job.tick(robot_ctx, report) == 0
    assert report.outcomes == {"staff_post.failed": 1}
    post = _post(session)
    assert post.state == DeliveryState.FAILED and post.attempts == 1
    assert "93000" in _reason(post) and post.next_attempt_at is None
    requests = len(api.requests)
    clock.advance(timedelta(hours=1))
    assert staff_job.tick(robot_ctx) == 0
    assert len(api.requests) == requests  # not tried again


def test_a_lost_answer_leaves_the_post_uncertain(  # type: ignore[no-untyped-def]
    robot_ctx, clock, session, grid, make_announcement, bound, api
) -> None:
    bound(("review",))
    make_announcement("in_review", title="医保缴费", area_ids=[grid["v1"].id])
    api.fail(RobotFault.DROP_AFTER, robot=KEY, kind="send")  # posted, the answer lost
    assert staff_job.send_one(robot_ctx, _collected(robot_ctx, session)) is Outcome.UNCERTAIN
    post = _post(session)
    assert post.state == DeliveryState.UNCERTAIN and "可能已送达" in _reason(post)
    clock.advance(timedelta(hours=1))
    assert staff_job.tick(robot_ctx) == 0
    assert len(texts(api)) == 1


def test_a_post_waits_without_using_an_attempt_while_its_robot_has_no_channel(  # type: ignore[no-untyped-def]
    ctx, clock, session, grid, make_announcement, bound, api
) -> None:
    bound(("review",))
    make_announcement("in_review", title="医保缴费", area_ids=[grid["v1"].id])
    post_id = _collected(ctx, session)
    assert staff_job.send_one(ctx, post_id) is Outcome.WAITING  # no WeCom plugin loaded
    post = _post(session)
    assert post.state == DeliveryState.PENDING and post.attempts == 0
    assert post.next_attempt_at == clock.now() + staff_job.RETRY
    ctx.registry.register(WeComChannel(throttle_wait=0.2, backoff=0.05, max_wait=2.0))
    assert staff_job.tick(ctx) == 0  # a minute has not passed
    clock.advance(staff_job.RETRY)
    assert staff_job.tick(ctx) == 1
    post = _post(session)
    assert post.state == DeliveryState.SENT and post.attempts == 1
    assert post.sent_at == clock.now() and post.claimed_until is None
    assert len(texts(api)) == 1


def _collected(ctx: Any, session: Session) -> int:
    """Collect the events into posts (as a tick does) without sending them."""
    with ctx.sessions() as s, s.begin():
        staff.collect(s, ctx.now(), ctx.settings.base_url)
    return _post(session).id
