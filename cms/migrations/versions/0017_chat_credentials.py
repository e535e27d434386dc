"""a chat's credentials belong to its plugin

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-05

A group robot kept its webhook address and signing secret in two columns of ``chat_group``
that cms named. They become one opaque mapping, ``credentials``, under the names the
chat's plugin gives them (``cms.channels.Binding``): the robots (WeCom, DingTalk, Feishu)
call them ``webhook`` and ``secret``, the fields of their bind form. Upgrade moves each
robot's address and secret there; Telegram chats get an empty mapping. Downgrade moves
them back (any other key a plugin stored has no column before this revision and is lost).
"""

import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'

# The robots plugin's names for what the two old columns held (robots.keys).
WEBHOOK, SECRET = 'webhook', 'secret'
# The columns on both sides of this revision (each step reads the ones it has).
CHAT = sa.table(
    'chat_group',
    sa.column('id', sa.Integer),
    sa.column('webhook_url', sa.Text),
    sa.column('secret', sa.Text),
    sa.column('credentials', sa.JSON),
)


def upgrade() -> None:
    with op.batch_alter_table('chat_group', schema=None) as batch_op:
        batch_op.add_column(sa.Column('credentials', sa.JSON(), nullable=True))
    connection = op.get_bind()
    query = sa.select(CHAT.c.id, CHAT.c.webhook_url, CHAT.c.secret)
    for row in connection.execute(query).mappings().all():
        credentials = {
            key: value
            for key, value in ((WEBHOOK, row['webhook_url']), (SECRET, row['secret']))
            if value
        }
        connection.execute(
            sa.update(CHAT).where(CHAT.c.id == row['id']).values(credentials=credentials)
        )
    with op.batch_alter_table('chat_group', schema=None) as batch_op:
        batch_op.alter_column('credentials', existing_type=sa.JSON(), nullable=False)
        batch_op.drop_column('secret')
        batch_op.drop_column('webhook_url')


def downgrade() -> None:
    with op.batch_alter_table('chat_group', schema=None) as batch_op:
        batch_op.add_column(sa.Column('webhook_url', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('secret', sa.Text(), nullable=True))
    connection = op.get_bind()
    for row in connection.execute(sa.select(CHAT.c.id, CHAT.c.credentials)).mappings().all():
        credentials = row['credentials'] or {}
        connection.execute(
            sa.update(CHAT)
            .where(CHAT.c.id == row['id'])
            .values(
                webhook_url=credentials.get(WEBHOOK) or None,
                secret=credentials.get(SECRET) or None,
            )
        )
    with op.batch_alter_table('chat_group', schema=None) as batch_op:
        batch_op.drop_column('credentials')
