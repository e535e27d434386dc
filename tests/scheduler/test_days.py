"""Honest day states: slots before an outlet existed, missed and retried slots, and a test month
whose compliance columns add up to the applicable programs on every day."""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms.demo import seed
from cms.jobs import programs, reconcile
from cms.models import Alert, JobState, Outlet, Program, Receipt
from cms.services import alerts as alerts_svc
from cms.services import days, operators
from cms.services import programs as programs_svc
from cms.services import schedule as schedule_svc
from cms.services.errors import Message
from tests.scheduler.helpers import local

MONTH = 30


def build(session: Session, program: Program, when: datetime, folder: Path) -> None:
    """What the program worker leaves behind, without the audio work: a file and a DONE row."""
    outlet = program.outlet
    inputs = programs.inputs_for(
        session, programs_svc.outlet_announcements(session, outlet, program.day), area=outlet.area
    )
    path = folder / f"{program.id}.mp3"
    path.write_bytes(b"\xff\xfb\x90\x00" * 8)
    titles = [e.title for e in inputs.entries]
    session.execute(
        update(Program)
        .where(Program.id == program.id)
        .values(
            state=JobState.DONE,
            path=str(path),
            duration=12.0,
            built_at=when,
            input_hash=inputs.hash(programs.program_key(program)),
            manifest={
                "announcements": [{"title": t} for t in titles],
                "items": [{"title": t, "repeats": 1, "duration": 12.0} for t in titles],
                "skipped": [],
            },
        )
        .execution_options(synchronize_session=False)
    )
    session.expire(program)


def day_rows(session: Session, day: date) -> dict[tuple[str, str], Program]:
    rows = session.scalars(select(Program).where(Program.day == day)).all()
    return {(p.outlet.name, p.slot.label): p for p in rows}


def open_alerts(session: Session, kind: str) -> list[Alert]:
    return list(
        session.scalars(select(Alert).where(Alert.kind == kind, Alert.resolved_at.is_(None)))
    )


@pytest.mark.parametrize("hhmm", ["06:00", "12:40", "15:30", "23:50"])
def test_fresh_demo_raises_no_false_alerts(
    session, settings, clock, scheduler, today, hhmm
) -> None:  # type: ignore[no-untyped-def]
    """A demo installed at any hour: slots that ended before it are not applicable."""
    start = local(settings, today, hhmm)
    clock.set(start)
    seed(session, settings, now=clock.now())
    session.commit()
    for minutes in (0, 5, 45):
        clock.set(start + timedelta(minutes=minutes))
        scheduler.run_once()  # renders, builds and posts (to the local outbox)
        scheduler.reconcile()
        scheduler.escalate()
    session.expire_all()
    assert session.scalars(select(Alert)).all() == []
    day = today
    for outlet in session.scalars(select(Outlet)):
        for row in schedule_svc.slot_days(
            session, outlet, day, now=clock.now(), tz=settings.tz, settings=settings
        ):
            ended_before = row.times.end <= clock.now() - timedelta(minutes=45)
            assert (row.outcome is days.Outcome.NOT_APPLICABLE) == ended_before, (
                outlet.name,
                row.slot.label,
            )
            assert row.program is None or not ended_before
    # The slots still ahead are planned; the compliance view counts only those.
    rows = operators.compliance(session, clock.now(), settings.tz, 1, settings)
    local_day = clock.now().astimezone(settings.tz).date()  # tomorrow, for 23:50 + 45 min
    todays = session.scalars(select(Program).where(Program.day == local_day)).all()
    assert sum(r.planned for r in rows) == len(todays) > 0
    assert all(r.missed == 0 for r in rows)


def test_same_retry_same_end_state(  # type: ignore[no-untyped-def]
    session, settings, grid, today, make_outlet, make_announcement, tmp_path
) -> None:
    """Two slots missed, retried and built: both end built late, their alerts closed."""
    make_outlet(grid["v1"], "07:30 10, 12:00 10, 19:30 15", name="石桥大喇叭")
    make_announcement("approved", area_ids=[grid["v1"].id])
    tz = settings.tz
    programs.plan_day(session, today, local(settings, today, "04:00"), tz, create=True)
    # Reconciliation ran between the two deadlines (the 07:30 gap seen first) and after both.
    for hhmm in ("09:00", "12:40"):
        now = local(settings, today, hhmm)
        programs.plan_day(session, today, now, tz, create=False)
        reconcile.reconcile_day(session, today, now, tz)
    session.commit()
    rows = day_rows(session, today)
    morning, noon = rows[("石桥大喇叭", "07:30")], rows[("石桥大喇叭", "12:00")]
    assert morning.missed and noon.missed
    assert {a.object_id for a in open_alerts(session, "program_missed")} == {morning.id, noon.id}
    retried_at = local(settings, today, "14:00")
    for program in (morning, noon):
        schedule_svc.retry_program(session, program.id, actor=None)
    # The scheduler's next tick comes before the worker: it must not fail them again.
    programs.plan_day(session, today, retried_at, tz, create=False)
    session.commit()
    session.expire_all()
    assert {morning.state, noon.state} == {JobState.PENDING}
    for program in (morning, noon):
        build(session, program, retried_at + timedelta(minutes=1), tmp_path)
    later = local(settings, today, "15:00")
    programs.plan_day(session, today, later, tz, create=False)
    reconcile.reconcile_day(session, today, later, tz)
    session.commit()
    session.expire_all()
    grace = operators.late_grace(session, settings)
    ends = [
        (
            p.state,
            p.missed,
            days.of_program(p, None, now=later, tz=tz, late_grace=grace),
        )
        for p in (morning, noon)
    ]
    assert ends[0] == ends[1] == (JobState.DONE, True, days.Outcome.BUILT_LATE)
    assert open_alerts(session, "program_missed") == []
    # 19:30 is still ahead: pending, and the day counts three applicable programs.
    (row,) = operators.compliance(session, later, tz, 1, settings)
    assert (row.planned, row.built_late, row.pending) == (3, 2, 1)


