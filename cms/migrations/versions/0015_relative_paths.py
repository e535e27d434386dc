"""stored file paths are relative to the data folder

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05

Clips, subtitles, recordings, programs, outbox voice notes and break-in inserts were stored
by absolute path, which tied a database to one ``DALABA_DATA_DIR``. Upgrade rewrites every
path under the data folder relative to it (``cms.models.DataPath`` reads them back against
the folder of the running install); a path outside the folder stays absolute, as the pages
that send files never served it anyway. Downgrade makes them absolute again.

A clip made from a recording was keyed by the recording's absolute path; it is keyed by the
file's name now (``cms.jobs.renders.clip_key``), and the stored keys follow, so no clip
is rendered again. The data folder
comes from the engine ``cms.migrate`` runs on (``dalaba db upgrade``: ``DALABA_DATA_DIR``).
"""

import hashlib
import json
from pathlib import Path, PurePath

import sqlalchemy as sa
from alembic import context, op

from cms.models import relative_to_data

revision = '0015'
down_revision = '0014'

COLUMNS = {
    'clip': ('path', 'subtitles_path'),
    'recording': ('path',),
    'program': ('path',),
    'outbox_message': ('file_path',),
    'break_in': ('path',),
    'break_in_outlet': ('path',),
}


def _data_dir(rows: bool) -> Path | None:
    root = context.config.attributes.get('data_dir')
    if root is None and rows:
        raise RuntimeError(
            'migration 0015 needs the data folder to rewrite stored paths: '
            'run it through dalaba db upgrade (DALABA_DATA_DIR)'
        )
    return None if root is None else Path(root).resolve()


def _rewrite(convert) -> None:  # type: ignore[no-untyped-def]
    connection = op.get_bind()
    pending = []
    for name, columns in COLUMNS.items():
        table = sa.table(name, sa.column('id', sa.Integer), *(sa.column(c, sa.String) for c in columns))
        for row in connection.execute(sa.select(table)).mappings():
            pending.append((table, columns, row))
    root = _data_dir(any(row[c] for _, columns, row in pending for c in columns))
    if root is None:
        return
    for table, columns, row in pending:
        values = {c: convert(row[c], root) for c in columns if row[c] is not None}
        changed = {c: v for c, v in values.items() if v != row[c]}
        if changed:
            connection.execute(sa.update(table).where(table.c.id == row['id']).values(**changed))


def _absolute(value: str, root: Path) -> str:
    return value if Path(value).is_absolute() else str(root / value)


def _recording_key(profile: str, recording_id: int, where: str) -> str:
    payload = {'profile': profile, 'recording': [recording_id, where]}
    return hashlib.sha256(json.dumps(payload, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


def _rekey(to_name: bool) -> None:
    """Clips keyed by their recording: from its absolute path to its name, or back."""
    connection = op.get_bind()
    clip = sa.table('clip', sa.column('id', sa.Integer), sa.column('revision_id', sa.Integer),
                    sa.column('profile', sa.String), sa.column('cache_key', sa.String))
    revision = sa.table('revision', sa.column('id', sa.Integer), sa.column('announcement_id', sa.Integer))
    recording = sa.table('recording', sa.column('id', sa.Integer), sa.column('announcement_id', sa.Integer),
                         sa.column('path', sa.String), sa.column('active', sa.Boolean))
    rows = connection.execute(
        sa.select(clip.c.id, clip.c.profile, clip.c.cache_key, recording.c.id.label('recording_id'),
                  recording.c.path)
        .join(revision, revision.c.id == clip.c.revision_id)
        .join(recording, recording.c.announcement_id == revision.c.announcement_id)
        .where(recording.c.active.is_(True), clip.c.cache_key.is_not(None))
    ).all()
    for row in rows:
        absolute, name = row.path, PurePath(row.path).name
        old, new = (absolute, name) if to_name else (name, absolute)
        if row.cache_key == _recording_key(row.profile, row.recording_id, old):
            connection.execute(
                sa.update(clip).where(clip.c.id == row.id)
                .values(cache_key=_recording_key(row.profile, row.recording_id, new))
            )


def upgrade() -> None:
    _rekey(to_name=True)  # while the recordings' paths are still absolute
    _rewrite(relative_to_data)


def downgrade() -> None:
    _rewrite(_absolute)
    _rekey(to_name=False)
