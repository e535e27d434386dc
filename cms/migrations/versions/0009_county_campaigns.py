"""county campaigns: a campaign flag, and townships' copies pointing at their origin

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

``announcement.campaign`` marks a county campaign (it never goes out itself);
``announcement.origin_id`` and ``announcement.adoption`` ('adopted' | 'adapted') mark a
township's copy of one. One copy per township and campaign (unique origin_id, area_id).
Existing rows are ordinary announcements: campaign false, no origin.
"""

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'


def upgrade() -> None:
    # On SQLite this recreates the table (batch mode); cms.migrate runs migrations with
    # foreign keys off there, so that dropping the old table fires no ON DELETE action.
    with op.batch_alter_table('announcement', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('campaign', sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column('origin_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('adoption', sa.String(length=10), nullable=True))
        batch_op.create_index(batch_op.f('ix_announcement_origin_id'), ['origin_id'], unique=False)
        batch_op.create_foreign_key(
            batch_op.f('fk_announcement_origin_id_announcement'),
            'announcement',
            ['origin_id'],
            ['id'],
            ondelete='RESTRICT',
        )
        batch_op.create_unique_constraint(
            batch_op.f('uq_announcement_origin_id_area_id'), ['origin_id', 'area_id']
        )


def downgrade() -> None:
    with op.batch_alter_table('announcement', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_announcement_origin_id_area_id'), type_='unique')
        batch_op.drop_constraint(
            batch_op.f('fk_announcement_origin_id_announcement'), type_='foreignkey'
        )
        batch_op.drop_index(batch_op.f('ix_announcement_origin_id'))
        batch_op.drop_column('adoption')
        batch_op.drop_column('origin_id')
        batch_op.drop_column('campaign')
