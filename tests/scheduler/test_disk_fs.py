"""On a really small filesystem: fill it up, and dalaba waits, warns and keeps reading.

A 16 MB tmpfs holds the whole data folder (database and audio). Mounting needs root, as
in CI; elsewhere the test is skipped and ``tests/cms/test_disk_full_web.py`` with
``tests/scheduler/test_disk.py`` cover the same behaviour with simulated failures.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from cms import disk
from cms.channels import ChannelRegistry
from cms.db import make_session_factory
from cms.jobs import diskspace
from cms.jobs.context import Context
from cms.models import Clip, JobState, Role
from cms.scheduler.core import Scheduler
from cms.services import users
from cms.services.errors import Message
from cms.settings import Settings
from cms.web import create_app
from tests.clock import SuiteClock
from tests.conftest import PASSWORD, login
from tests.scheduler.helpers import local

SIZE_MB = 16
MIN_FREE_MB = 4
CHUNK = b"\0" * (256 * 1024)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs, unmounted afterwards."""
    if not sys.platform.startswith("linux"):
        pytest.skip("a small filesystem is mounted with Linux's tmpfs")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the tests as root)")
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def settings(small_fs: Path, injected_clock: SuiteClock) -> Settings:
    return Settings.from_env(
        {},
        data_dir=small_fs / "data",
        secret_key="test-secret",
        tts_engine="offline",
        min_free_mb=MIN_FREE_MB,
        clock=injected_clock,
    )


@pytest.fixture
def ctx(settings: Settings, engine: Engine, clock: SuiteClock) -> Context:
    """The scheduler's context with its render cache on the small filesystem too."""
    from audio.render import Renderer

    return Context(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine, clock=clock),
        registry=ChannelRegistry(),
        worker="test-worker",
        clock=clock,
        renderer_factory=lambda s: Renderer(s.audio_dir / "cache", engine="offline"),
    )


def _fill(path: Path, leave_mb: float) -> None:
    """Write ``path`` until less than ``leave_mb`` is free (0: until the disk is full).

    Unbuffered: a buffered file keeps the part of the last chunk that did not fit and tries
    it again on close, which then fails too (whether it does depends on how the free space
    divides into chunks, so on the sizes of everything else on the disk)."""
    with path.open("wb", buffering=0) as f:
        try:
            while shutil.disk_usage(path.parent).free > leave_mb * disk.MB:
                f.write(CHUNK)
        except OSError:
            pass  # full


def _clip(engine: Engine, revision_id: int) -> Clip:
    with make_session_factory(engine)() as s:
        clip = s.scalar(select(Clip).where(Clip.revision_id == revision_id))
        assert clip is not None
        return clip


def _checkpoint(engine: Engine) -> None:
    """Empty the write-ahead log, so that the next write has to grow it (as it would)."""
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


@pytest.mark.any_hour
def test_a_full_disk_is_a_clear_state(  # type: ignore[no-untyped-def]
    settings, engine, ctx, clock, today, session, make_user, make_announcement, small_fs
):
    editor = make_user(Role.EDITOR)
    token = users.issue_api_token(session, None, editor)
    session.commit()
    ann = make_announcement("in_review", body="注意防火。", to_chats=False, author=editor)
    scheduler = Scheduler(ctx)
    clock.set(local(settings, today, "05:00"))
    app = create_app(settings, engine=engine)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)

    # Short of space (below the minimum, not yet full): the render waits, with its reason.
    _checkpoint(engine)
    _fill(small_fs / "filler-1", leave_mb=MIN_FREE_MB / 2)
    scheduler.run_once()
    clip = _clip(engine, ann.current.id)
    assert clip.state is JobState.PENDING and clip.attempts == 0 and clip.path is None
    reason = Message.loads(clip.last_error or "")
    assert reason.msgid == disk.WAIT_REASON and reason.params["need"] == MIN_FREE_MB
    assert reason.params["free"] < MIN_FREE_MB
    client = app.test_client()
    login(client, editor)
    assert 'data-testid="disk-banner"' in client.get("/").get_data(as_text=True)

    # Completely full: every write fails, reading does not.
    shutil.rmtree(settings.data_dir / "cache" / "translations")
    _checkpoint(engine)
    _fill(small_fs / "filler-2", leave_mb=0)
    api = app.test_client().post(
        "/api/v1/announcements",
        json={
            "title": "停水通知",
            "body": "明天停水。",
            "area_ids": [1],
            "channels": ["loudspeaker"],
            "start_date": today.isoformat(),
            "end_date": today.isoformat(),
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert api.status_code == 503, api.get_data(as_text=True)
    assert api.get_json()["error"]["code"] == "disk_full"
    fresh = create_app(settings, engine=engine)  # starts although it cannot compile into data/
    fresh.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    visitor = fresh.test_client()
    assert visitor.get("/login").status_code == 200
    signed_in = visitor.post("/login", data={"username": editor.username, "password": PASSWORD})
    assert signed_in.status_code == 302
    page = visitor.get("/")
    assert page.status_code == 200 and 'data-testid="disk-banner"' in page.get_data(as_text=True)
    assert visitor.get("/schedule/").status_code == 200
    assert visitor.get(f"/schedule/announcements/{ann.id}").status_code == 200
    clock.advance(diskspace.DISK_WAIT + timedelta(seconds=1))
    assert scheduler.render_due() == 0  # cannot even note the wait: no crash, no attempt
    clip = _clip(engine, ann.current.id)
    assert clip.state is JobState.PENDING and clip.attempts == 0

    # Space is freed: the next pass renders the clip.
    (small_fs / "filler-1").unlink()
    (small_fs / "filler-2").unlink()
    scheduler.run_once()
    clip = _clip(engine, ann.current.id)
    assert clip.state is JobState.DONE and clip.attempts == 1 and clip.last_error is None
    assert Path(clip.path or "").is_relative_to(small_fs)
    assert 'data-testid="disk-banner"' not in client.get("/").get_data(as_text=True)
