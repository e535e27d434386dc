"""per-township settings and lexicon entries

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30

``setting`` gets a surrogate id and an ``area_id`` (NULL: the install's value); its rows are
copied over, so the admin's values survive. ``lexicon_entry`` gets an ``area_id`` (NULL: the
county's lexicon). Touches neither ``area`` nor ``user`` nor ``announcement`` (0007's tables).
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'

GLOBAL = sa.text('area_id IS NULL')


def upgrade() -> None:
    bind = op.get_bind()
    old = sa.table('setting', sa.column('key', sa.String()), sa.column('value', sa.JSON()))
    rows = [dict(r._mapping) for r in bind.execute(sa.select(old.c.key, old.c.value))]
    # The primary key changes: a new table is simplest on every database (a few rows).
    op.drop_table('setting')
    setting = op.create_table('setting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=True),
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['area.id'], name=op.f('fk_setting_area_id_area'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_setting')),
    sa.UniqueConstraint('area_id', 'key', name=op.f('uq_setting_area_id_key'))
    )
    op.create_index(op.f('ix_setting_area_id'), 'setting', ['area_id'], unique=False)
    op.create_index('uq_setting_key_global', 'setting', ['key'], unique=True,
                    sqlite_where=GLOBAL, postgresql_where=GLOBAL)
    if rows:
        op.bulk_insert(setting, [{'area_id': None, **row} for row in rows])

    with op.batch_alter_table('lexicon_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('area_id', sa.Integer(), nullable=True))
        batch_op.drop_constraint(batch_op.f('uq_lexicon_entry_written'), type_='unique')
        batch_op.create_foreign_key(batch_op.f('fk_lexicon_entry_area_id_area'), 'area', ['area_id'], ['id'], ondelete='CASCADE')
        batch_op.create_unique_constraint(batch_op.f('uq_lexicon_entry_area_id_written'), ['area_id', 'written'])
        batch_op.create_index(batch_op.f('ix_lexicon_entry_area_id'), ['area_id'], unique=False)
    op.create_index('uq_lexicon_entry_written_global', 'lexicon_entry', ['written'], unique=True,
                    sqlite_where=GLOBAL, postgresql_where=GLOBAL)


def downgrade() -> None:
    # Township values and entries have no place in the older schema: they are dropped.
    bind = op.get_bind()
    op.drop_index('uq_lexicon_entry_written_global', table_name='lexicon_entry')
    bind.execute(sa.text('DELETE FROM lexicon_entry WHERE area_id IS NOT NULL'))
    with op.batch_alter_table('lexicon_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_lexicon_entry_area_id'))
        batch_op.drop_constraint(batch_op.f('uq_lexicon_entry_area_id_written'), type_='unique')
        batch_op.drop_constraint(batch_op.f('fk_lexicon_entry_area_id_area'), type_='foreignkey')
        batch_op.create_unique_constraint(batch_op.f('uq_lexicon_entry_written'), ['written'])
        batch_op.drop_column('area_id')

    new = sa.table('setting', sa.column('key', sa.String()), sa.column('value', sa.JSON()),
                   sa.column('area_id', sa.Integer()))
    rows = [dict(r._mapping) for r in bind.execute(
        sa.select(new.c.key, new.c.value).where(new.c.area_id.is_(None)))]
    op.drop_table('setting')
    setting = op.create_table('setting',
    sa.Column('key', sa.String(length=60), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_setting'))
    )
    if rows:
        op.bulk_insert(setting, rows)
