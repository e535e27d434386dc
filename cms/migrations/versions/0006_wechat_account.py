"""wechat official account: account and articles

Revision ID: 0006
Revises: 0003 (re-chained after 0005 at merge)
Create Date: 2026-11-30
"""

from alembic import op
import sqlalchemy as sa
import cms.models


revision = '0006'
down_revision = '0005'


def upgrade() -> None:
    op.create_table('wechat_account',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('app_id', sa.String(length=32), nullable=False),
    sa.Column('app_secret', sa.String(length=128), nullable=False),
    sa.Column('office', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('access_token', sa.String(length=1024), nullable=True),
    sa.Column('token_expires_at', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('token_lease_by', sa.String(length=80), nullable=True),
    sa.Column('token_lease_until', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('thumb_media_id', sa.String(length=128), nullable=True),
    sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', cms.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['area.id'], name=op.f('fk_wechat_account_area_id_area'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_account')),
    sa.UniqueConstraint('area_id', name=op.f('uq_wechat_account_area_id'))
    )
    op.create_table('wechat_article',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('announcement_id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.Enum('pending', 'creating', 'drafted', 'queued', 'submitting', 'publishing', 'published', 'failed', 'uncertain', 'cancelled', name='articlestate', native_enum=False, length=20), nullable=False),
    sa.Column('request_started_at', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('media_id', sa.String(length=128), nullable=True),
    sa.Column('publish_id', sa.String(length=64), nullable=True),
    sa.Column('article_url', sa.String(length=1000), nullable=True),
    sa.Column('publish_requested_by_id', sa.Integer(), nullable=True),
    sa.Column('drafted_at', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('published_at', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_until', cms.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('claimed_by', sa.String(length=80), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('updated_at', cms.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['wechat_account.id'], name=op.f('fk_wechat_article_account_id_wechat_account'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['announcement_id'], ['announcement.id'], name=op.f('fk_wechat_article_announcement_id_announcement'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['publish_requested_by_id'], ['user.id'], name=op.f('fk_wechat_article_publish_requested_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['revision_id'], ['revision.id'], name=op.f('fk_wechat_article_revision_id_revision'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_wechat_article')),
    sa.UniqueConstraint('account_id', 'revision_id', name=op.f('uq_wechat_article_account_id_revision_id'))
    )
    with op.batch_alter_table('wechat_article', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_wechat_article_account_id'), ['account_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wechat_article_announcement_id'), ['announcement_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_wechat_article_state'), ['state'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('wechat_article', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_wechat_article_state'))
        batch_op.drop_index(batch_op.f('ix_wechat_article_announcement_id'))
        batch_op.drop_index(batch_op.f('ix_wechat_article_account_id'))
    op.drop_table('wechat_article')
    op.drop_table('wechat_account')
