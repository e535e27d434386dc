"""login lock: an account locked after many failed logins from many addresses

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04

``user.login_locked_until``: while in the future, the account takes no login from any
address (an admin lifts it on the users page). Failed logins from one address, or for one
account from one address, only slow that address down; see cms.services.users.
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'


def upgrade() -> None:
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('login_locked_until', sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    # A plain ALTER TABLE … DROP COLUMN (SQLite ≥ 3.35, PostgreSQL): recreating the user
    # table in batch mode would fire the ON DELETE actions of the tables that refer to it.
    op.drop_column('user', 'login_locked_until')
