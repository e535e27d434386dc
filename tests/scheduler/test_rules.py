"""Retries and backoff, failures that stay contained, catch-up and missed slots, the lexicon."""

from __future__ import annotations

import copy
from datetime import timedelta

import pytest
from sqlalchemy import select

from cms import queue
from cms.channels import ChatUnavailable, OutcomeUnknown, TemporaryFailure
from cms.jobs import deliveries
from cms.models import (
    Alert,
    ChatGroup,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    LexiconEntry,
    Program,
)
from tests.helpers import shown
from tests.scheduler.helpers import local

FAILED = (JobState.FAILED,)


def _delivery(fresh_session, revision_id, chat_id=None):  # type: ignore[no-untyped-def]
    stmt = select(Delivery).where(Delivery.revision_id == revision_id)
    if chat_id is not None:
        stmt = stmt.where(Delivery.chat_group_id == chat_id)
    return fresh_session().scalar(stmt)


def test_backoff_doubles_and_honours_retry_after() -> None:
    assert queue.backoff(1) == timedelta(seconds=30)
    assert queue.backoff(3) == timedelta(seconds=120)
    assert queue.backoff(2, retry_after=300) == timedelta(seconds=300)
    assert queue.backoff(30) == queue.BACKOFF_CAP


def test_temporary_failures_retry_with_backoff_then_fail_then_retry_button(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_chat, make_announcement, fake_channel,
    fresh_session, session,
):  # fmt: skip
    chat = make_chat(grid["g1"])
    ann = make_announcement(
        "approved", body="请按时缴纳医保。", to_loudspeaker=False, area_ids=[grid["v1"].id],
        chat_post_time="09:00",
    )  # fmt: skip
    clock.set(local(settings, today, "09:00"))
    fake_channel.script = [TemporaryFailure("429", retry_after=100)] * queue.MAX_ATTEMPTS
    scheduler.run_once()
    assert fake_channel.calls == 1
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.PENDING and row.attempts == 1
    assert row.next_attempt_at == clock.now() + timedelta(seconds=100)  # retry_after wins over 30 s
    clock.advance(99)
    scheduler.run_once()
    assert fake_channel.calls == 1  # not before the time
    for attempt in range(2, queue.MAX_ATTEMPTS + 1):
        clock.set(_delivery(fresh_session, ann.approved_revision_id).next_attempt_at)
        scheduler.run_once()
        assert fake_channel.calls == attempt
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.FAILED and shown(row.last_error) == "429"
    clock.advance(timedelta(hours=3))
    scheduler.run_once()
    assert fake_channel.calls == queue.MAX_ATTEMPTS  # failed stays failed
    # The retry button puts it back; then it goes out (text + voice note).
    with scheduler.ctx.sessions.begin() as s:
        assert queue.requeue(
            s, Delivery, row.id, from_states=(DeliveryState.FAILED,), ready=DeliveryState.PENDING
        )
    scheduler.run_once()
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.SENT and len(row.message_ids) == 2
    assert [part for _, part in fake_channel.sent] == ["text", "voice"]
    assert row.chat_group_id == chat.id


def test_outcome_unknown_is_uncertain_and_never_retried(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_chat, make_announcement, fake_channel,
    fresh_session,
):  # fmt: skip
    make_chat(grid["g1"])
    ann = make_announcement(
        "approved", body="请按时缴纳医保。", to_loudspeaker=False, area_ids=[grid["v1"].id],
        chat_post_time="09:00",
    )  # fmt: skip
    clock.set(local(settings, today, "09:00"))
    fake_channel.script = [OutcomeUnknown("timeout after send")]
    scheduler.run_once()
    for _ in range(3):
        clock.advance(timedelta(hours=1))
        scheduler.run_once()
    assert fake_channel.calls == 1
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.UNCERTAIN and "timeout" in row.last_error


