"""Notices that end when the event ends: an end time on the last day, parts of the day.

The scheduler's programs, the chat posts, the budget and the run sheet follow one rule
(cms.services.airtime), driven here by the day rule's manual clock.
"""

from __future__ import annotations

from datetime import date, time, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cms.models import Airtime, Delivery, DeliveryState, Program
from cms.services import airtime, budget
from cms.services.errors import ValidationError
from tests.conftest import login
from tests.scheduler.helpers import local


def _titles(fresh_session: Any, day: date) -> dict[str, list[str]]:
    s = fresh_session()
    rows = s.scalars(select(Program).where(Program.day == day)).all()
    return {
        p.slot.label: [i["title"] for i in (p.manifest or {}).get("announcements", [])]
        for p in rows
    }


class _Rev:
    def __init__(self, start: date, end: date, end_time: time | None, choice: str) -> None:
        self.start_date, self.end_date, self.end_time, self.airtime = start, end, end_time, choice


def test_the_rule() -> None:
    sat = date(2026, 12, 5)
    event = _Rev(sat - timedelta(days=2), sat, time(11, 30), "all")
    assert airtime.plays(event, sat - timedelta(days=1), time(19, 30))  # the evening before
    assert airtime.plays(event, sat, time(7, 30))
    assert not airtime.plays(event, sat, time(11, 30))  # a slot at the end time is after it
    assert not airtime.plays(event, sat, time(12, 0))
    assert not airtime.plays(event, sat + timedelta(days=1), time(7, 30))
    evenings = _Rev(sat, sat, None, "evening")
    assert [airtime.part_of(t) for t in (time(10, 59), time(11), time(15, 59), time(16))] == [
        "morning",
        "noon",
        "noon",
        "evening",
    ]
    assert not airtime.plays(evenings, sat, time(7, 30))
    assert airtime.plays(evenings, sat, time(19, 30))
    both = _Rev(sat, sat, None, "morning+evening")
    assert [airtime.plays(both, sat, time(h)) for h in (7, 12, 19)] == [True, False, True]
    assert airtime.parse_time("11:30") == time(11, 30)
    assert airtime.parse_time("24:00") is None and airtime.parse_time("1130") is None


def test_a_morning_event_does_not_play_after_it_ends(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, grid, today, make_outlet, make_announcement, fresh_session
) -> None:
    """An 8:00–11:30 event on its day: at 07:30, not at 12:00 nor 19:30; the day before, all day."""
    make_outlet(grid["v1"], "07:30 10, 12:00 10, 19:30 10", name="石桥大喇叭")
    tomorrow = today + timedelta(days=1)
    make_announcement(
        "approved", title="周六村庄清洁行动", body="周六8:00–11:30清扫村道。", repeats=1,
        area_ids=[grid["v1"].id], to_chats=False, start_date=today.isoformat(),
        end_date=tomorrow.isoformat(), end_time="11:30",
    )  # fmt: skip
    make_announcement(
        "approved", title="晚间户长会", body="今晚七点半开户长会。", repeats=1,
        area_ids=[grid["v1"].id], to_chats=False, start_date=today.isoformat(),
        end_date=tomorrow.isoformat(), airtime="evening",
    )  # fmt: skip
    clock.set(local(settings, today, "04:00"))
    scheduler.run_once()
    assert _titles(fresh_session, today) == {
        "07:30": ["周六村庄清洁行动"],
        "12:00": ["周六村庄清洁行动"],
        "19:30": ["周六村庄清洁行动", "晚间户长会"],
    }
    assert _titles(fresh_session, tomorrow) == {
        "07:30": ["周六村庄清洁行动"],
        "12:00": [],  # the event ended at 11:30
        "19:30": ["晚间户长会"],
    }


