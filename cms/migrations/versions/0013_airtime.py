"""notices that end when the event ends: an end time on the last day, parts of the day

Revision ID: 0013
Revises: 0009
Create Date: 2026-12-04

``revision.end_time`` (nullable): on its end date a revision plays and is posted only
before this time. ``revision.airtime``: the parts of the day it plays in ('all' for every
existing row).
"""

import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0009'
branch_labels = None
depends_on = None

AIRTIME = ('all', 'morning', 'noon', 'evening', 'morning+noon', 'morning+evening', 'noon+evening')


def upgrade() -> None:
    with op.batch_alter_table('revision', schema=None) as batch_op:
        batch_op.add_column(sa.Column('end_time', sa.Time(), nullable=True))
        batch_op.add_column(
            sa.Column(
                'airtime',
                sa.Enum(*AIRTIME, name='airtime', native_enum=False, length=20),
                server_default='all',
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table('revision', schema=None) as batch_op:
        batch_op.drop_column('airtime')
        batch_op.drop_column('end_time')
