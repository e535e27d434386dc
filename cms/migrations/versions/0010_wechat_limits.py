"""Official Account: a daily count of forced token refreshes, and when a publish was submitted

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04

``wechat_account.forced_refreshes`` / ``forced_refresh_day``: how many times the access
token was fetched with ``force_refresh`` on that (township) day; the platform allows 20 a
day, and each one invalidates the token other systems on the same AppID hold.
``wechat_article.submitted_at``: when ``freepublish/submit`` was accepted, so that polling
``freepublish/get`` has an overall limit. Existing rows: no forced refreshes, no time.
"""

import sqlalchemy as sa
from alembic import op

import cms.models

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("wechat_account", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("forced_refreshes", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("forced_refresh_day", sa.Date(), nullable=True))
    with op.batch_alter_table("wechat_article", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("submitted_at", cms.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("wechat_article", schema=None) as batch_op:
        batch_op.drop_column("submitted_at")
    with op.batch_alter_table("wechat_account", schema=None) as batch_op:
        batch_op.drop_column("forced_refresh_day")
        batch_op.drop_column("forced_refreshes")
