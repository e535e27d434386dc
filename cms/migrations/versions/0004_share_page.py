"""share page

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import secrets

from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'

TOKEN_BYTES = 32  # as cms.services.share.TOKEN_BYTES


def upgrade() -> None:
    # A plain ALTER TABLE … ADD COLUMN and a unique index: recreating the announcement table
    # in batch mode would fire the ON DELETE CASCADE of its revisions.
    op.add_column('announcement', sa.Column('share_token', sa.String(length=64), nullable=True))
    op.create_index(
        op.f('ix_announcement_share_token'), 'announcement', ['share_token'], unique=True
    )
    op.create_table(
        'share_download',
        sa.Column('announcement_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['announcement_id'],
            ['announcement.id'],
            name=op.f('fk_share_download_announcement_id_announcement'),
            ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('announcement_id', 'day', name=op.f('pk_share_download')),
    )
    # Announcements approved before this version get their share link now, so that no read
    # path has to write one later.
    announcement = sa.table(
        'announcement',
        sa.column('id', sa.Integer),
        sa.column('approved_revision_id', sa.Integer),
        sa.column('share_token', sa.String),
    )
    conn = op.get_bind()
    ids = conn.execute(
        sa.select(announcement.c.id).where(announcement.c.approved_revision_id.is_not(None))
    ).scalars()
    for ann_id in list(ids):
        conn.execute(
            announcement.update()
            .where(announcement.c.id == ann_id)
            .values(share_token=secrets.token_urlsafe(TOKEN_BYTES))
        )


def downgrade() -> None:
    op.drop_table('share_download')
    op.drop_index(op.f('ix_announcement_share_token'), table_name='announcement')
    op.drop_column('announcement', 'share_token')
