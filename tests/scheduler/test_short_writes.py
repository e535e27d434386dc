"""Short write transactions (issue 22): the scheduler re-renders only what changed, and a
planning pass that finds nothing to change never takes the writer lock."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cms import db
from cms.models import Clip, ClipProfile, JobState, LexiconEntry, Program, Role
from cms.services import announcements
from tests.scheduler.helpers import local

PLAN_WRITE = "cms.scheduler.core.Scheduler.plan.<locals>.work"


def _clips(fresh_session: Any, revision_id: int) -> dict[ClipProfile, Clip]:
    rows = fresh_session().scalars(select(Clip).where(Clip.revision_id == revision_id))
    return {clip.profile: clip for clip in rows}


def _new_revision(
    session: Session, make_user: Any, content: Any, ann: Any, author: Any, **changes: Any
) -> int:
    """Edit the approved ``ann`` as its author, submit it and have a reviewer approve it."""
    announcements.update(session, author, ann, content(**changes), today=ann.current.start_date)
    announcements.submit(session, author, ann)
    announcements.approve(session, make_user(Role.REVIEWER), ann)
    session.commit()
    return ann.approved_revision_id


def test_a_new_revision_whose_spoken_inputs_are_unchanged_reuses_the_clips(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, make_user, content,
    fresh_session, session,
):  # fmt: skip
    make_outlet(grid["v1"], "19:30 10", name="石桥大喇叭")
    author = make_user(Role.EDITOR)
    body = "注意防火，进山不带火种。"
    ann = make_announcement("approved", author=author, title="防火通知", body=body)
    clock.set(local(settings, today, "05:00"))
    first = scheduler.run_once()
    assert first.outcomes.get("clip.done") == 2  # the loudspeaker clip and the voice note
    before = _clips(fresh_session, ann.approved_revision_id)
    assert {c.state for c in before.values()} == {JobState.DONE}

    # A new title and a later end date: what is spoken is the same.
    revision = _new_revision(
        session, make_user, content, ann, author, title="防火通知（延长）", body=body,
        end_date=(today + timedelta(days=9)).isoformat(),
    )  # fmt: skip
    assert revision != before[ClipProfile.LOUDSPEAKER].revision_id
    report = scheduler.plan()
    assert report.planned_clips == 2
    after = _clips(fresh_session, revision)
    # Done at once, with the audio already made: no render is queued …
    assert {c.state for c in after.values()} == {JobState.DONE}
    assert {p: c.path for p, c in after.items()} == {p: c.path for p, c in before.items()}
    assert {p: c.cache_key for p, c in after.items()} == {p: c.cache_key for p, c in before.items()}
    # … and none runs; the program follows the new revision (its new title).
    again = scheduler.run_once()
    assert "clip.done" not in again.outcomes
    program = fresh_session().scalar(select(Program).where(Program.day == today))
    assert program.state is JobState.DONE
    assert [a["revision_id"] for a in program.manifest["announcements"]] == [revision]
    assert program.manifest["announcements"][0]["title"] == "防火通知（延长）"

    # A changed text is rendered: the reuse is by what is spoken, nothing else.
    spoken = _new_revision(
        session, make_user, content, ann, author, title="防火通知（延长）",
        body="注意防火，进山不带火种，不在林区吸烟。",
    )  # fmt: skip
    scheduler.plan()
    assert {c.state for c in _clips(fresh_session, spoken).values()} == {JobState.PENDING}
    last = scheduler.run_once()
    assert last.outcomes.get("clip.done") == 2
    changed = _clips(fresh_session, spoken)
    assert changed[ClipProfile.LOUDSPEAKER].path != before[ClipProfile.LOUDSPEAKER].path


def test_a_finished_clip_whose_file_is_gone_is_rendered_again_not_reused(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_announcement, make_user, content,
    fresh_session, session,
):  # fmt: skip
    author = make_user(Role.EDITOR)
    body = "明天上午停水，请提前储水。"
    ann = make_announcement("approved", author=author, body=body, to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    clip = _clips(fresh_session, ann.approved_revision_id)[ClipProfile.LOUDSPEAKER]
    # The shared cache lives as long as the test session: move the file away, then back.
    path = Path(clip.path)
    hidden = path.with_suffix(".hidden")
    path.rename(hidden)
    try:
        revision = _new_revision(
            session, make_user, content, ann, author, title="停水通知", body=body,
            to_chats=False,
        )  # fmt: skip
        scheduler.plan()
        assert _clips(fresh_session, revision)[ClipProfile.LOUDSPEAKER].state is JobState.PENDING
    finally:
        hidden.rename(path)
    assert scheduler.run_once().outcomes.get("clip.done") == 1


def test_a_lexicon_entry_that_does_not_change_the_spoken_text_rerenders_nothing(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_announcement, fresh_session, session
):
    ann = make_announcement("approved", body="请到APPLE商店下载村委会的应用。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    session.add(LexiconEntry(written="村委会", spoken="村民委员会"))
    session.commit()
    assert scheduler.plan().planned_clips == 1  # it occurs: the clip is rendered again
    scheduler.run_once()
    key = _clips(fresh_session, ann.approved_revision_id)[ClipProfile.LOUDSPEAKER].cache_key
    # Inside a longer Latin word, and inside a longer entry that wins: neither changes what
    # is said, so neither re-renders anything.
    session.add(LexiconEntry(written="APP", spoken="应用"))
    session.add(LexiconEntry(written="委会", spoken="委员会"))
    session.commit()
    assert scheduler.plan().planned_clips == 0
    clip = _clips(fresh_session, ann.approved_revision_id)[ClipProfile.LOUDSPEAKER]
    assert clip.cache_key == key and clip.state is JobState.DONE


def test_a_planning_pass_that_finds_nothing_to_change_takes_no_write_lock(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_chat, make_announcement,
    engine: Engine,
):  # fmt: skip
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite has one writer lock for the whole database")
    make_outlet(grid["v1"], "19:30 10", name="石桥大喇叭")
    make_chat(grid["v1"])
    make_announcement("approved", body="注意防火。")
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    scheduler.run_once()
    writes = db.WRITES.count.get(PLAN_WRITE, 0)
    report = scheduler.plan()
    assert (report.planned_clips, report.planned_programs, report.planned_deliveries) == (0, 0, 0)
    assert db.WRITES.count.get(PLAN_WRITE, 0) == writes
    # Something to change: the pass writes it, in a write transaction of its own.
    make_announcement("approved", body="明天停水。")
    report = scheduler.plan()
    assert report.planned_clips == 2 and report.planned_deliveries == 1
    assert db.WRITES.count.get(PLAN_WRITE, 0) == writes + 1
