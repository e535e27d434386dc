"""notices that end when the event ends (an end time on the last day, parts of the day);
offices' notice templates; townships' staff channels and their posts

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04

``revision.end_time`` (nullable): on its end date a revision plays and is posted only
before this time. ``revision.airtime``: the parts of the day it plays in ('all' for every
existing row). ``notice_template``: templates an office keeps beside the shipped library.
"""

import sqlalchemy as sa

import cms.models
from alembic import op

revision = '0013'
down_revision = '0012'

AIRTIME = ('all', 'morning', 'noon', 'evening', 'morning+noon', 'morning+evening', 'noon+evening')


def upgrade() -> None:
    op.create_table(
        'notice_template',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('area_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=80), nullable=False),
        sa.Column('title', sa.String(length=200), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['area_id'], ['area.id'], name=op.f('fk_notice_template_area_id_area'),
            ondelete='RESTRICT',
        ),
        sa.ForeignKeyConstraint(
            ['created_by_id'], ['user.id'], name=op.f('fk_notice_template_created_by_id_user'),
            ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_notice_template')),
    )
    op.create_index(
        op.f('ix_notice_template_area_id'), 'notice_template', ['area_id'], unique=False
    )
    op.create_table(
        'staff_channel',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('area_id', sa.Integer(), nullable=False),
        sa.Column('chat_group_id', sa.Integer(), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('audit_mark', sa.Integer(), nullable=False),
        sa.Column('alert_mark', sa.Integer(), nullable=False),
        sa.Column('failure_mark', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('review_due', sa.Boolean(), nullable=False),
        sa.Column('review_posted_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['area_id'], ['area.id'], name=op.f('fk_staff_channel_area_id_area'),
            ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['chat_group_id'], ['chat_group.id'],
            name=op.f('fk_staff_channel_chat_group_id_chat_group'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_channel')),
        sa.UniqueConstraint('area_id', name=op.f('uq_staff_channel_area_id')),
    )
    op.create_table(
        'staff_post',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('staff_channel_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=20), nullable=False),
        sa.Column('text', sa.Text(), nullable=False),
        sa.Column('state', sa.String(length=20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('sent_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['staff_channel_id'], ['staff_channel.id'],
            name=op.f('fk_staff_post_staff_channel_id_staff_channel'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_post')),
    )
    op.create_index(op.f('ix_staff_post_staff_channel_id'), 'staff_post', ['staff_channel_id'])
    op.create_index(op.f('ix_staff_post_state'), 'staff_post', ['state'])
    with op.batch_alter_table('revision', schema=None) as batch_op:
        batch_op.add_column(sa.Column('end_time', sa.Time(), nullable=True))
        batch_op.add_column(
            sa.Column(
                'airtime',
                sa.Enum(*AIRTIME, name='airtime', native_enum=False, length=20),
                server_default='all',
                nullable=False,
            )
        )


def downgrade() -> None:
    op.drop_index(op.f('ix_staff_post_state'), table_name='staff_post')
    op.drop_index(op.f('ix_staff_post_staff_channel_id'), table_name='staff_post')
    op.drop_table('staff_post')
    op.drop_table('staff_channel')
    op.drop_index(op.f('ix_notice_template_area_id'), table_name='notice_template')
    op.drop_table('notice_template')
    with op.batch_alter_table('revision', schema=None) as batch_op:
        batch_op.drop_column('airtime')
        batch_op.drop_column('end_time')