def test_one_bad_announcement_or_chat_never_blocks_the_others(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_chat, make_announcement,
    fake_channel, fresh_session,
):  # fmt: skip
    make_outlet(grid["v1"], "07:30 10", name="石桥大喇叭")
    gone = make_chat(grid["g1"], title="已解散的群")
    moved = make_chat(grid["g1"], title="升级的群")
    fine = make_chat(grid["v1"], title="正常的群")
    bad = make_announcement(
        "approved",
        title="只有表情",
        body="🎉🎉🎉",
        area_ids=[grid["v1"].id],
        chat_post_time="06:00",
    )
    good = make_announcement(
        "approved", title="正常公告", body="今晚八点停电检修。", repeats=1,
        area_ids=[grid["v1"].id], chat_post_time="06:00",
    )  # fmt: skip
    clock.set(local(settings, today, "06:00"))
    # One chat is gone, another moved to a new id, the rest are fine.
    fake_channel.by_chat = {
        gone.chat_id: ChatUnavailable("bot was kicked"),
        moved.chat_id: "-100777",
    }
    scheduler.run_once()
    s = fresh_session()
    bad_clip = s.scalar(
        select(Clip).where(
            Clip.revision_id == bad.approved_revision_id, Clip.profile == ClipProfile.LOUDSPEAKER
        )
    )
    assert bad_clip.state is JobState.FAILED and "没有可朗读" in bad_clip.last_error
    assert bad_clip.attempts == 1  # a text that cannot be spoken is not retried
    program = s.scalar(select(Program).where(Program.day == today))
    assert program.state is JobState.DONE
    assert [a["title"] for a in program.manifest["announcements"]] == ["正常公告"]
    assert [k["title"] for k in program.manifest["skipped"]] == ["只有表情"]
    # After the slot, reconciliation reports the gap: the program went out without it.
    clock.set(local(settings, today, "09:00"))
    assert scheduler.reconcile().programs == 1
    alert = fresh_session().scalar(select(Alert).where(Alert.kind == "program_incomplete"))
    assert "只有表情" in alert.message
    chats = {c.id: c for c in s.scalars(select(ChatGroup))}
    assert (
        not chats[gone.id].active and shown(chats[gone.id].deactivated_reason) == "bot was kicked"
    )
    assert chats[moved.id].chat_id == "-100777" and chats[moved.id].active
    states = {
        (d.revision.announcement_id, d.chat_group_id): d.state for d in s.scalars(select(Delivery))
    }
    assert states[(good.id, fine.id)] is DeliveryState.SENT
    assert states[(good.id, moved.id)] is DeliveryState.SENT
    # The bad announcement's post goes out as text: its voice note failed, not the post.
    assert states[(bad.id, fine.id)] is DeliveryState.SENT
    assert {states[(bad.id, gone.id)], states[(good.id, gone.id)]} <= {
        DeliveryState.FAILED,
        DeliveryState.CANCELLED,
    }


def test_late_start_catches_up_within_grace_and_marks_older_slots_missed(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session
):
    make_outlet(grid["v1"], "07:00 10, 07:30 10, 19:30 10", name="石桥大喇叭")
    make_announcement(
        "approved", body="今晚八点停电检修。", repeats=1, area_ids=[grid["v1"].id], to_chats=False
    )
    # The PC was off from before the 04:00 build until 07:40.
    clock.set(local(settings, today, "07:40"))
    scheduler.run_once()
    s = fresh_session()
    progs = {p.slot.label: p for p in s.scalars(select(Program).where(Program.day == today))}
    assert progs["07:00"].missed and progs["07:00"].state is JobState.FAILED
    assert progs["07:30"].state is JobState.DONE and not progs["07:30"].missed  # caught up
    assert progs["19:30"].state is JobState.DONE
    alerts = s.scalars(select(Alert).where(Alert.kind == "program_missed")).all()
    assert len(alerts) == 1 and "07:00" in alerts[0].message
    # Reconciliation later that day: the caught-up 07:30 was ready 10 minutes late, within
    # the grace, so only 07:00 is a gap, and it is reported once.
    clock.set(local(settings, today, "23:00"))
    scheduler.reconcile()
    assert len(fresh_session().scalars(select(Alert)).all()) == 1


