"""Playback receipts, late marking, escalation of unconfirmed programs, compliance numbers."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from sqlalchemy import select

from cms.models import Alert, DownloadEvent, JobState, Receipt, Role, Setting
from cms.services import operators as svc
from cms.services.errors import PermissionDenied, WorkflowError


def at(settings, day, hh: int, mm: int = 0) -> datetime:  # type: ignore[no-untyped-def]
    return datetime.combine(day, time(hh, mm), tzinfo=settings.tz).astimezone(UTC)


def test_confirmed_once_however_often(
    session, settings, make_outlet, make_program, make_user, day
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    program = make_program(outlet, day, 0)
    operator = make_user(Role.OPERATOR)
    operator.outlets.append(outlet)
    session.commit()
    first, created = svc.confirm_playback(
        session, program, operator, "bot", at(settings, day, 7, 41), tz=settings.tz
    )
    assert created and first.via == "bot" and not first.late
    for via in ("web", "link", "bot"):
        again, created = svc.confirm_playback(
            session, program, None, via, at(settings, day, 9), tz=settings.tz
        )
        assert not created and again.id == first.id and again.via == "bot"
    session.commit()
    assert len(session.scalars(select(Receipt)).all()) == 1


def test_late_after_slot_end_plus_grace(session, settings, make_outlet, make_program, day) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(minutes=10)  # 07:30–07:40, grace 60 minutes by default
    on_time = make_program(outlet, day, 0)
    receipt, _ = svc.confirm_playback(
        session, on_time, None, "link", at(settings, day, 8, 40), tz=settings.tz
    )
    assert not receipt.late
    late = make_program(outlet, day - timedelta(days=1), 0)
    receipt, _ = svc.confirm_playback(
        session, late, None, "link", at(settings, day, 8, 41), tz=settings.tz
    )
    assert receipt.late
    # The grace is an admin setting.
    session.add(Setting(key=svc.LATE_GRACE_SETTING, value=0))
    other = make_program(outlet, day, 1)  # 19:00–19:10
    receipt, _ = svc.confirm_playback(
        session, other, None, "web", at(settings, day, 19, 11), tz=settings.tz
    )
    assert receipt.late


def test_confirm_refusals(session, settings, make_outlet, make_program, make_user, day) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    program = make_program(outlet, day, 1)
    with pytest.raises(WorkflowError):  # the 19:00 slot has not started
        svc.confirm_playback(session, program, None, "link", at(settings, day, 18), tz=settings.tz)
    stranger = make_user(Role.OPERATOR)
    with pytest.raises(PermissionDenied):
        svc.confirm_playback(
            session, program, stranger, "bot", at(settings, day, 20), tz=settings.tz
        )
    unbuilt = make_program(outlet, day, 0, state=JobState.FAILED)
    with pytest.raises(WorkflowError):
        svc.confirm_playback(session, unbuilt, None, "link", at(settings, day, 20), tz=settings.tz)
    with pytest.raises(svc.InvalidVia):
        svc.confirm_playback(session, program, None, "sms", at(settings, day, 20), tz=settings.tz)
    assert session.scalars(select(Receipt)).all() == []
    admin = make_user(Role.ADMIN)
    receipt, created = svc.confirm_playback(
        session, program, admin, "web", at(settings, day, 20), tz=settings.tz
    )
    assert created and receipt.user_id == admin.id


def test_escalation_after_configurable_time(
    session, settings, make_outlet, make_program, day
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(minutes=10)
    morning = make_program(outlet, day, 0)  # ends 07:40; escalated from 09:40 by default
    evening = make_program(outlet, day, 1)
    make_program(make_outlet(), day, 0, state=JobState.PENDING)  # not built: not escalated here
    assert svc.escalate_unconfirmed(session, at(settings, day, 9, 39), settings) == []
    alerts = svc.escalate_unconfirmed(session, at(settings, day, 9, 40), settings)
    session.commit()
    assert [(a.kind, a.object_id, a.day) for a in alerts] == [
        (svc.UNCONFIRMED_ALERT, morning.id, day)
    ]
    assert "07:30" in alerts[0].message and outlet.name in alerts[0].message
    assert alerts[0].notified_at is None  # for the bot to send and stamp
    # Ticking again raises nothing new.
    assert svc.escalate_unconfirmed(session, at(settings, day, 10), settings) == []
    # A confirmation resolves the alert (a late one still counts as played).
    svc.confirm_playback(session, morning, None, "link", at(settings, day, 10, 5), tz=settings.tz)
    session.commit()
    assert session.scalar(select(Alert)).resolved_at is not None
    assert svc.open_unconfirmed_alerts(session) == []
    # A shorter wait set by the admin.
    session.add(Setting(key=svc.ESCALATE_SETTING, value=5))
    session.commit()
    assert svc.escalate_unconfirmed(session, at(settings, day, 19, 14), settings) == []
    (alert,) = svc.escalate_unconfirmed(session, at(settings, day, 19, 15), settings)
    assert alert.object_id == evening.id


def test_escalation_wait_from_settings(session, settings, make_outlet, make_program, day) -> None:  # type: ignore[no-untyped-def]
    settings = settings.with_(escalate_after_minutes=0)
    outlet = make_outlet(minutes=10)
    make_program(outlet, day, 0)
    assert len(svc.escalate_unconfirmed(session, at(settings, day, 7, 40), settings)) == 1


def test_compliance_numbers(session, settings, make_outlet, make_program, grid, day) -> None:  # type: ignore[no-untyped-def]
    # Two outlets in 石桥村 (one in its group, one in the village itself), one in 柳林村.
    a = make_outlet(area=grid["g1"])
    b = make_outlet(area=grid["v1"], slots=(time(8, 0),))
    c = make_outlet(area=grid["g2"])
    a1, a2 = make_program(a, day, 0), make_program(a, day, 1)
    b1 = make_program(b, day, 0)
    c1 = make_program(c, day, 0)
    make_program(c, day, 1, state=JobState.FAILED)
    yesterday = make_program(a, day - timedelta(days=1), 0)
    yesterday.missed = True  # missed at 07:30, retried, built at 10:00: built late
    yesterday.built_at = at(settings, day - timedelta(days=1), 10)
    svc.record_download(session, a.id, day, "mp3", a1.id)
    svc.record_download(session, a.id, day, "zip", a2.id)
    svc.record_download(session, b.id, day, "rss")  # a feed fetch is not a program download
    svc.record_download(session, c.id, day, "loop", c1.id)
    svc.confirm_playback(session, a1, None, "link", at(settings, day, 7, 45), tz=settings.tz)
    svc.confirm_playback(session, b1, None, "web", at(settings, day, 23), tz=settings.tz)  # late
    svc.confirm_playback(session, c1, None, "bot", at(settings, day, 7, 50), tz=settings.tz)
    session.commit()
    night = at(settings, day, 23, 30)
    rows = {(r.day, r.village): r for r in svc.compliance(session, night, settings.tz, 30)}
    shiqiao = rows[(day, "石桥村")]
    # 07:30 confirmed on time, 08:00 confirmed late, 19:00 never confirmed.
    assert (
        shiqiao.planned,
        shiqiao.on_time,
        shiqiao.late,
        shiqiao.unconfirmed,
        shiqiao.built,
        shiqiao.downloaded,
        shiqiao.confirmed,
    ) == (3, 1, 1, 1, 3, 2, 2)
    liulin = rows[(day, "柳林村")]
    assert (liulin.planned, liulin.on_time, liulin.missed, liulin.built, liulin.downloaded) == (
        2,
        1,
        1,
        1,
        1,
    )
    before = rows[(day - timedelta(days=1), "石桥村")]
    assert (before.planned, before.built_late, before.built, before.confirmed) == (1, 1, 1, 0)
    assert set(rows) == {(day, "石桥村"), (day, "柳林村"), (day - timedelta(days=1), "石桥村")}
    # At noon the 19:00 programs are still ahead: pending, and the 19:00 failure not yet missed.
    noon = {r.village: r for r in svc.compliance(session, at(settings, day, 12), settings.tz, 1)}
    assert (noon["石桥村"].pending, noon["柳林村"].pending, noon["柳林村"].missed) == (1, 1, 0)
    # Outside the window: not counted.
    assert svc.compliance(session, night - timedelta(days=2), settings.tz, 1) == []
    totals = svc.daily_totals(svc.compliance(session, night, settings.tz, 30), day, 30)
    assert len(totals) == 30 and totals[-1].day == day and totals[0].day == day - timedelta(days=29)
    assert (totals[-1].built, totals[-1].downloaded, totals[-1].confirmed) == (4, 3, 3)
    assert totals[-2].planned == 1 and totals[0].planned == 0


def test_download_dedupe(session, make_outlet, make_program, day) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    program = make_program(outlet, day, 0)
    now = datetime.now(UTC)
    assert svc.record_download(session, outlet.id, day, "mp3", program.id, now=now) is not None
    session.flush()
    assert (
        svc.record_download(
            session, outlet.id, day, "mp3", program.id, now=now + timedelta(minutes=5)
        )
        is None
    )
    assert svc.record_download(session, outlet.id, day, "zip", program.id, now=now) is not None
    session.flush()
    assert (
        svc.record_download(
            session, outlet.id, day, "mp3", program.id, now=now + timedelta(minutes=11)
        )
        is not None
    )
    session.flush()
    assert len(session.scalars(select(DownloadEvent)).all()) == 3
    with pytest.raises(ValueError):
        svc.record_download(session, outlet.id, day, "exe", program.id)


def test_awaiting_confirmation_for_the_bot(
    session, settings, make_outlet, make_program, make_user, day
) -> None:  # type: ignore[no-untyped-def]
    mine, other = make_outlet(), make_outlet()
    operator = make_user(Role.OPERATOR)
    operator.outlets.append(mine)
    session.commit()
    yesterday = make_program(mine, day - timedelta(days=1), 1)
    morning = make_program(mine, day, 0)
    make_program(mine, day, 1)  # 19:00, not started at noon
    make_program(other, day, 0)  # not this operator's
    make_program(mine, day - timedelta(days=5), 0)  # too old for the bot's list
    noon = at(settings, day, 12)
    assert svc.awaiting_confirmation(session, operator, noon, settings.tz) == [yesterday, morning]
    svc.confirm_playback(session, morning, operator, "bot", noon, tz=settings.tz)
    assert svc.awaiting_confirmation(session, operator, noon, settings.tz) == [yesterday]
    assert svc.awaiting_confirmation(session, make_user(Role.OPERATOR), noon, settings.tz) == []
