"""立即插播: started on approval or under the emergency rule, built once, linked per outlet,
announced to operators, first in every later program of the day, ended by the reviewer."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.clock import ManualClock
from cms.jobs import breakin as job
from cms.jobs.context import Context
from cms.models import (
    Announcement,
    AuditLog,
    BreakIn,
    BreakInOutlet,
    ChatAccount,
    JobState,
    Outlet,
    Role,
    Status,
    User,
)
from cms.services import announcements as anns
from cms.services import breakin as svc
from cms.services import programs as programs_svc
from cms.services.errors import PermissionDenied, ValidationError, WorkflowError
from tests.scheduler.helpers import FakeChannel


@pytest.fixture
def urgent(
    make_announcement: Callable[..., Announcement], grid: dict[str, Any]
) -> Callable[..., Announcement]:
    def make(state: str = "in_review", **kw: Any) -> Announcement:
        return make_announcement(
            state,
            title="寒潮蓝色预警",
            body="今夜到明天气温下降八到十度，请各户做好防寒，关好门窗，注意用火用电安全。",
            priority="urgent",
            area_ids=[grid["v1"].id],
            **kw,
        )

    return make


@pytest.fixture
def outlets(make_outlet: Callable[..., Outlet], grid: dict[str, Any]) -> tuple[Outlet, Outlet]:
    """One outlet the notice reaches (石桥村's group), one it does not (柳林村)."""
    return make_outlet(grid["g1"]), make_outlet(grid["v2"])


def test_a_reviewer_sends_an_urgent_notice_now_on_approval(
    session: Session,
    ctx: Context,
    clock: ManualClock,
    urgent: Callable[..., Announcement],
    outlets: tuple[Outlet, Outlet],
    make_user: Callable[..., User],
    fake_channel: FakeChannel,
    fresh_session: Callable[[], Session],
) -> None:
    reached, other = outlets
    operator = make_user(Role.OPERATOR)
    reached.operators.append(operator)
    session.add(ChatAccount(user_id=operator.id, platform="telegram", external_id="777"))
    session.commit()
    ann = urgent()
    reviewer = make_user(Role.REVIEWER)
    anns.approve(session, reviewer, ann, "同意，立即插播")
    row = svc.start(session, reviewer, ann, rule="approval", today=ctx.today(), now=clock.now())
    session.commit()
    assert job.run_due(ctx) == 1

    s = fresh_session()
    row = s.get(BreakIn, row.id)
    assert row is not None and row.state is JobState.DONE and row.outlet_count == 1
    copies = list(s.scalars(select(BreakInOutlet).where(BreakInOutlet.break_in_id == row.id)))
    assert [c.outlet_id for c in copies] == [reached.id]
    # One insert, shared: the outlet's copy is a hard link of it (the same bytes, one inode).
    insert, copy = Path(row.path or ""), Path(copies[0].path)
    assert os.stat(insert).st_ino == os.stat(copy).st_ino
    manifest = json.loads(insert.with_suffix(".json").read_text("utf-8"))
    kinds = [seg["kind"] for seg in manifest["segments"]]
    assert kinds == ["chime", "announcement", "announcement"]  # chime, read twice
    assert row.duration and row.duration > 3
    # The operator of the reached outlet hears of it in their linked chat, once.
    assert fake_channel.sent == [("777", "text")]
    assert job.notify(ctx, row.id) == 0
    # Operators' pages and now.mp3 see it; the other outlet plays nothing.
    playing = svc.playing(s, [reached.id, other.id], ctx.today())
    assert [p.title for p in playing[reached.id]] == ["寒潮蓝色预警"]
    assert playing[other.id] == []
    actions = set(s.scalars(select(AuditLog.action)))
    assert {"announcement.approve", "breakin.start"} <= actions


def test_every_later_program_of_the_day_starts_with_the_break_in(
    session: Session,
    ctx: Context,
    clock: ManualClock,
    urgent: Callable[..., Announcement],
    make_announcement: Callable[..., Announcement],
    outlets: tuple[Outlet, Outlet],
    make_user: Callable[..., User],
    grid: dict[str, Any],
) -> None:
    reached, _other = outlets
    # An older urgent notice comes first in the usual order (urgent, then by id).
    make_announcement("approved", title="停水通知", priority="urgent", area_ids=[grid["v1"].id])
    ann = urgent("approved")
    before = programs_svc.outlet_announcements(session, reached, ctx.today())
    assert [a.id for a in before][-1] == ann.id
    svc.start(session, make_user(Role.REVIEWER), ann, rule="reviewer", today=ctx.today())
    session.commit()
    after = programs_svc.outlet_announcements(session, reached, ctx.today())
    assert after[0].id == ann.id
    # Tomorrow's programs keep their usual order: a break-in lasts its day.
    tomorrow = programs_svc.outlet_announcements(session, reached, ctx.today() + timedelta(days=1))
    assert tomorrow[0].id != ann.id


def test_the_reviewer_ends_it_and_everything_is_audited(
    session: Session,
    ctx: Context,
    urgent: Callable[..., Announcement],
    outlets: tuple[Outlet, Outlet],
    make_user: Callable[..., User],
    fresh_session: Callable[[], Session],
) -> None:
    reached, _ = outlets
    reviewer = make_user(Role.REVIEWER)
    row = svc.start(session, reviewer, urgent("approved"), rule="reviewer", today=ctx.today())
    session.commit()
    job.run_due(ctx)
    with pytest.raises(WorkflowError):  # one break-in of a notice at a time
        svc.start(session, reviewer, row.announcement, rule="reviewer", today=ctx.today())
    session.rollback()
    svc.end(session, reviewer, session.get(BreakIn, row.id))  # type: ignore[arg-type]
    session.commit()
    s = fresh_session()
    assert svc.playing(s, [reached.id], ctx.today())[reached.id] == []
    assert svc.front_announcements(s, ctx.today()) == set()
    with pytest.raises(WorkflowError):
        svc.end(s, reviewer, s.get(BreakIn, row.id))  # type: ignore[arg-type]
    entries = list(s.scalars(select(AuditLog).where(AuditLog.object_type == "breakin")))
    assert [e.action for e in entries] == ["breakin.start", "breakin.end"]


def test_who_may_send_what(
    session: Session,
    ctx: Context,
    urgent: Callable[..., Announcement],
    make_announcement: Callable[..., Announcement],
    make_user: Callable[..., User],
    outlets: tuple[Outlet, Outlet],
) -> None:
    today = ctx.today()
    reviewer, admin = make_user(Role.REVIEWER), make_user(Role.ADMIN)
    normal = make_announcement("approved", title="普通通知")
    with pytest.raises(WorkflowError):  # only urgent notices break in
        svc.start(session, reviewer, normal, rule="reviewer", today=today)
    with pytest.raises(PermissionDenied):
        svc.start(session, make_user(Role.EDITOR), urgent("approved"), rule="reviewer", today=today)
    in_review = urgent("in_review")
    with pytest.raises(WorkflowError):  # a reviewer sends approved notices only
        svc.start(session, reviewer, in_review, rule="reviewer", today=today)
    with pytest.raises(PermissionDenied):  # the emergency rule is the admin's
        svc.start(session, reviewer, in_review, rule="emergency", today=today, reason="山火")
    with pytest.raises(ValidationError):  # and needs a written reason
        svc.start(session, admin, in_review, rule="emergency", today=today, reason=" ")
    later = urgent("approved", start_date=(today + timedelta(days=2)).isoformat())
    with pytest.raises(WorkflowError):  # not playing today
        svc.start(session, reviewer, later, rule="reviewer", today=today)
    session.rollback()

    # The emergency rule approves the current text at once, and says so in the audit log.
    row = svc.start(
        session, admin, in_review, rule="emergency", today=today, reason="山火逼近石桥村"
    )
    session.commit()
    assert in_review.status is Status.APPROVED and row.reason == "山火逼近石桥村"
    audit = session.scalar(
        select(AuditLog).where(AuditLog.action == "announcement.emergency_approve")
    )
    assert audit is not None and audit.detail["reason"] == "山火逼近石桥村"
    assert job.run_due(ctx) == 1


def test_a_break_in_whose_clip_failed_raises_an_alert(
    session: Session,
    ctx: Context,
    urgent: Callable[..., Announcement],
    outlets: tuple[Outlet, Outlet],
    make_user: Callable[..., User],
    fresh_session: Callable[[], Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from audio.errors import TextError

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TextError("无法朗读")

    monkeypatch.setattr(type(ctx.renderer), "render", broken)
    row = svc.start(
        session, make_user(Role.REVIEWER), urgent("approved"), rule="reviewer", today=ctx.today()
    )
    session.commit()
    assert job.build_one(ctx, row.id) == "failed"
    s = fresh_session()
    assert s.get(BreakIn, row.id).state is JobState.FAILED  # type: ignore[union-attr]
    from cms.models import Alert

    assert s.scalar(select(Alert.kind).where(Alert.object_type == "break_in")) == "breakin_failed"


def test_a_break_in_left_running_by_a_dead_scheduler_is_built_by_the_next(
    session: Session,
    ctx: Context,
    clock: ManualClock,
    urgent: Callable[..., Announcement],
    outlets: tuple[Outlet, Outlet],
    make_user: Callable[..., User],
    fresh_session: Callable[[], Session],
) -> None:
    from cms import queue
    from cms.scheduler.core import Scheduler

    row = svc.start(
        session, make_user(Role.REVIEWER), urgent("approved"), rule="reviewer", today=ctx.today()
    )
    session.commit()
    # A scheduler claimed it and was killed before finishing (its claim still runs).
    assert queue.claim(
        session, BreakIn, row.id, ready=JobState.PENDING, running=JobState.RUNNING,
        worker="dead-host-1/abcd", now=clock.now(), hold=job.HOLD,
    )  # fmt: skip
    session.commit()
    assert job.run_due(ctx) == 0  # not due: claimed
    # The next process to take the lease hands it back at once, and builds it.
    assert Scheduler(ctx).release_orphans() == 1
    assert job.run_due(ctx) == 1
    s = fresh_session()
    assert s.get(BreakIn, row.id).state is JobState.DONE  # type: ignore[union-attr]
    assert s.query(BreakInOutlet).count() == 1