def test_no_chat_post_after_the_event_ends(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, session, grid, today, make_chat, make_announcement, fresh_session
) -> None:
    chat = make_chat(grid["v1"], title="石桥村民群")
    # Posted at 07:00 for an event that ends at 11:30: the post waits until 07:00 …
    early = make_announcement(
        "approved", title="上午的活动", body="8:00 开始。", area_ids=[grid["v1"].id],
        to_loudspeaker=False, start_date=today.isoformat(), end_date=today.isoformat(),
        chat_post_time="07:00", end_time="11:30",
    )  # fmt: skip
    clock.set(local(settings, today, "03:00"))
    scheduler.run_once()
    s = fresh_session()
    pending = s.scalar(select(Delivery).where(Delivery.revision_id == early.approved_revision_id))
    assert pending is not None and pending.state is DeliveryState.PENDING
    # … the scheduler was down from 03:00 until noon: the event is over, nothing goes out.
    clock.set(local(settings, today, "12:00"))
    scheduler.run_once()
    s = fresh_session()
    gone = s.get(Delivery, pending.id)
    assert gone.state is DeliveryState.CANCELLED
    assert "活动已结束" in (gone.last_error or "")
    # Approved after the event ended: no post is planned at all.
    late = make_announcement(
        "approved", title="已经结束的活动", body="上午的。", area_ids=[grid["v1"].id],
        to_loudspeaker=False, start_date=today.isoformat(), end_date=today.isoformat(),
        chat_post_time="07:00", end_time="11:30",
    )  # fmt: skip
    scheduler.run_once()
    s = fresh_session()
    assert (
        s.scalar(select(Delivery).where(Delivery.revision_id == late.approved_revision_id)) is None
    )
    assert chat.id


def test_a_one_day_notice_posts_before_its_event_ends(
    make_announcement: Any, grid: dict[str, Any], today: date
) -> None:
    with pytest.raises(ValidationError) as caught:
        make_announcement(
            area_ids=[grid["v1"].id], start_date=today.isoformat(), end_date=today.isoformat(),
            chat_post_time="12:00", end_time="11:30",
        )  # fmt: skip
    assert "chat_post_time" in caught.value.errors
    with pytest.raises(ValidationError) as caught:
        make_announcement(area_ids=[grid["v1"].id], end_time="25:00", airtime="dusk")
    assert {"end_time", "airtime"} <= set(caught.value.errors)
    ok = make_announcement(area_ids=[grid["v1"].id], end_time="11:30", airtime="morning+noon")
    assert ok.current.end_time == time(11, 30) and ok.current.airtime is Airtime.MORNING_NOON


def test_the_budget_counts_a_notice_only_where_it_plays(  # type: ignore[no-untyped-def]
    session, grid, today, make_outlet, make_announcement
) -> None:
    make_outlet(grid["v1"], "07:30 1, 19:30 1", name="石桥大喇叭")
    make_announcement(
        "approved", title="只在晚上", body="晚上的通知。" * 30, area_ids=[grid["v1"].id],
        to_chats=False, airtime="evening",
    )  # fmt: skip
    result = budget.budget(
        session, text="早上的通知。" * 30, rate=0, repeats=1, area_ids=[grid["v1"].id],
        start=today, end=today, airtime_choice="morning",
    )  # fmt: skip
    # The draft plays only in the morning; the evening notice is not counted there.
    assert [(s.slot, s.others_seconds) for s in result.slots] == [("07:30", 0)]


def test_the_run_sheet_follows_the_rule(  # type: ignore[no-untyped-def]
    client, session, grid, today, make_outlet, make_announcement, make_user
) -> None:
    from cms.models import Role

    outlet = make_outlet(grid["v1"], "07:30 10, 12:00 10", name="石桥大喇叭")
    day = today + timedelta(days=2)
    make_announcement(
        "approved", title="周六清洁行动", body="8:00–11:30。", area_ids=[grid["v1"].id],
        to_chats=False, start_date=today.isoformat(), end_date=day.isoformat(), end_time="11:30",
    )  # fmt: skip
    login(client, make_user(Role.EDITOR))
    page = client.get(f"/schedule/outlets/{outlet.id}/{day.isoformat()}/runsheet")
    assert page.status_code == 200, page.status_code
    text = page.get_data(as_text=True)
    morning, noon = text.split("12:00", 1)
    assert "周六清洁行动" in morning and "周六清洁行动" not in noon
