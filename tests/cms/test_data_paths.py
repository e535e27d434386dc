"""Stored file paths are relative to the data folder (``cms.models.DataPath``), and migration
0015 moves existing rows there and back, on SQLite and on PostgreSQL (a private schema)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import StatementError

from cms.cli_common import checked_engine
from cms.db import make_engine, make_session_factory, use_data_dir
from cms.jobs.renders import clip_key
from cms.migrate import current_revision, downgrade, head_revision, upgrade
from cms.models import (
    Clip,
    ClipProfile,
    JobState,
    NoDataFolder,
    OutboxMessage,
    Recording,
    Revision,
    relative_to_data,
)
from tests.pg import BACKENDS, settings_for


@pytest.fixture(params=BACKENDS)
def settings(request, settings):  # type: ignore[no-untyped-def]
    return settings_for(request, settings)


def _raw(engine, table: str, column: str, row_id: int) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            f"SELECT {column} FROM {table} WHERE id = {int(row_id)}"
        ).scalar_one()


def test_paths_are_stored_relative_and_read_back_absolute(settings, engine, session):  # type: ignore[no-untyped-def]
    inside = settings.data_dir / "audio" / "outbox" / "a.ogg"
    outside = Path("/srv/elsewhere/b.ogg")
    rows = [OutboxMessage(kind="voice", file_path=str(p)) for p in (inside, outside)]
    session.add_all(rows)
    session.commit()
    assert _raw(engine, "outbox_message", "file_path", rows[0].id) == "audio/outbox/a.ogg"
    # Outside the data folder (production never writes there; a test's shared cache does):
    # kept absolute on purpose, and the pages that send files refuse it.
    assert _raw(engine, "outbox_message", "file_path", rows[1].id) == str(outside)
    with make_session_factory(engine)() as s:
        got = [s.get(OutboxMessage, r.id).file_path for r in rows]  # type: ignore[union-attr]
        assert got == [str(inside), str(outside)]
        # Queries compare stored forms: an absolute path finds its relative row.
        assert s.scalar(select(OutboxMessage.id).where(OutboxMessage.file_path == str(inside)))


def test_the_same_rows_read_under_another_folder(settings, engine, session, tmp_path):  # type: ignore[no-untyped-def]
    session.add(OutboxMessage(kind="voice", file_path=str(settings.data_dir / "x" / "y.ogg")))
    session.commit()
    other = make_engine(settings.database_url, data_dir=tmp_path / "moved")
    try:
        with make_session_factory(other)() as s:
            paths = s.scalars(select(OutboxMessage.file_path)).all()
        assert paths == [str((tmp_path / "moved").resolve() / "x" / "y.ogg")]
    finally:
        other.dispose()


def test_a_path_that_climbs_out_or_an_engine_without_a_folder_is_refused(settings, tmp_path):  # type: ignore[no-untyped-def]
    root = settings.data_dir
    assert relative_to_data(root / "a" / ".." / "b.mp3", root) == "b.mp3"
    assert relative_to_data("programs/x.mp3", root) == "programs/x.mp3"
    with pytest.raises(ValueError, match="leaves the data folder"):
        relative_to_data("../secret_key", root)
    bare = make_engine(settings.database_url)
    try:
        upgrade(bare)
        with pytest.raises(StatementError) as caught, make_session_factory(bare)() as s:
            s.add(OutboxMessage(kind="voice", file_path=str(root / "a.ogg")))
            s.commit()
        assert isinstance(caught.value.orig, NoDataFolder)
        with pytest.raises(ValueError, match="data folder"):
            use_data_dir(use_data_dir(bare, root), tmp_path / "other")
    finally:
        bare.dispose()


def test_every_entry_point_gives_its_engine_the_data_folder(settings, app):  # type: ignore[no-untyped-def]
    from cms.models import DATA_DIR_ATTRIBUTE

    engine = app.extensions["dalaba.engine"]
    assert getattr(engine.dialect, DATA_DIR_ATTRIBUTE) == settings.data_dir
    made = checked_engine(settings)
    try:
        assert getattr(made.dialect, DATA_DIR_ATTRIBUTE) == settings.data_dir
    finally:
        made.dispose()


def test_0015_moves_existing_paths_and_keys_and_back(settings, engine, session, make_announcement):  # type: ignore[no-untyped-def]
    ann = make_announcement("approved")
    rev = session.get(Revision, ann.approved_revision_id)
    recording = Recording(
        announcement_id=ann.id,
        original_name="录音.mp3",
        path=str(settings.data_dir / "recordings" / f"{ann.id}-0123456789abcdef.mp3"),
        duration=3.0,
        uploaded_by_id=ann.created_by_id,
    )
    session.add(recording)
    session.flush()
    key = clip_key(rev, ClipProfile.LOUDSPEAKER, [], recording, "offline")
    clip = Clip(
        revision_id=rev.id,
        profile=ClipProfile.LOUDSPEAKER,
        state=JobState.DONE,
        cache_key=key,
        path=str(settings.data_dir / "audio" / "cache" / "c.mp3"),
        subtitles_path=str(settings.data_dir / "audio" / "cache" / "c.srt"),
    )
    session.add(clip)
    session.commit()
    session.close()

    downgrade(engine, "0014")
    assert current_revision(engine) == "0014"
    assert _raw(engine, "clip", "path", clip.id) == str(settings.data_dir / "audio/cache/c.mp3")
    assert _raw(engine, "recording", "path", recording.id) == recording.path
    # Before 0015 a recording's clip was keyed by the recording's absolute path.
    old_key = _raw(engine, "clip", "cache_key", clip.id)
    assert old_key != key
    payload = {"profile": "loudspeaker", "recording": [recording.id, recording.path]}
    canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    assert old_key == hashlib.sha256(canonical.encode()).hexdigest()

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert _raw(engine, "clip", "path", clip.id) == "audio/cache/c.mp3"
    assert _raw(engine, "clip", "subtitles_path", clip.id) == "audio/cache/c.srt"
    assert _raw(engine, "recording", "path", recording.id) == (
        f"recordings/{ann.id}-0123456789abcdef.mp3"
    )
    assert _raw(engine, "clip", "cache_key", clip.id) == key  # nothing is rendered again


def test_0015_without_a_data_folder_refuses_rows_it_cannot_move(settings, engine, session):  # type: ignore[no-untyped-def]
    session.add(OutboxMessage(kind="voice", file_path=str(settings.data_dir / "a.ogg")))
    session.commit()
    session.close()
    downgrade(engine, "0014")
    bare = make_engine(settings.database_url)
    try:
        with pytest.raises(RuntimeError, match="needs the data folder"):
            upgrade(bare)
    finally:
        bare.dispose()
