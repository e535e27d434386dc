"""a voice and engine per outlet: outlet.voice and outlet.tts_engine (NULL: inherited)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

An outlet may speak every announcement with its own voice (a village that prefers a male
voice) and engine (a recording-only outlet for a dialect). NULL keeps today's behaviour:
each announcement's own voice, the township's engine. Existing outlets inherit.
"""

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'


def upgrade() -> None:
    with op.batch_alter_table('outlet', schema=None) as batch_op:
        batch_op.add_column(sa.Column('voice', sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column('tts_engine', sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('outlet', schema=None) as batch_op:
        batch_op.drop_column('tts_engine')
        batch_op.drop_column('voice')
