"""staff posts are queued like every other job (cms.jobs.lifecycle.run_job)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05

``staff_post`` gets the columns of ``cms.models.QueueMixin``: ``claimed_by`` and
``claimed_until`` (the claim and its expiry, which ``next_attempt_at`` used to carry while a
post was being sent) and ``updated_at`` (its ``created_at`` for existing rows). Its state is
typed now (``cms.models.DeliveryState``, stored by value as before): the old strings
``pending|sending|sent|failed|uncertain`` are those values, so rows keep their meaning. A
post still ``sending`` keeps its claim's expiry, so the crash rule still makes it
``uncertain`` (it may have arrived) and it is never sent again. Downgrade puts a sending
post's claim expiry back into ``next_attempt_at``.
"""

import sqlalchemy as sa
from alembic import op

import cms.models

revision = '0016'
down_revision = '0015'

UTC = cms.models.UTCDateTime()
STATES = ('pending', 'sending', 'sent', 'uncertain', 'failed', 'cancelled')

post = sa.table(
    'staff_post',
    sa.column('state', sa.String),
    sa.column('next_attempt_at', UTC),
    sa.column('claimed_until', UTC),
    sa.column('created_at', UTC),
    sa.column('updated_at', UTC),
)


def upgrade() -> None:
    with op.batch_alter_table('staff_post', schema=None) as batch_op:
        batch_op.add_column(sa.Column('claimed_until', UTC, nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('updated_at', UTC, nullable=True))
    op.execute(post.update().values(updated_at=post.c.created_at))
    # A post being sent carried its claim's expiry in next_attempt_at.
    op.execute(
        post.update()
        .where(post.c.state == 'sending')
        .values(claimed_until=post.c.next_attempt_at, next_attempt_at=None)
    )
    with op.batch_alter_table('staff_post', schema=None) as batch_op:
        batch_op.alter_column('updated_at', existing_type=UTC, nullable=False)
        batch_op.alter_column(
            'state',
            existing_type=sa.String(length=20),
            type_=sa.Enum(*STATES, name='deliverystate', native_enum=False, length=20),
            existing_nullable=False,
        )


def downgrade() -> None:
    op.execute(
        post.update()
        .where(post.c.state == 'sending')
        .values(next_attempt_at=post.c.claimed_until)
    )
    # Staff posts are never cancelled; were one, it would not be sent: failed, as before.
    op.execute(post.update().where(post.c.state == 'cancelled').values(state='failed'))
    with op.batch_alter_table('staff_post', schema=None) as batch_op:
        batch_op.alter_column(
            'state',
            existing_type=sa.Enum(*STATES, name='deliverystate', native_enum=False, length=20),
            type_=sa.String(length=20),
            existing_nullable=False,
        )
        batch_op.drop_column('updated_at')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('claimed_until')
