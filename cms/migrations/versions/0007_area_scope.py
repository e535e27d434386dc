"""scoped offices: users and announcements belong to an area

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30

``user.area_id`` stays NULL for existing users: NULL means the whole install, so a
township's staff and admins keep seeing everything after the upgrade.

``announcement.area_id`` of existing rows is the deepest area that contains every area its
latest revision targets (their common ancestor), so that when the install later grows a
county on top and its users are given townships, each township's office finds its own
announcements. A row without targets belongs to the only top-level area when there is
exactly one (a single-township install), else to the whole install (NULL).
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'


def _common_ancestor(paths: list[str]) -> int | None:
    parts = [[int(p) for p in path.strip('/').split('/') if p] for path in paths]
    common: int | None = None
    for ids in zip(*parts):
        if len(set(ids)) != 1:
            break
        common = ids[0]
    return common


def upgrade() -> None:
    # On SQLite these recreate the tables (batch mode); cms.migrate runs migrations with
    # foreign keys off there, so that dropping the old tables fires no ON DELETE action.
    for table in ('user', 'announcement'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('area_id', sa.Integer(), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_{table}_area_id'), ['area_id'], unique=False)
            batch_op.create_foreign_key(
                batch_op.f(f'fk_{table}_area_id_area'),
                'area',
                ['area_id'],
                ['id'],
                ondelete='RESTRICT',
            )

    conn = op.get_bind()
    roots = [row[0] for row in conn.execute(sa.text('SELECT id FROM area WHERE parent_id IS NULL'))]
    only_root = roots[0] if len(roots) == 1 else None
    targets: dict[int, list[str]] = {}
    for ann_id, path in conn.execute(
        sa.text(
            'SELECT a.id, ar.path FROM announcement a '
            'JOIN revision_area ra ON ra.revision_id = a.latest_revision_id '
            'JOIN area ar ON ar.id = ra.area_id'
        )
    ):
        targets.setdefault(ann_id, []).append(path)
    for (ann_id,) in conn.execute(sa.text('SELECT id FROM announcement')):
        paths = targets.get(ann_id)
        owner = _common_ancestor(paths) if paths else only_root
        if owner is not None:
            conn.execute(
                sa.text('UPDATE announcement SET area_id = :area WHERE id = :id'),
                {'area': owner, 'id': ann_id},
            )


def downgrade() -> None:
    for table in ('announcement', 'user'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(batch_op.f(f'fk_{table}_area_id_area'), type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_area_id'))
            batch_op.drop_column('area_id')
