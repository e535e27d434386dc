"""A full disk is a state: renders and builds wait without using attempts, and resume."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from audio.errors import DiskFullError
from cms import disk, queue
from cms.cli import cli
from cms.jobs import diskspace, programs
from cms.models import Alert, Clip, JobState, Program, Role
from cms.services.errors import Message
from tests.conftest import login
from tests.scheduler.helpers import local


@dataclass
class Space:
    free: int | None = 100_000


@pytest.fixture
def space(monkeypatch: pytest.MonkeyPatch) -> Space:
    """The free space (MB) the data folder reports, set by the test."""
    state = Space()
    monkeypatch.setattr(disk, "free_mb", lambda path: state.free)
    return state


class FullRenderer:
    """A renderer whose every write finds the disk full."""

    def render(self, *args: object, **kwargs: object) -> None:
        raise DiskFullError("合成语音失败：磁盘空间不足，无法写入音频文件")

    render_recording = render


def _clip(fresh_session, ann):  # type: ignore[no-untyped-def]
    return fresh_session().scalar(select(Clip).where(Clip.revision_id == ann.current.id))


def test_a_render_waits_for_space_then_runs_at_once_when_space_returns(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session, space
):
    make_outlet(grid["v1"], "19:30 10")
    ann = make_announcement("approved", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    space.free = 12  # below the default 200 MB
    scheduler.run_once()
    clip = _clip(fresh_session, ann)
    assert clip.state is JobState.PENDING and clip.attempts == 0 and clip.path is None
    assert clip.next_attempt_at == clock.now() + diskspace.DISK_WAIT
    assert Message.loads(clip.last_error) == Message(disk.WAIT_REASON, {"free": 12, "need": 200})
    program = fresh_session().scalar(select(Program).where(Program.day == today))
    assert program.state is JobState.PENDING and program.attempts == 0
    assert Message.loads(program.last_error).msgid == disk.WAIT_REASON
    # However long it lasts, waiting never uses up the attempts or fails the job.
    for _ in range(queue.MAX_ATTEMPTS + 3):
        clock.advance(diskspace.DISK_WAIT)
        scheduler.run_once()
    clip = _clip(fresh_session, ann)
    assert clip.state is JobState.PENDING and clip.attempts == 0
    assert fresh_session().scalar(select(Alert.id)) is None
    # Space is freed: the very next pass renders and builds, without waiting out DISK_WAIT.
    space.free = 5_000
    scheduler.run_once()
    clip = _clip(fresh_session, ann)
    assert clip.state is JobState.DONE and clip.attempts == 1 and clip.last_error is None
    program = fresh_session().get(Program, program.id)
    assert program.state is JobState.DONE and program.path and program.last_error is None


def test_no_space_while_writing_a_clip_waits_too(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_announcement, fresh_session, space
):
    """The check passed, but the write found the disk full (a big file, a small minimum)."""
    ann = make_announcement("in_review", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    real = scheduler.ctx.renderer
    scheduler.ctx.shared["renderer"] = FullRenderer()
    for _ in range(queue.MAX_ATTEMPTS + 2):
        scheduler.run_once()
        clip = _clip(fresh_session, ann)
        assert clip.state is JobState.PENDING and clip.attempts == 0, clip.last_error
        assert clip.next_attempt_at == clock.now() + diskspace.DISK_WAIT
        assert Message.loads(clip.last_error).msgid == disk.WAIT_REASON
        clock.advance(diskspace.DISK_WAIT)
    scheduler.ctx.shared["renderer"] = real
    scheduler.run_once()
    assert _clip(fresh_session, ann).state is JobState.DONE


def test_no_space_while_building_a_program_waits_and_raises_no_alert(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session,
    space, monkeypatch,
):  # fmt: skip
    make_outlet(grid["v1"], "19:30 10")
    make_announcement("approved", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    assemble = programs._assemble

    def full(ctx, job):  # type: ignore[no-untyped-def]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(programs, "_assemble", full)
    for _ in range(queue.MAX_ATTEMPTS + 2):
        scheduler.run_once()
        clock.advance(diskspace.DISK_WAIT)
    program = fresh_session().scalar(select(Program).where(Program.day == today))
    assert program.state is JobState.PENDING and program.attempts == 0
    assert Message.loads(program.last_error).msgid == disk.WAIT_REASON
    assert fresh_session().scalar(select(Alert.id)) is None
    monkeypatch.setattr(programs, "_assemble", assemble)
    scheduler.run_once()
    assert fresh_session().get(Program, program.id).state is JobState.DONE


def test_a_database_too_full_to_note_the_wait_changes_nothing(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, make_announcement, fresh_session, space, monkeypatch
):
    ann = make_announcement("in_review", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()

    def full(*args: object, **kwargs: object) -> None:
        raise OperationalError(
            "UPDATE clip …", {}, sqlite3.OperationalError("database or disk is full")
        )

    monkeypatch.setattr(diskspace, "wait", full)
    space.free = 0
    assert scheduler.render_due() == 0  # no crash, nothing claimed
    clip = _clip(fresh_session, ann)
    assert clip.state is JobState.PENDING and clip.attempts == 0 and clip.last_error is None


def test_a_minimum_of_zero_switches_the_wait_off(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, make_announcement, fresh_session, space
):
    scheduler.ctx.settings = settings.with_(min_free_mb=0)
    ann = make_announcement("in_review", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    space.free = 0
    scheduler.run_once()
    assert _clip(fresh_session, ann).state is JobState.DONE


def test_the_renders_page_says_why_a_clip_waits_in_the_readers_language(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, make_announcement, make_user, client, space
):
    ann = make_announcement("in_review", body="注意防火。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    space.free = 7
    scheduler.run_once()
    login(client, make_user(Role.EDITOR))
    page = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    assert "磁盘空间不足（剩余 7 MB，至少需要 200 MB）" in page
    assert '{"msgid"' not in page
    client.post("/lang", data={"lang": "en"})
    page = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    assert "Not enough disk space (7 MB free, at least 200 MB needed)" in page


def test_build_day_on_a_short_disk_says_so_and_exits_non_zero(  # type: ignore[no-untyped-def]
    settings, engine, space
):
    space.free = 3
    env = {
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_DATABASE_URL": settings.database_url,
        "DALABA_TTS_ENGINE": "offline",
    }
    result = CliRunner().invoke(cli, ["build-day"], env=env)
    assert result.exit_code == 75, result.output
    assert "磁盘空间不足（剩余 3 MB，至少需要 200 MB）" in result.output


def test_waiting_rows_are_found_by_their_stored_reason(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, make_announcement, fresh_session, space
):
    """Only rows that wait for space are hastened, not those in a backoff for another reason."""
    waiting = make_announcement("in_review", body="注意防火。", to_chats=False)
    backing_off = make_announcement("in_review", body="注意防汛。", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()
    later = clock.now() + timedelta(minutes=5)
    with scheduler.ctx.sessions.begin() as s:
        other = _clip(fresh_session, backing_off)
        s.get(Clip, other.id).next_attempt_at = later
        s.get(Clip, other.id).last_error = "在线语音合成失败"
    space.free = 1
    scheduler.render_due()
    space.free = 5_000
    scheduler.render_due()
    assert _clip(fresh_session, waiting).state is JobState.DONE
    other = _clip(fresh_session, backing_off)
    assert other.state is JobState.PENDING and other.next_attempt_at == later