def behaviour(day_index: int, slot_index: int) -> str:
    """What happens to a program in the test month (a fixed pattern, so counts are known)."""
    return ("on_time", "late", "unconfirmed", "missed", "on_time")[(day_index + slot_index) % 5]


def test_a_month_adds_up(  # type: ignore[no-untyped-def]
    session, settings, grid, today, make_outlet, make_announcement, tmp_path
) -> None:
    """A month of days: every compliance row's columns add up to its applicable programs,
    at noon and at night of every day, and match what happened."""
    tz = settings.tz
    make_outlet(grid["v1"], "07:30 10, 12:00 10, 19:30 15", name="石桥大喇叭")
    make_announcement(
        "approved",
        title="月度通知",
        area_ids=[grid["town"].id],
        end_date=(today + timedelta(days=MONTH - 1)).isoformat(),
    )
    new_day, new_at = 2, "15:30"  # 柳林村's loudspeaker comes into service on day 2 at 15:30
    expected: dict[date, Counter[str]] = {}
    late_confirm: list[tuple[int, datetime]] = []
    for d in range(MONTH):
        day = today + timedelta(days=d)
        planned_at = local(settings, day, "04:00")
        programs.plan_day(session, day, planned_at, tz, create=True)
        if d == new_day:
            installed = local(settings, day, new_at)
            outlet = make_outlet(grid["v2"], "07:30 10, 12:00 10, 19:30 15", name="柳林大喇叭")
            outlet.created_at = installed
            session.commit()
            programs.plan_day(session, day, installed, tz, create=True)
        session.commit()
        counts: Counter[str] = Counter()
        for (_name, label), program in sorted(day_rows(session, day).items()):
            slot_index = ("07:30", "12:00", "19:30").index(label)
            what = behaviour(d, slot_index)
            start = local(settings, day, label)
            if what == "missed":
                counts["retried" if d % 2 == 0 else "missed"] += 1
                continue
            built_at = max(planned_at, program.outlet.created_at) + timedelta(minutes=5)
            build(session, program, built_at, tmp_path)
            if what == "on_time":
                operators.confirm_playback(
                    session, program, None, "link", start + timedelta(minutes=5), tz=tz
                )
            elif what == "late":
                late_confirm.append((program.id, start + timedelta(hours=3)))
            counts[what] += 1
        session.commit()
        expected[day] = counts
        # Noon: the morning is settled, the rest is still ahead; the columns add up.
        noon = local(settings, day, "12:00")
        programs.plan_day(session, day, noon, tz, create=False)
        for row in operators.compliance(session, noon, tz, 1, settings):
            assert row.planned == sum(row.tally.counts.values())
            assert row.pending >= 1
        # Late confirmations, the evening's gaps, and yesterday's retried slots.
        for program_id, when in late_confirm:
            operators.confirm_playback(
                session, session.get(Program, program_id), None, "web", when, tz=tz
            )
        late_confirm.clear()
        night = local(settings, day, "23:30")
        programs.plan_day(session, day, night, tz, create=False)
        reconcile.reconcile_day(session, day, night, tz)
        session.commit()
        session.expire_all()  # plan_day marks missed with bulk updates
        if d % 2 == 0:
            for program in day_rows(session, day).values():
                if program.missed and program.state is JobState.FAILED:
                    schedule_svc.retry_program(session, program.id, actor=None)
                    build(session, program, night + timedelta(minutes=2), tmp_path)
            reconcile.reconcile_day(session, day, night + timedelta(minutes=5), tz)
        session.commit()
    # No gap is reported for the slots before 柳林村's loudspeaker existed.
    session.expire_all()
    first = today + timedelta(days=new_day)
    liulin_day = {label for (name, label) in day_rows(session, first) if name == "柳林大喇叭"}
    assert liulin_day == {"19:30"}
    assert not any(
        a.day == first and session.get(Program, a.object_id).outlet.name == "柳林大喇叭"
        for a in session.scalars(select(Alert).where(Alert.object_type == "program"))
    )
    end = local(settings, today + timedelta(days=MONTH - 1), "23:59")
    rows = operators.compliance(session, end, tz, MONTH, settings)
    by_day: dict[date, Counter[str]] = {}
    for row in rows:
        assert row.planned == sum(row.tally.counts.values())
        total = by_day.setdefault(row.day, Counter())
        total["planned"] += row.planned
        total["on_time"] += row.on_time
        total["late"] += row.late
        total["unconfirmed"] += row.unconfirmed
        total["retried"] += row.built_late
        total["missed"] += row.missed
        total["pending"] += row.pending + row.awaiting
    assert set(by_day) == set(expected)
    for day, counts in expected.items():
        applicable = session.scalars(select(Program).where(Program.day == day)).all()
        assert by_day[day]["planned"] == len(applicable) == sum(counts.values()), day
        assert by_day[day]["pending"] == 0, day
        for key in ("on_time", "late", "unconfirmed", "retried", "missed"):
            assert by_day[day][key] == counts[key], (day, key)
    # The chart's totals are the same numbers.
    totals = operators.daily_totals(rows, end.astimezone(tz).date(), MONTH)
    assert sum(t.planned for t in totals) == session.query(Program).count()
    assert session.query(Receipt).count() == sum(
        c["on_time"] + c["late"] for c in expected.values()
    )


