"""session version

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'


def upgrade() -> None:
    # Existing users start at 0; cookies from before this version carry none, so every
    # session signed before the upgrade ends and people log in once more.
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('session_version', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35, PostgreSQL): recreating the user
    # table in batch mode would fire the ON DELETE actions of the tables that refer to it.
    op.drop_column('user', 'session_version')
