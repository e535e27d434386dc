"""A data folder moves: backup, restore into another ``DALABA_DATA_DIR`` and a fresh database,
and `dalaba serve` there plays what was made at the old path and keeps working.

Stored file paths are relative to the data folder (``cms.models.DataPath``), so nothing in the
database names the old folder. On PostgreSQL the backup and restore are the shipped
``deploy/backup.sh`` and ``deploy/restore.sh``; on SQLite (a township PC, whose database lives
in the data folder) the backup is the folder itself, archived with tar as backup.sh does. The
old folder is gone before the new server starts: every byte it sends comes from the new one.
"""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from audio.render import Renderer
from cms.db import make_engine, make_session_factory
from cms.models import Announcement, Clip, JobState, Program, Recording, Role, User
from cms.services import announcements, operators, recordings, share
from cms.settings import Settings
from tests.deploy.test_backup import _script, _tools
from tests.pg import BACKENDS, postgres_url, private_databases
from tests.scheduler.test_processes import Server

pytestmark = pytest.mark.slow

PATH_COLUMNS = {
    "clip": ("path", "subtitles_path"),
    "recording": ("path",),
    "program": ("path",),
    "outbox_message": ("file_path",),
}


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest) -> Iterator[list[str] | None]:
    """PostgreSQL: the install's database and a fresh one to restore into; SQLite: none (the
    database is a file in the data folder and travels with it)."""
    if request.param == "sqlite":
        yield None
        return
    url = postgres_url()
    _tools()
    with private_databases(url, 2) as urls:
        yield urls


@pytest.fixture
def settings(settings: Settings, databases: list[str] | None) -> Settings:
    return settings if databases is None else replace(settings, database_url=databases[0])


def _stored(engine: Engine) -> list[str]:
    """Every stored file path, as the database holds it (no type processing)."""
    out: list[str] = []
    with engine.connect() as conn:
        for table, columns in PATH_COLUMNS.items():
            for column in columns:
                rows = conn.exec_driver_sql(
                    f"SELECT {column} FROM {table} WHERE {column} IS NOT NULL"
                )
                out += [row[0] for row in rows]
    return out


