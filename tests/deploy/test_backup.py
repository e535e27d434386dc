"""deploy/backup.sh and deploy/restore.sh: a county's database and audio, and back, on PostgreSQL.

The backup of a database with rendered clips and built programs is restored into a second,
fresh database and the same data folder path (test_relocate.py restores into another);
every table has the same rows, the audio files the same bytes, and the restored
database takes new rows. Needs PostgreSQL (``DALABA_TEST_POSTGRES_URL`` and a role that may
create databases) and its client tools: skips without them, except under CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from cms.db import make_engine, make_session_factory
from cms.migrate import current_revision, head_revision
from cms.models import AreaKind, Base, Clip, JobState, Program
from cms.services import areas
from cms.settings import Settings
from tests.pg import postgres_url, private_databases

pytestmark = pytest.mark.slow

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def _tools() -> None:
    missing = [
        t for t in ("pg_dump", "pg_restore", "psql", "tar", "sha256sum") if not shutil.which(t)
    ]
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {missing}")
        pytest.skip(f"missing {missing}")


@pytest.fixture
def databases() -> Iterator[list[str]]:
    """Two fresh databases: the install, and the one the backup is restored into."""
    url = postgres_url()
    _tools()
    with private_databases(url, 2) as urls:
        yield urls


@pytest.fixture
def settings(settings: Settings, databases: list[str]) -> Settings:
    return replace(settings, database_url=databases[0])


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in Base.metadata.sorted_tables
        }


def _script(
    name: str, *args: str, database_url: str, data_dir: Path
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DALABA_DATABASE_URL": database_url,
        "DALABA_DATA_DIR": str(data_dir),
        "DALABA_ENV_FILE": "/nonexistent",  # only what the test sets
    }
    return subprocess.run(
        ["bash", str(DEPLOY / name), *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_backup_restores_into_a_fresh_database_and_folder(  # type: ignore[no-untyped-def]
    settings, engine, databases, grid, make_outlet, make_announcement, scheduler, tmp_path
):
    make_outlet(grid["v1"], "07:30 10")
    make_announcement("approved", title="秋收防火", body="各位村民：秋收期间严禁焚烧秸秆。")
    for _ in range(5):
        scheduler.run_once()
    with make_session_factory(engine)() as s:
        clips = s.scalars(select(Clip).where(Clip.state == JobState.DONE)).all()
        programs = s.scalars(select(Program).where(Program.state == JobState.DONE)).all()
        audio = {
            p: Path(p).read_bytes() for p in [c.path for c in clips] + [p.path for p in programs]
        }
    assert clips and programs
    assert all(Path(p).is_relative_to(settings.data_dir) for p in audio)
    before = _counts(engine)
    assert before["announcement"] == 1 and before["program"] == len(programs)

    done = _script(
        "backup.sh",
        str(tmp_path / "backups"),
        database_url=databases[0],
        data_dir=settings.data_dir,
    )
    assert done.returncode == 0, done.stderr
    backup = Path(done.stdout.strip())
    assert backup.parent == tmp_path / "backups" and backup.name.startswith("dalaba-")
    assert sorted(p.name for p in backup.iterdir()) == ["SHA256SUMS", "data.tar", "database.dump"]
    assert not list(backup.parent.glob(".*partial"))

    # The machine is lost: the folder goes; the copy comes back into a fresh database.
    engine.dispose()
    lost = tmp_path / "lost"
    settings.data_dir.rename(lost)
    done = _script("restore.sh", str(backup), database_url=databases[1], data_dir=settings.data_dir)
    assert done.returncode == 0, done.stderr

    restored = make_engine(databases[1], data_dir=settings.data_dir)
    try:
        assert current_revision(restored) == head_revision()
        assert _counts(restored) == before
        with make_session_factory(restored)() as s:
            paths = [c.path for c in s.scalars(select(Clip).where(Clip.state == JobState.DONE))]
            paths += [
                p.path for p in s.scalars(select(Program).where(Program.state == JobState.DONE))
            ]
            assert sorted(paths) == sorted(audio)
            for path in paths:
                assert Path(path).read_bytes() == audio[path]
            # Sequences came along: the restored database takes new rows.
            areas.create_area(
                s, None, name="新村", kind=AreaKind.VILLAGE, parent_id=grid["town"].id
            )
            s.commit()
        assert _counts(restored)["area"] == before["area"] + 1
    finally:
        restored.dispose()

    # Restoring over something that is not fresh is refused, and so is a damaged backup.
    again = _script(
        "restore.sh", str(backup), database_url=databases[1], data_dir=tmp_path / "empty"
    )
    assert again.returncode != 0 and "not empty" in again.stderr
    again = _script(
        "restore.sh", str(backup), database_url=databases[0], data_dir=settings.data_dir
    )
    assert again.returncode != 0 and "not empty" in again.stderr
    with (backup / "data.tar").open("r+b") as f:
        f.seek(1000)
        f.write(b"\0damaged\0")
    again = _script("restore.sh", str(backup), database_url=databases[0], data_dir=tmp_path / "x")
    assert again.returncode != 0 and "damaged" in again.stderr
