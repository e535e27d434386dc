"""What the scheduler stores (alerts, failure reasons, deactivation reasons) reads in English.

The scheduler stores message ids with parameters, never finished Chinese sentences, so an
English reader sees English: a bad day's alerts, failures and states on the scheduling,
compliance, dashboard and chat pages carry no Chinese but the township's own data.
"""

from __future__ import annotations

from datetime import time, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms import queue
from cms.clock import at_local
from cms.jobs.deliveries import plan_deliveries
from cms.jobs.reconcile import reconcile_day
from cms.models import Alert, ChatGroup, Delivery, DeliveryState, JobState, Outlet, Program
from cms.services import chats, operators
from cms.services.errors import Message
from cms.web import today
from tests.cms.test_i18n import chinese_left, demo, demo_user, set_english, user_data
from tests.conftest import login

__all__ = ["demo"]  # the fixture, re-used

AREAS = ("dashboard", "schedule", "operators", "chats")


class PlatformDown(Exception):
    """A platform's answer, as a channel raises it: technical detail, kept as is."""


def bad_day(session: Session, settings: Any) -> None:
    """Yesterday nothing was built; today chats failed, one was kicked, nothing confirmed."""
    tz = settings.tz
    day = today(settings)
    yesterday = day - timedelta(days=1)
    late = at_local(day, time(23, 50), tz)
    # The township's loudspeakers were installed long before these two days.
    session.execute(
        update(Outlet).values(created_at=at_local(day - timedelta(days=90), time(8), tz))
    )
    # The scheduler was down all yesterday: every slot is a missed program with an alert.
    reconcile_day(session, yesterday, late, tz)
    # One program was built but never confirmed as played: escalated.
    program = session.scalars(select(Program).where(Program.day == yesterday)).first()
    assert program is not None
    program.state, program.missed, program.built_at = JobState.DONE, False, late - timedelta(days=2)
    session.flush()
    assert operators.escalate_unconfirmed(session, late + timedelta(days=1), settings)
    # Today's chat posts: one failed, one uncertain, one chat kicked the bot out.
    plan_deliveries(session, day, at_local(day, time(6, 0), tz), tz)
    start = at_local(day, time(0, 0), tz)
    deliveries = list(
        session.scalars(
            select(Delivery)
            .where(Delivery.due_at >= start, Delivery.due_at < start + timedelta(days=1))
            .order_by(Delivery.id)
        )
    )
    assert len(deliveries) >= 3, "the demo should post to several chats today"
    deliveries[0].state = DeliveryState.FAILED
    deliveries[0].last_error = queue.error_text(PlatformDown("Bad Gateway (HTTP 502)"))
    deliveries[1].state = DeliveryState.UNCERTAIN
    deliveries[1].last_error = queue.error_text(TimeoutError("read timed out"))
    kicked = session.get(ChatGroup, deliveries[2].chat_group_id)
    assert kicked is not None
    chats.deactivate_chat(session, kicked, Message(chats.BOT_REMOVED_BY, {"by": "Wang Wu"}))
    session.flush()
    reconcile_day(session, day, late, tz)
    session.commit()


def test_a_bad_day_reads_in_english(app, demo: Session, settings) -> None:  # type: ignore[no-untyped-def]
    bad_day(demo, settings)
    alerts = list(demo.scalars(select(Alert)))
    kinds = {a.kind for a in alerts}
    assert {"program_missed", "delivery_gap"} <= kinds and len(kinds) >= 3, kinds
    for alert in alerts:  # stored as a message id with parameters, not as a sentence
        assert Message.loads(alert.message).msgid != alert.message

    client = app.test_client()
    login(client, demo_user(demo, "admin"), "dalaba-demo")
    set_english(client)
    data = user_data(demo)
    pages = sorted(
        {
            rule.rule.replace("<day_text>", "today")
            for rule in app.url_map.iter_rules()
            if rule.endpoint.split(".")[0] in AREAS
            and "GET" in (rule.methods or ())
            and not (set(rule.arguments) - {"day_text"})
        }
    )
    problems = {}
    seen = ""
    for path in pages:
        response = client.get(path)
        if response.status_code != 200 or response.mimetype != "text/html":
            continue
        html = response.get_data(as_text=True)
        seen += html
        left = chinese_left(html, data)
        if left:
            problems[path] = left
    assert not problems, "Chinese left on English pages:\n" + "\n".join(
        f"{page}: {left}" for page, left in problems.items()
    )
    # The alerts, states and reasons were on those pages, in English.
    expected = (
        "was not ready in time",
        "has not been confirmed as played",
        "The scheduler was not running",
        "sending failed",
        "Bad Gateway (HTTP 502)",
        "The bot was removed from the group chat (by Wang Wu)",
        "Failed",
    )
    missing = [text for text in expected if text not in seen]
    assert not missing, missing


def test_chinese_readers_see_the_same_messages_in_chinese(app, demo: Session, settings) -> None:  # type: ignore[no-untyped-def]
    bad_day(demo, settings)
    client = app.test_client()
    login(client, demo_user(demo, "admin"), "dalaba-demo")
    html = client.get("/schedule/").get_data(as_text=True)
    assert "的节目未按时就绪" in html and "调度器未运行，节目未生成" in html
    chats_page = client.get("/chats").get_data(as_text=True)
    assert "机器人已被移出群聊（Wang Wu）" in chats_page