def test_run_sheet_shows_what_was_built_never_a_plan_for_a_missed_slot(  # type: ignore[no-untyped-def]
    app, session, settings, grid, today, admin, make_outlet, make_announcement, tmp_path
) -> None:
    from tests.conftest import PASSWORD, login

    tz = settings.tz
    outlet = make_outlet(grid["v1"], "07:30 10, 19:30 15", name="石桥大喇叭")
    yesterday = today - timedelta(days=1)
    make_announcement("approved", title="旧通知", start_date=yesterday.isoformat())
    programs.plan_day(session, yesterday, local(settings, yesterday, "04:00"), tz, create=True)
    session.commit()
    rows = day_rows(session, yesterday)
    build(session, rows[("石桥大喇叭", "19:30")], local(settings, yesterday, "04:05"), tmp_path)
    programs.plan_day(session, yesterday, local(settings, yesterday, "23:00"), tz, create=False)
    session.commit()
    # Approved later: yesterday's programs did not have it, today's will.
    make_announcement("approved", title="新通知")
    client = app.test_client()
    login(client, admin, PASSWORD)
    sheet = client.get(f"/schedule/outlets/{outlet.id}/{yesterday}/runsheet")
    html = sheet.get_data(as_text=True)
    morning = html.split('data-testid="runsheet-07:30"', 1)[1].split("</tr>", 1)[0]
    assert "节目未能按时生成" in morning and "通知" not in morning
    assert "旧通知" in html and "新通知" not in html
    ahead = client.get(f"/schedule/outlets/{outlet.id}/{today + timedelta(days=1)}/runsheet")
    upcoming = ahead.get_data(as_text=True)
    assert upcoming.count("新通知") == 2 and upcoming.count("预计") == 2  # both slots, planned
    day_page = client.get(f"/schedule/outlets/{outlet.id}/{yesterday}").get_data(as_text=True)
    assert 'data-outcome="missed"' in day_page and 'data-outcome="not_confirmed"' in day_page


def test_false_alerts_of_older_versions_are_closed(  # type: ignore[no-untyped-def]
    session, settings, grid, today, make_outlet, make_announcement
) -> None:
    """An install upgraded with a "missed" 07:30 of an outlet created at 15:30: closed."""
    tz = settings.tz
    outlet = make_outlet(grid["v1"], "07:30 10, 19:30 15", name="石桥大喇叭")
    outlet.created_at = local(settings, today, "15:30")
    make_announcement("approved", area_ids=[grid["v1"].id])
    morning = Program(
        outlet_id=outlet.id,
        day=today,
        slot_id=outlet.slots[0].id,
        state=JobState.FAILED,
        missed=True,
        last_error="播出时间已过，节目未能按时生成",
    )
    session.add(morning)
    session.flush()
    alerts_svc.raise_alert(
        session,
        "program_missed",
        Message("old"),
        day=today,
        object_type="program",
        object_id=morning.id,
    )
    session.commit()
    now = local(settings, today, "16:00")
    programs.plan_day(session, today, now, tz, create=True)
    reconcile.reconcile_day(session, today, now, tz)
    session.commit()
    session.expire_all()
    assert open_alerts(session, "program_missed") == []
    assert session.get(Program, morning.id).state is JobState.CANCELLED
    assert {p.slot.label for p in day_rows(session, today).values()} == {"07:30", "19:30"}
    (row,) = operators.compliance(session, now, tz, 1, settings)
    assert (row.planned, row.pending, row.missed) == (1, 1, 0)
