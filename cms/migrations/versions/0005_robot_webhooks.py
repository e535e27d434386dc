"""robot webhooks

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'


def upgrade() -> None:
    # Group robots (WeCom, DingTalk, Feishu) are chat groups with a webhook address and an
    # optional signing secret; Telegram chats leave both empty.
    with op.batch_alter_table('chat_group', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('secret', sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column('chat_group', 'secret')
    op.drop_column('chat_group', 'webhook_url')