def test_lexicon_entry_rerenders_only_affected_clips_and_their_programs(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session,
    session,
):  # fmt: skip
    make_outlet(grid["v1"], "19:30 10", name="石桥大喇叭")
    hit = make_announcement(
        "approved", body="石桥村今晚开会。", repeats=1, area_ids=[grid["v1"].id], to_chats=False
    )
    other = make_announcement(
        "approved", body="注意防火。", repeats=1, area_ids=[grid["v1"].id], to_chats=False
    )
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    s = fresh_session()
    before = {c.revision_id: c for c in s.scalars(select(Clip))}
    program = s.scalar(select(Program).where(Program.day == today))
    old_hash, old_duration = program.input_hash, program.duration
    session.add(LexiconEntry(written="石桥村", spoken="石乔村"))
    session.commit()
    report = scheduler.plan()
    assert report.planned_clips == 1
    s = fresh_session()
    after = {c.revision_id: c for c in s.scalars(select(Clip))}
    assert after[hit.approved_revision_id].state is JobState.PENDING
    assert after[other.approved_revision_id].state is JobState.DONE
    assert (
        after[other.approved_revision_id].cache_key == before[other.approved_revision_id].cache_key
    )
    scheduler.run_once()
    s = fresh_session()
    clip = s.scalar(select(Clip).where(Clip.revision_id == hit.approved_revision_id))
    assert clip.state is JobState.DONE and clip.path != before[hit.approved_revision_id].path
    program = s.scalar(select(Program).where(Program.day == today))
    assert program.input_hash != old_hash and program.state is JobState.DONE
    assert program.duration != old_duration or program.path


def test_program_retry_button_and_overrun_flag(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session
):
    make_outlet(grid["v1"], "19:30 1", name="石桥大喇叭")
    make_announcement(
        "approved",
        body="各位村民请注意，本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加，自带工具。",
        repeats=5,
        area_ids=[grid["v1"].id],
        to_chats=False,
    )
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    program = fresh_session().scalar(select(Program).where(Program.day == today))
    assert program.duration > 60 and program.overrun
    with scheduler.ctx.sessions.begin() as s:
        # only failed programs can be retried
        assert not queue.requeue(s, Program, program.id, from_states=FAILED, ready=JobState.PENDING)
        s.get(Program, program.id).state = JobState.FAILED
    with scheduler.ctx.sessions.begin() as s:
        assert queue.requeue(s, Program, program.id, from_states=FAILED, ready=JobState.PENDING)
    scheduler.run_once()
    assert fresh_session().get(Program, program.id).state is JobState.DONE


