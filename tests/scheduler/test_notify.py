"""Alerts reach the officers' linked chats once; operators and unlinked officers get nothing."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from cms.jobs.notify import notify_alerts
from cms.models import Alert, ChatAccount, Role


def _alert(session, clock, message="石桥村大喇叭 07:30 的节目未按时生成", age=timedelta(0)):  # type: ignore[no-untyped-def]
    alert = Alert(kind="program_missed", message=message, created_at=clock.now() - age)
    session.add(alert)
    session.commit()
    return alert


def test_officers_get_each_alert_once(session, ctx, clock, make_user, fake_channel, fresh_session):
    editor, reviewer, operator = (
        make_user(Role.EDITOR),
        make_user(Role.REVIEWER),
        make_user(Role.OPERATOR),
    )
    make_user(Role.ADMIN)  # not linked: nothing to send to
    for user, chat in ((editor, "501"), (reviewer, "502"), (operator, "503")):
        session.add(ChatAccount(user_id=user.id, platform="telegram", external_id=chat))
    session.commit()
    alert = _alert(session, clock)
    assert notify_alerts(ctx) == 1
    assert sorted(chat for chat, _ in fake_channel.sent) == ["501", "502"]
    assert notify_alerts(ctx) == 0  # claimed: never twice
    assert len(fake_channel.sent) == 2
    with fresh_session() as s:
        assert s.get(Alert, alert.id).notified_at is not None


def test_without_a_channel_alerts_wait_and_stale_ones_are_not_sent(
    session, ctx, clock, make_user, registry, fresh_session
):
    editor = make_user(Role.EDITOR)
    session.add(ChatAccount(user_id=editor.id, platform="telegram", external_id="601"))
    session.commit()
    fresh = _alert(session, clock)
    _alert(session, clock, message="旧的提醒", age=timedelta(days=2))
    assert notify_alerts(ctx) == 0  # no telegram channel registered (no bot token)
    with fresh_session() as s:
        assert s.get(Alert, fresh.id).notified_at is None
    from tests.scheduler.helpers import FakeChannel

    channel = FakeChannel()
    registry.register(channel)
    assert notify_alerts(ctx) == 1
    assert [chat for chat, _ in channel.sent] == ["601"]
    with fresh_session() as s:
        stale = s.scalar(select(Alert).where(Alert.message == "旧的提醒"))
        assert stale.notified_at is None
