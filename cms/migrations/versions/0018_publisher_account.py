"""publisher accounts and articles: generic tables the publisher plugins fill

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05

The Official Account's tables become the generic ``publisher_account`` and
``publisher_article`` (cms knows no platform's keys; the plugin owns them):

- ``wechat_account`` → ``publisher_account``: ``platform`` = 'wechat'; ``app_id`` and
  ``app_secret`` move into the plugin's ``credentials`` mapping (JSON, under the same names);
  ``thumb_media_id`` → ``cover_ref``; ``forced_refreshes`` / ``forced_refresh_day`` →
  ``token_refreshes`` / ``token_refresh_day``. One account per township and platform.
- ``wechat_article`` → ``publisher_article``: ``media_id`` → ``draft_ref``, ``publish_id`` →
  ``publish_ref``.
- The audit log follows: actions ``wechat.*`` → ``publishing.*``, object types
  ``wechataccount`` / ``wechatarticle`` → ``publisheraccount`` / ``publisherarticle``.

Tables are made anew and the rows copied with their ids (constraint and index names follow
the model's naming convention on SQLite and PostgreSQL alike); downgrade copies them back,
refusing an account of another platform (the old table has no place for it).
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

import cms.models

revision = '0018'
down_revision = '0017'

STATES = ('pending', 'creating', 'drafted', 'queued', 'submitting', 'publishing', 'published',
          'failed', 'uncertain', 'cancelled')

# Columns named alike in both versions.
ACCOUNT_SAME = ('id', 'area_id', 'office', 'active', 'access_token', 'token_expires_at',
                'token_lease_by', 'token_lease_until', 'created_at', 'updated_at')
ACCOUNT_RENAMED = {'thumb_media_id': 'cover_ref', 'forced_refreshes': 'token_refreshes',
                   'forced_refresh_day': 'token_refresh_day'}
ARTICLE_SAME = ('id', 'account_id', 'announcement_id', 'revision_id', 'state',
                'request_started_at', 'article_url', 'publish_requested_by_id', 'drafted_at',
                'submitted_at', 'published_at', 'created_at', 'attempts', 'next_attempt_at',
                'claimed_until', 'claimed_by', 'last_error', 'updated_at')
ARTICLE_RENAMED = {'media_id': 'draft_ref', 'publish_id': 'publish_ref'}
ACTIONS = {'wechat.save': 'publishing.save', 'wechat.publish': 'publishing.publish',
           'wechat.retry': 'publishing.retry'}
OBJECTS = {'wechataccount': 'publisheraccount', 'wechatarticle': 'publisherarticle'}


def _account_table(name: str, new: bool) -> None:
    specific: list[Any]
    if new:
        specific = [
            sa.Column('platform', sa.String(length=40), nullable=False),
            sa.Column('credentials', sa.JSON(), nullable=False),
            sa.Column('cover_ref', sa.String(length=128), nullable=True),
            sa.Column('token_refreshes', sa.Integer(), server_default='0', nullable=False),
            sa.Column('token_refresh_day', sa.Date(), nullable=True),
            sa.UniqueConstraint('area_id', 'platform', name=op.f(f'uq_{name}_area_id_platform')),
        ]
    else:
        specific = [
            sa.Column('app_id', sa.String(length=32), nullable=False),
            sa.Column('app_secret', sa.String(length=128), nullable=False),
            sa.Column('thumb_media_id', sa.String(length=128), nullable=True),
            sa.Column('forced_refreshes', sa.Integer(), server_default='0', nullable=False),
            sa.Column('forced_refresh_day', sa.Date(), nullable=True),
            sa.UniqueConstraint('area_id', name=op.f(f'uq_{name}_area_id')),
        ]
    op.create_table(
        name,
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('area_id', sa.Integer(), nullable=False),
        sa.Column('office', sa.String(length=16), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.Column('access_token', sa.String(length=1024), nullable=True),
        sa.Column('token_expires_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('token_lease_by', sa.String(length=80), nullable=True),
        sa.Column('token_lease_until', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('updated_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        *specific,
        sa.ForeignKeyConstraint(['area_id'], ['area.id'], name=op.f(f'fk_{name}_area_id_area'),
                                ondelete='RESTRICT'),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
    )


def _article_table(name: str, account: str, new: bool) -> None:
    draft, publish = ('draft_ref', 'publish_ref') if new else ('media_id', 'publish_id')
    op.create_table(
        name,
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('account_id', sa.Integer(), nullable=False),
        sa.Column('announcement_id', sa.Integer(), nullable=False),
        sa.Column('revision_id', sa.Integer(), nullable=False),
        sa.Column('state', sa.Enum(*STATES, name='articlestate', native_enum=False, length=20),
                  nullable=False),
        sa.Column('request_started_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column(draft, sa.String(length=128), nullable=True),
        sa.Column(publish, sa.String(length=64), nullable=True),
        sa.Column('article_url', sa.String(length=1000), nullable=True),
        sa.Column('publish_requested_by_id', sa.Integer(), nullable=True),
        sa.Column('drafted_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('submitted_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('published_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('claimed_until', cms.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column('claimed_by', sa.String(length=80), nullable=True),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('updated_at', cms.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['account_id'], [f'{account}.id'],
                                name=op.f(f'fk_{name}_account_id_{account}'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['announcement_id'], ['announcement.id'],
                                name=op.f(f'fk_{name}_announcement_id_announcement'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['publish_requested_by_id'], ['user.id'],
                                name=op.f(f'fk_{name}_publish_requested_by_id_user'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['revision_id'], ['revision.id'],
                                name=op.f(f'fk_{name}_revision_id_revision'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f(f'pk_{name}')),
        sa.UniqueConstraint('account_id', 'revision_id',
                            name=op.f(f'uq_{name}_account_id_revision_id')),
    )
    with op.batch_alter_table(name, schema=None) as batch_op:
        for column in ('account_id', 'announcement_id', 'state'):
            batch_op.create_index(batch_op.f(f'ix_{name}_{column}'), [column], unique=False)


def _drop_article_table(name: str) -> None:
    with op.batch_alter_table(name, schema=None) as batch_op:
        for column in ('state', 'announcement_id', 'account_id'):
            batch_op.drop_index(batch_op.f(f'ix_{name}_{column}'))
    op.drop_table(name)


def _copy(source: str, target: str, same: tuple[str, ...], renamed: dict[str, str],
          constant: dict[str, object] | None = None) -> None:
    """Copy every row of ``source`` into ``target`` in the database (ids and values kept as
    stored); ``constant`` fills the columns the source has not."""
    connection = op.get_bind()
    constant = constant or {}
    names = [*same, *renamed.values(), *constant]
    old = sa.table(source, *(sa.column(c) for c in (*same, *renamed)))
    columns: list[Any] = [old.c[c] for c in (*same, *renamed)]
    columns += [
        sa.literal(v, sa.JSON if isinstance(v, dict) else sa.String).label(k)
        for k, v in constant.items()
    ]
    new = sa.table(target, *(sa.column(c) for c in names))
    connection.execute(new.insert().from_select(names, sa.select(*columns).select_from(old)))
    if connection.dialect.name == 'postgresql':
        # Rows came with their ids: the new table's sequence continues after them.
        connection.execute(sa.text(
            f"SELECT setval(pg_get_serial_sequence('{target}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {target}), 0) + 1, false)"
        ))


def _move_credentials(source: str, target: str, to_json: bool) -> None:
    """``app_id`` / ``app_secret`` columns ↔ the ``credentials`` mapping, row by row."""
    connection = op.get_bind()
    flat = (sa.column('app_id', sa.String), sa.column('app_secret', sa.String))
    mapping = sa.column('credentials', sa.JSON)
    src = sa.table(source, sa.column('id', sa.Integer), *(flat if to_json else (mapping,)))
    dst = sa.table(target, sa.column('id', sa.Integer), *((mapping,) if to_json else flat))
    for row in connection.execute(sa.select(src)).mappings().all():
        if to_json:
            values = {'credentials': {'app_id': row['app_id'], 'app_secret': row['app_secret']}}
        else:
            held = row['credentials'] or {}
            values = {'app_id': held.get('app_id', ''), 'app_secret': held.get('app_secret', '')}
        connection.execute(sa.update(dst).where(dst.c.id == row['id']).values(**values))


def _relabel(actions: dict[str, str], objects: dict[str, str]) -> None:
    log = sa.table('audit_log', sa.column('action', sa.String), sa.column('object_type', sa.String))
    connection = op.get_bind()
    for old, new in actions.items():
        connection.execute(sa.update(log).where(log.c.action == old).values(action=new))
    for old, new in objects.items():
        connection.execute(sa.update(log).where(log.c.object_type == old).values(object_type=new))


def upgrade() -> None:
    _account_table('publisher_account', new=True)
    _article_table('publisher_article', 'publisher_account', new=True)
    _copy('wechat_account', 'publisher_account', ACCOUNT_SAME, ACCOUNT_RENAMED,
          {'platform': 'wechat', 'credentials': {}})
    _move_credentials('wechat_account', 'publisher_account', to_json=True)
    _copy('wechat_article', 'publisher_article', ARTICLE_SAME, ARTICLE_RENAMED)
    _drop_article_table('wechat_article')
    op.drop_table('wechat_account')
    _relabel(ACTIONS, OBJECTS)


def downgrade() -> None:
    connection = op.get_bind()
    accounts = sa.table('publisher_account', sa.column('platform', sa.String))
    other = connection.scalar(
        sa.select(accounts.c.platform).where(accounts.c.platform != 'wechat').limit(1)
    )
    if other is not None:
        raise RuntimeError(
            f'cannot downgrade below 0018: an account of the {other!r} publishing platform has '
            'no place in the old Official Account tables (remove it first)'
        )
    _account_table('wechat_account', new=False)
    _article_table('wechat_article', 'wechat_account', new=False)
    _copy('publisher_account', 'wechat_account', ACCOUNT_SAME,
          {to: frm for frm, to in ACCOUNT_RENAMED.items()}, {'app_id': '', 'app_secret': ''})
    _move_credentials('publisher_account', 'wechat_account', to_json=False)
    _copy('publisher_article', 'wechat_article', ARTICLE_SAME,
          {to: frm for frm, to in ARTICLE_RENAMED.items()})
    _drop_article_table('publisher_article')
    op.drop_table('publisher_account')
    _relabel({v: k for k, v in ACTIONS.items()}, {v: k for k, v in OBJECTS.items()})