def test_an_expired_claim_is_taken_again_and_the_late_finisher_is_ignored(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_announcement, fresh_session
):
    ann = make_announcement("in_review", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()
    s = fresh_session()
    clip = s.scalar(select(Clip).where(Clip.revision_id == ann.current.id))
    # A render that hung: claimed by this very process, its hold long over.
    with scheduler.ctx.sessions.begin() as t:
        assert queue.claim(
            t, Clip, clip.id, ready=JobState.PENDING, running=JobState.RUNNING,
            worker="test-worker/hung", now=clock.now(), hold=timedelta(minutes=10),
        )  # fmt: skip
    clock.advance(timedelta(minutes=11))
    scheduler.run_once()
    s = fresh_session()
    done = s.get(Clip, clip.id)
    assert done.state is JobState.DONE and done.claimed_by.startswith("test-worker/")
    assert done.claimed_by != "test-worker/hung"
    # The hung job finally returns: its claim is gone, so it changes nothing.
    with scheduler.ctx.sessions.begin() as t:
        assert not queue.finish(
            t, Clip, clip.id, running=JobState.RUNNING, new=JobState.FAILED,
            worker="test-worker/hung", last_error="late",
        )  # fmt: skip
    assert fresh_session().get(Clip, clip.id).state is JobState.DONE


def test_taking_the_lease_resumes_work_of_a_dead_scheduler(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_announcement, fresh_session
):
    ann = make_announcement("in_review", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()
    clip_id = fresh_session().scalar(select(Clip.id).where(Clip.revision_id == ann.current.id))
    with scheduler.ctx.sessions.begin() as t:
        queue.claim(
            t, Clip, clip_id, ready=JobState.PENDING, running=JobState.RUNNING,
            worker="otherhost:1:dead/x", now=clock.now(), hold=timedelta(hours=1),
        )  # fmt: skip
    assert scheduler.release_orphans() == 1
    row = fresh_session().get(Clip, clip_id)
    assert row.state is JobState.PENDING and row.attempts == 0 and row.claimed_by is None


def test_changed_slots_reach_the_programs(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session,
    session, admin,
):  # fmt: skip
    from cms.services import outlets

    outlet = make_outlet(grid["v1"], "19:30 10", name="石桥大喇叭")
    make_announcement(
        "approved", body="注意防火。", repeats=1, area_ids=[grid["v1"].id], to_chats=False
    )
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    first = fresh_session().scalar(select(Program).where(Program.day == today))
    assert first.slot.label == "19:30" and not first.overrun
    outlets.save_outlet(
        session, admin, outlet, name=outlet.name, kind="loudspeaker", area_id=outlet.area_id,
        slots="20:00 10, 21:00 1",
    )  # fmt: skip
    session.commit()
    scheduler.run_once()
    s = fresh_session()
    progs = {p.slot.label: p for p in s.scalars(select(Program).where(Program.day == today))}
    assert set(progs) == {"20:00", "21:00"}
    assert all(p.state is JobState.DONE for p in progs.values())
    assert progs["20:00"].path.endswith("-2000.mp3")
    # A one-minute slot with the same content: the length is part of the inputs.
    outlets.save_outlet(
        session, admin, outlet, name=outlet.name, kind="loudspeaker", area_id=outlet.area_id,
        slots="20:00 10, 21:00 10",
    )  # fmt: skip
    session.commit()
    report = scheduler.run_once()
    assert (
        report.outcomes.get("program.built", 0) + report.outcomes.get("program.unchanged", 0) >= 1
    )


def test_a_move_to_an_id_bound_elsewhere_still_records_the_delivery(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_chat, make_announcement, fake_channel,
    fresh_session,
):  # fmt: skip
    moving = make_chat(grid["g1"])
    taken = make_chat(grid["g2"])
    ann = make_announcement(
        "approved", body="请按时缴纳医保。", to_loudspeaker=False, area_ids=[grid["v1"].id],
        chat_post_time="09:00",
    )  # fmt: skip
    clock.set(local(settings, today, "09:00"))
    fake_channel.script = [taken.chat_id]
    scheduler.run_once()
    row = _delivery(fresh_session, ann.approved_revision_id, moving.id)
    assert row.state is DeliveryState.SENT
    assert fresh_session().get(ChatGroup, moving.id).chat_id == moving.chat_id


class _Crash(BaseException):
    """Stands in for SIGKILL inside a send: nothing after it runs."""


def _restart(scheduler, name):  # type: ignore[no-untyped-def]
    """A new process: another worker name, which takes the lease and resumes orphans."""
    from cms.scheduler.core import Scheduler

    ctx = copy.copy(scheduler.ctx)
    ctx.worker = name
    again = Scheduler(ctx)
    again.release_orphans()
    return again


def test_duplicate_window_is_one_part_in_flight(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_chat, make_announcement, fake_channel,
    fresh_session,
):  # fmt: skip
    chat = make_chat(grid["g1"])
    ann = make_announcement(
        "approved", body="请按时缴纳医保。", to_loudspeaker=False, area_ids=[grid["v1"].id],
        chat_post_time="09:00",
    )  # fmt: skip
    clock.set(local(settings, today, "09:00"))
    scheduler.plan()
    scheduler.render_due()
    delivery = _delivery(fresh_session, ann.approved_revision_id)
    # Crash 1: the text was accepted by the platform, the process died before recording it.
    original = fake_channel.send

    def crash_before_record(notice, progress):  # type: ignore[no-untyped-def]
        return original(notice, lambda ids: (_ for _ in ()).throw(_Crash()))

    fake_channel.send = crash_before_record  # type: ignore[method-assign]
    with pytest.raises(_Crash):
        deliveries.send_one(scheduler.ctx, delivery.id)
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.SENDING and row.message_ids == []
    # Crash 2 (after a restart): the text was recorded this time, then the process died.
    calls = {"n": 0}

    def crash_after_first_record(notice, progress):  # type: ignore[no-untyped-def]
        def record_then_die(ids):  # type: ignore[no-untyped-def]
            progress(ids)
            calls["n"] += 1
            raise _Crash()

        return original(notice, record_then_die)

    fake_channel.send = crash_after_first_record  # type: ignore[method-assign]
    second = _restart(scheduler, "second-process")
    with pytest.raises(_Crash):
        deliveries.send_one(second.ctx, delivery.id)
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.SENDING and len(row.message_ids) == 1 and calls["n"] == 1
    # Final restart: only the voice note is left to send.
    fake_channel.send = original  # type: ignore[method-assign]
    third = _restart(second, "third-process")
    assert deliveries.send_one(third.ctx, delivery.id) == "sent"
    row = _delivery(fresh_session, ann.approved_revision_id)
    assert row.state is DeliveryState.SENT and len(row.message_ids) == 2
    # The text went out twice (the first crash fell between sending and recording: the
    # documented window), the voice note once; nothing was lost.
    assert fake_channel.sent == [
        (chat.chat_id, "text"),
        (chat.chat_id, "text"),
        (chat.chat_id, "voice"),
    ]
