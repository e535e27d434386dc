"""break-ins (立即插播) and terminals that fetch by URL

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04

``break_in``: an urgent notice played now, built once into an insert; ``break_in_outlet``:
each reached outlet's copy of it and whether it was played. ``terminal``: an outlet's box
(IP speaker, 4G column, PC player) with its own revocable link; ``terminal_fetch``: every
fetch by a terminal (bytes sent, complete or partial, ranges). New tables only.
"""

import sqlalchemy as sa
from alembic import op

import cms.models

revision = '0014'
down_revision = '0013'

UTC = cms.models.UTCDateTime()


def _queue_columns() -> list[sa.Column]:
    return [
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', UTC, nullable=True),
        sa.Column('claimed_until', UTC, nullable=True),
        sa.Column('claimed_by', sa.String(length=80), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', UTC, nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        'break_in',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('announcement_id', sa.Integer(), nullable=False),
        sa.Column('revision_id', sa.Integer(), nullable=False),
        sa.Column('area_id', sa.Integer(), nullable=True),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('rule', sa.String(length=20), nullable=False),
        sa.Column('reason', sa.Text(), nullable=False),
        sa.Column(
            'state',
            sa.Enum(
                'pending', 'running', 'done', 'failed', 'cancelled',
                name='jobstate', native_enum=False, length=20,
            ),
            nullable=False,
        ),
        sa.Column('path', sa.String(length=500), nullable=True),
        sa.Column('duration', sa.Double(), nullable=True),
        sa.Column('outlet_count', sa.Integer(), nullable=False),
        sa.Column('started_by_id', sa.Integer(), nullable=True),
        sa.Column('started_at', UTC, nullable=False),
        sa.Column('built_at', UTC, nullable=True),
        sa.Column('notified_at', UTC, nullable=True),
        sa.Column('ended_at', UTC, nullable=True),
        sa.Column('ended_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        *_queue_columns(),
        sa.ForeignKeyConstraint(
            ['announcement_id'], ['announcement.id'],
            name=op.f('fk_break_in_announcement_id_announcement'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['revision_id'], ['revision.id'],
            name=op.f('fk_break_in_revision_id_revision'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['area_id'], ['area.id'], name=op.f('fk_break_in_area_id_area'), ondelete='RESTRICT'
        ),
        sa.ForeignKeyConstraint(
            ['started_by_id'], ['user.id'],
            name=op.f('fk_break_in_started_by_id_user'), ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['ended_by_id'], ['user.id'],
            name=op.f('fk_break_in_ended_by_id_user'), ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_break_in')),
    )  # fmt: skip
    for column in ('announcement_id', 'area_id', 'day', 'state'):
        op.create_index(op.f(f'ix_break_in_{column}'), 'break_in', [column], unique=False)

    op.create_table(
        'break_in_outlet',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('break_in_id', sa.Integer(), nullable=False),
        sa.Column('outlet_id', sa.Integer(), nullable=False),
        sa.Column('path', sa.String(length=500), nullable=False),
        sa.Column('ready_at', UTC, nullable=False),
        sa.Column('played_at', UTC, nullable=True),
        sa.Column('played_by_id', sa.Integer(), nullable=True),
        sa.Column('via', sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ['break_in_id'], ['break_in.id'],
            name=op.f('fk_break_in_outlet_break_in_id_break_in'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['outlet_id'], ['outlet.id'],
            name=op.f('fk_break_in_outlet_outlet_id_outlet'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['played_by_id'], ['user.id'],
            name=op.f('fk_break_in_outlet_played_by_id_user'), ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_break_in_outlet')),
        sa.UniqueConstraint(
            'break_in_id', 'outlet_id', name=op.f('uq_break_in_outlet_break_in_id_outlet_id')
        ),
    )  # fmt: skip
    for column in ('break_in_id', 'outlet_id'):
        op.create_index(
            op.f(f'ix_break_in_outlet_{column}'), 'break_in_outlet', [column], unique=False
        )

    op.create_table(
        'terminal',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('outlet_id', sa.Integer(), nullable=False),
        sa.Column(
            'kind',
            sa.Enum(
                'ip_speaker', 'column_4g', 'pc_player',
                name='terminalkind', native_enum=False, length=20,
            ),
            nullable=False,
        ),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('prefix', sa.String(length=12), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('revoked_at', UTC, nullable=True),
        sa.ForeignKeyConstraint(
            ['outlet_id'], ['outlet.id'],
            name=op.f('fk_terminal_outlet_id_outlet'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_terminal')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_terminal_token_hash')),
    )  # fmt: skip
    op.create_index(op.f('ix_terminal_outlet_id'), 'terminal', ['outlet_id'], unique=False)

    op.create_table(
        'terminal_fetch',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('terminal_id', sa.Integer(), nullable=False),
        sa.Column('outlet_id', sa.Integer(), nullable=False),
        sa.Column('program_id', sa.Integer(), nullable=True),
        sa.Column('break_in_id', sa.Integer(), nullable=True),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('at', UTC, nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('bytes_sent', sa.Integer(), nullable=False),
        sa.Column('complete', sa.Boolean(), nullable=False),
        sa.Column('ranges', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(
            ['terminal_id'], ['terminal.id'],
            name=op.f('fk_terminal_fetch_terminal_id_terminal'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['outlet_id'], ['outlet.id'],
            name=op.f('fk_terminal_fetch_outlet_id_outlet'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['program_id'], ['program.id'],
            name=op.f('fk_terminal_fetch_program_id_program'), ondelete='SET NULL',
        ),
        sa.ForeignKeyConstraint(
            ['break_in_id'], ['break_in.id'],
            name=op.f('fk_terminal_fetch_break_in_id_break_in'), ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_terminal_fetch')),
    )  # fmt: skip
    for column in ('terminal_id', 'outlet_id', 'program_id', 'break_in_id', 'day', 'at'):
        op.create_index(
            op.f(f'ix_terminal_fetch_{column}'), 'terminal_fetch', [column], unique=False
        )


def downgrade() -> None:
    op.drop_table('terminal_fetch')
    op.drop_table('terminal')
    op.drop_table('break_in_outlet')
    op.drop_table('break_in')