def _get(server: Server, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _approved(session, make_user, content, today: date, **fields) -> Announcement:  # type: ignore[no-untyped-def]
    author = make_user(Role.EDITOR)
    ann = announcements.create(session, author, content(**fields), today=today)
    announcements.submit(session, author, ann)
    announcements.approve(session, make_user(Role.REVIEWER), ann)
    session.commit()
    return ann


def test_a_restored_data_folder_serves_and_works_at_a_new_path(  # type: ignore[no-untyped-def]
    settings,
    engine,
    session,
    databases,
    grid,
    make_outlet,
    make_user,
    content,
    today,
    clock,
    scheduler,
    tmp_path,
    monkeypatch,
):
    outlet = make_outlet(grid["v1"], "07:30 10")
    link = operators.issue_outlet_token(session, None, outlet)
    reviewer = make_user(Role.REVIEWER)
    spoken = _approved(session, make_user, content, today, title="秋收防火")
    # A recorded notice: the officer's upload replaces synthesis.
    editor = make_user(Role.EDITOR)
    recorded = announcements.create(session, editor, content(title="村民大会"), today=today)
    voice = Renderer(tmp_path / "upload-cache", engine="offline").render(
        "今晚七点在村委会开村民大会。"
    )
    recordings.add_recording(
        session,
        editor,
        recorded,
        filename="村民大会.mp3",
        data=voice.path.read_bytes(),
        renderer=Renderer(settings.audio_dir / "cache", engine="offline"),
        directory=settings.data_dir / "recordings",
    )
    announcements.submit(session, editor, recorded)
    announcements.approve(session, reviewer, recorded)
    session.commit()
    for _ in range(5):
        scheduler.run_once()

    sessions = make_session_factory(engine)
    with sessions() as s:
        clips = {c.id: (c.cache_key, c.path) for c in s.scalars(select(Clip))}
        assert clips and all(path for _, path in clips.values())
        assert len(s.scalars(select(Program).where(Program.state == JobState.DONE)).all()) == 1
        assert s.scalars(select(Recording)).one().path.startswith(str(settings.data_dir))
    stored = _stored(engine)
    assert len(stored) >= 2 * len(clips) + 2  # clips (and subtitles), the recording, the program
    assert not [p for p in stored if os.path.isabs(p)], stored
    # What the operator and the share pages must get after the move: these very bytes.
    with sessions() as s:
        program = s.scalars(select(Program).where(Program.state == JobState.DONE)).one()
        before = {"program": Path(program.path).read_bytes()}
        for name, ann in (("spoken", spoken), ("recorded", recorded)):
            row = s.get(Announcement, ann.id)
            clip = share.loudspeaker_clip(s, row.approved_revision_id)
            assert (clip.engine == "recording") == (name == "recorded")
            before[name] = Path(clip.path).read_bytes()
            before[f"{name}-token"] = row.share_token.encode()
    engine.dispose()

    # Back up, lose the machine, restore elsewhere into a fresh database.
    moved = tmp_path / "elsewhere" / "dalaba"
    if databases is None:
        archive = tmp_path / "data.tar"
        subprocess.run(
            ["tar", "--create", f"--file={archive}", f"--directory={settings.data_dir}", "."],
            check=True,
        )
        settings.data_dir.rename(tmp_path / "lost")
        moved.mkdir(parents=True)
        subprocess.run(
            ["tar", "--extract", f"--file={archive}", f"--directory={moved}"], check=True
        )
        new = replace(settings, data_dir=moved, database_url=f"sqlite:///{moved / 'dalaba.db'}")
    else:
        done = _script(
            "backup.sh",
            str(tmp_path / "backups"),
            database_url=databases[0],
            data_dir=settings.data_dir,
        )
        assert done.returncode == 0, done.stderr
        settings.data_dir.rename(tmp_path / "lost")
        done = _script("restore.sh", done.stdout.strip(), database_url=databases[1], data_dir=moved)
        assert done.returncode == 0, done.stderr
        new = replace(settings, data_dir=moved, database_url=databases[1])
    assert not settings.data_dir.exists()

    monkeypatch.setenv("DALABA_FAKE_NOW", clock.now().isoformat())  # 03:00, before the 07:30 slot
    server = Server(new, tmp_path, "moved")
    try:
        server.wait_ready()
        assert _get(server, f"/o/{link}/today.mp3") == (200, before["program"])
        for name in ("spoken", "recorded"):
            token = before[f"{name}-token"].decode()
            assert _get(server, f"/s/{token}/audio.mp3") == (200, before[name]), name

        # The scheduler goes on at the new path: a new notice is rendered into it and today's
        # program rebuilt with it; nothing made before the move is rendered again.
        restored = make_engine(new.database_url, data_dir=moved)
        try:
            with make_session_factory(restored, write=True, clock=clock)() as s:
                author = s.scalar(select(User).where(User.username == editor.username))
                ann = announcements.create(s, author, content(title="冬季用电安全"), today=today)
                announcements.submit(s, author, ann)
                announcements.approve(
                    s, s.scalar(select(User).where(User.username == reviewer.username)), ann
                )
                s.commit()
                revision_id = ann.approved_revision_id
            deadline = time.monotonic() + 120
            while True:
                with make_session_factory(restored)() as s:
                    program = s.get(Program, program.id)
                    listed = [a["revision_id"] for a in program.manifest["announcements"]]
                    if program.state is JobState.DONE and revision_id in listed:
                        break
                assert time.monotonic() < deadline, server.output()[-3000:]
                time.sleep(0.5)
            assert Path(program.path).is_relative_to(moved)
            rebuilt = Path(program.path).read_bytes()
            assert rebuilt != before["program"]
            assert _get(server, f"/o/{link}/today.mp3") == (200, rebuilt)
            with make_session_factory(restored)() as s:
                after = {c.id: (c.cache_key, c.path) for c in s.scalars(select(Clip))}
            for clip_id, (key, path) in clips.items():
                assert after[clip_id][0] == key
                assert after[clip_id][1] == str(moved / Path(path).relative_to(settings.data_dir))
            assert len(after) > len(clips)
            stored = _stored(restored)
            assert stored and not [p for p in stored if os.path.isabs(p)], stored
        finally:
            restored.dispose()
    finally:
        server.stop()
