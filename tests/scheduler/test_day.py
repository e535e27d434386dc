"""A clock moved through one township day: renders, the 04:00 build, posts, urgent, withdrawal."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from cms.models import (
    Alert,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    OutboxMessage,
    Program,
    Role,
)
from cms.services import announcements
from tests.helpers import shown
from tests.scheduler.helpers import local


def _programs(fresh_session, day):  # type: ignore[no-untyped-def]
    s = fresh_session()
    rows = s.scalars(select(Program).where(Program.day == day).order_by(Program.id)).all()
    return {(p.outlet.name, p.slot.label): p for p in rows}


def test_a_day(  # type: ignore[no-untyped-def]
    scheduler,
    clock,
    settings,
    session,
    grid,
    today,
    make_outlet,
    make_chat,
    make_announcement,
    make_user,
    fresh_session,
):
    """Moves through a day and checks every build and delivery."""
    make_outlet(grid["v1"], "07:30 10, 19:30 10", name="石桥大喇叭")
    make_outlet(grid["v2"], "07:30 10, 12:00 10", name="柳林大喇叭")
    chat1 = make_chat(grid["g1"], title="石桥一组群")
    chat2 = make_chat(grid["v2"], title="柳林村群")
    a = make_announcement(
        "approved", title="清扫通知", body="周六上午九点清扫村道。", repeats=1,
        area_ids=[grid["v1"].id], chat_post_time="09:00",
    )  # fmt: skip
    b = make_announcement(
        "in_review", title="待审稿件", body="请大家节约用水。", repeats=1,
        area_ids=[grid["town"].id], to_chats=False,
    )  # fmt: skip
    w = make_announcement(
        "approved", title="晚间通知", body="晚上七点开户长会。", repeats=1,
        area_ids=[grid["v1"].id], chat_post_time="18:00",
    )  # fmt: skip

    # 03:00: clips render for review and for what is approved. On this fresh install no
    # build ran yesterday, so today's programs are made at once; tomorrow's wait for 04:00.
    clock.set(local(settings, today, "03:00"))
    scheduler.run_once()
    s = fresh_session()
    clips = s.scalars(select(Clip)).all()
    by = {(c.revision.announcement_id, c.profile): c for c in clips}
    assert by[(b.id, ClipProfile.LOUDSPEAKER)].state is JobState.DONE  # the reviewer can listen
    assert (b.id, ClipProfile.VOICE) not in by  # not for chats
    assert by[(a.id, ClipProfile.VOICE)].state is JobState.DONE
    assert all(c.engine == "offline" and c.duration and c.duration > 0.5 for c in clips)
    assert set(_programs(fresh_session, today)) == {
        ("石桥大喇叭", "07:30"),
        ("石桥大喇叭", "19:30"),
        ("柳林大喇叭", "07:30"),
        ("柳林大喇叭", "12:00"),
    }
    assert _programs(fresh_session, today + timedelta(days=1)) == {}
    deliveries = s.scalars(select(Delivery)).all()
    assert {(d.revision.announcement_id, d.chat_group_id) for d in deliveries} == {
        (a.id, chat1.id),
        (w.id, chat1.id),
    }
    assert all(d.state is DeliveryState.PENDING for d in deliveries)

    # 04:00: the day's build. Every slot of every outlet has a program, today and tomorrow.
    clock.set(local(settings, today, "04:00"))
    scheduler.run_once()
    progs = _programs(fresh_session, today)
    assert set(progs) == {
        ("石桥大喇叭", "07:30"),
        ("石桥大喇叭", "19:30"),
        ("柳林大喇叭", "07:30"),
        ("柳林大喇叭", "12:00"),
    }
    morning = progs[("石桥大喇叭", "07:30")]
    assert morning.state is JobState.DONE
    assert [i["revision_id"] for i in morning.manifest["announcements"]] == [
        a.approved_revision_id,
        w.approved_revision_id,
    ]
    assert Path(morning.path).exists() and morning.duration > 5
    assert json.loads(Path(morning.path).with_suffix(".json").read_text())["total_duration"] > 5
    assert progs[("柳林大喇叭", "07:30")].path is None  # nothing targets 柳林 yet
    # Tomorrow's programs are made a day early, for operators who fetch them overnight.
    tomorrow = _programs(fresh_session, today + timedelta(days=1))
    assert len(tomorrow) == 4 and all(p.state is JobState.DONE for p in tomorrow.values())
    first_hash = morning.input_hash

    # Nothing changed: another pass rebuilds nothing.
    clock.set(local(settings, today, "05:00"))
    report = scheduler.run_once()
    assert not any(k.startswith("program.") for k in report.outcomes)
    assert _programs(fresh_session, today)[("石桥大喇叭", "07:30")].input_hash == first_hash

    # 09:00: the post goes to the 石桥 chat (through the outbox: no Telegram registered).
    clock.set(local(settings, today, "09:00"))
    scheduler.run_once()
    s = fresh_session()
    sent = s.scalar(select(Delivery).where(Delivery.revision_id == a.approved_revision_id))
    assert sent.state is DeliveryState.SENT and len(sent.message_ids) == 2
    messages = s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
    assert [(m.chat_group_id, m.kind) for m in messages] == [
        (chat1.id, "text"),
        (chat1.id, "voice"),
    ]
    assert "清扫通知" in messages[0].text and Path(messages[1].file_path).suffix == ".ogg"
    assert not s.scalars(select(OutboxMessage).where(OutboxMessage.chat_group_id == chat2.id)).all()

    # 11:57: an urgent announcement for the whole township, three minutes before 柳林's 12:00.
    clock.set(local(settings, today, "11:57"))
    make_announcement(
        "approved", title="紧急停水", body="今天下午停水。", repeats=1, priority="urgent",
        area_ids=[grid["town"].id], to_chats=False,
    )  # fmt: skip
    scheduler.plan()
    s = fresh_session()
    alert = s.scalar(select(Alert).where(Alert.kind == "urgent_late"))
    assert alert is not None and "紧急停水" in alert.message and "12:00" in alert.message
    scheduler.run_once()
    progs = _programs(fresh_session, today)
    noon = progs[("柳林大喇叭", "12:00")]
    assert [i["title"] for i in noon.manifest["announcements"]] == ["紧急停水"]
    evening = progs[("石桥大喇叭", "19:30")]
    assert [i["title"] for i in evening.manifest["announcements"]][0] == "紧急停水"
    # The morning program had already played: it is left as it was.
    assert progs[("石桥大喇叭", "07:30")].input_hash == first_hash

    # 13:00: 晚间通知 is withdrawn: out of the evening program, its pending post cancelled.
    clock.set(local(settings, today, "13:00"))
    announcements.withdraw(session, make_user(Role.EDITOR), w)
    session.commit()
    scheduler.run_once()
    progs = _programs(fresh_session, today)
    titles = [i["title"] for i in progs[("石桥大喇叭", "19:30")].manifest["announcements"]]
    assert titles == ["紧急停水", "清扫通知"]
    tomorrow = _programs(fresh_session, today + timedelta(days=1))
    titles = [i["title"] for i in tomorrow[("石桥大喇叭", "07:30")].manifest["announcements"]]
    assert "晚间通知" not in titles and "清扫通知" in titles
    s = fresh_session()
    gone = s.scalar(select(Delivery).where(Delivery.revision_id == w.approved_revision_id))
    assert gone.state is DeliveryState.CANCELLED and shown(gone.last_error) == "公告已撤回"
    assert gone.message_ids == []

    # 23:00: reconciliation finds nothing missing.
    clock.set(local(settings, today, "23:00"))
    gaps = scheduler.reconcile()
    assert (gaps.programs, gaps.deliveries) == (0, 0)
    # Nobody confirmed playing anything today: the operators' escalation is ticked too.
    assert scheduler.escalate() >= 3
    assert scheduler.escalate() == 0  # once per program
