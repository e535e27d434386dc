"""Alembic: an empty database upgrades to head, and the migrations match the models, on
SQLite and on PostgreSQL (a private schema); data migrations keep what existing rows mean."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, Integer, String, column, inspect, select, table, text, update

from cms.db import make_engine, make_session_factory
from cms.jobs.staff import abandon_expired
from cms.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade
from cms.models import (
    Area,
    AreaKind,
    Base,
    ChatGroup,
    DeliveryState,
    StaffChannel,
    StaffPost,
    UTCDateTime,
)
from tests.pg import BACKENDS


@pytest.fixture(params=BACKENDS)
def fresh(request, tmp_path):  # type: ignore[no-untyped-def]
    """An empty database: a SQLite file, or a private PostgreSQL schema."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
    else:
        url = request.getfixturevalue("postgres_schema")
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_empty_database_upgrades_to_head(fresh: Engine) -> None:
    engine = fresh
    assert inspect(engine).get_table_names() == []
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    upgrade(engine)  # a second run is a no-op
    assert current_revision(engine) == head_revision()


def test_migrations_match_the_models(fresh: Engine) -> None:
    engine = fresh
    upgrade(engine)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


def test_sqlite_runs_in_wal_with_busy_timeout(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_0007_gives_existing_announcements_the_office_of_their_targets(tmp_path):
    """Users stay install-wide (NULL); an announcement belongs to the common ancestor of its
    latest revision's targets, or to the only top-level area when it targets nothing."""
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0006")
    rows = {
        "area": [
            (1, "清水镇", "township", None, "/1/"),
            (2, "石桥村", "village", 1, "/1/2/"),
            (3, "一组", "group", 2, "/1/2/3/"),
            (4, "柳林村", "village", 1, "/1/4/"),
        ],
    }
    with engine.begin() as conn:
        for area in rows["area"]:
            conn.exec_driver_sql(
                "INSERT INTO area (id, name, kind, parent_id, path, sort) VALUES (?,?,?,?,?,0)",
                area,
            )
        conn.exec_driver_sql(
            "INSERT INTO user (id, username, display_name, password_hash, role, active,"
            " created_at, session_version) VALUES (1, 'w', 'w', 'x', 'editor', 1, "
            "'2026-01-01 00:00:00', 0)"
        )
        # Rows that refer to the user: recreating the user table must not cascade or null them.
        conn.exec_driver_sql(
            "INSERT INTO api_token (id, user_id, token_hash, prefix, label, created_at)"
            " VALUES (1, 1, 'h', 'p', '', '2026-01-01 00:00:00')"
        )
        conn.exec_driver_sql(
            "INSERT INTO audit_log (id, at, user_id, action, object_type, detail)"
            " VALUES (1, '2026-01-01 00:00:00', 1, 'user.login', 'user', '{}')"
        )
        targets = {1: [2, 4], 2: [3], 3: []}
        for ann_id, area_ids in targets.items():
            conn.exec_driver_sql(
                "INSERT INTO announcement (id, status, created_by_id, created_at, updated_at)"
                " VALUES (?, 'draft', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')",
                (ann_id,),
            )
            conn.exec_driver_sql(
                "INSERT INTO revision (id, announcement_id, number, title, body, priority,"
                " to_loudspeaker, to_chats, start_date, end_date, repeats, voice, rate,"
                " author_id, created_at) VALUES (?, ?, 1, 't', 'b', 'normal', 1, 0,"
                " '2026-01-01', '2026-01-02', 1, 'v', 0, 1, '2026-01-01 00:00:00')",
                (ann_id, ann_id),
            )
            conn.exec_driver_sql(
                "UPDATE announcement SET latest_revision_id = ? WHERE id = ?", (ann_id, ann_id)
            )
            for area_id in area_ids:
                conn.exec_driver_sql(
                    "INSERT INTO revision_area (revision_id, area_id) VALUES (?, ?)",
                    (ann_id, area_id),
                )
    upgrade(engine)
    with engine.connect() as conn:
        owners = dict(conn.exec_driver_sql("SELECT id, area_id FROM announcement").all())
        user_area = conn.exec_driver_sql("SELECT area_id FROM user").scalar()
        kept = conn.exec_driver_sql(
            "SELECT (SELECT user_id FROM api_token), (SELECT user_id FROM audit_log)"
        ).one()
        foreign_keys = conn.exec_driver_sql("PRAGMA foreign_keys").scalar()
    assert owners == {1: 1, 2: 3, 3: 1}
    assert user_area is None
    assert tuple(kept) == (1, 1)
    assert foreign_keys == 1  # back on for the connections the pool hands out


def _before(revision: str) -> str:
    """The revision ``revision`` follows."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    down = script.get_revision(revision).down_revision
    assert isinstance(down, str)
    return down


def test_0016_queues_staff_posts_keeping_each_rows_meaning(fresh: Engine) -> None:
    """Every old state is kept; a post that was being sent keeps its claim's expiry (which
    ``next_attempt_at`` carried), so the crash rule still makes it uncertain; and back."""
    engine = fresh
    upgrade(engine)
    with make_session_factory(engine)() as session:
        area = Area(name="清水镇", kind=AreaKind.TOWNSHIP, path="/1/")
        session.add(area)
        session.flush()
        chat = ChatGroup(platform="wecom", chat_id="robot-1", title="干部群", area_id=area.id)
        session.add(chat)
        session.flush()
        channel = StaffChannel(area_id=area.id, chat_group_id=chat.id, events=["review"])
        session.add(channel)
        session.flush()
        for kind in ("pending", "sending", "sent", "failed", "uncertain"):
            session.add(StaffPost(staff_channel_id=channel.id, kind=kind, text=kind))
        session.commit()
    before = _before("0016")
    downgrade(engine, before)
    assert current_revision(engine) == before
    columns = {c["name"] for c in inspect(engine).get_columns("staff_post")}
    assert not columns & {"claimed_by", "claimed_until", "updated_at"}
    made = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    expiry = made + timedelta(minutes=5)
    old = table(
        "staff_post",
        column("kind", String),
        column("state", String),
        column("attempts", Integer),
        column("created_at", UTCDateTime()),
        column("next_attempt_at", UTCDateTime()),
    )
    with engine.begin() as conn:  # as the staff job before 0016 left them
        conn.execute(update(old).values(state=old.c.kind, attempts=1, created_at=made))
        conn.execute(update(old).where(old.c.state == "sending").values(next_attempt_at=expiry))
        conn.execute(
            update(old)
            .where(old.c.state == "pending")
            .values(next_attempt_at=made + timedelta(minutes=1))
        )

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    with make_session_factory(engine)() as session:
        posts = {p.kind: p for p in session.scalars(select(StaffPost))}
        assert {kind: p.state for kind, p in posts.items()} == {
            "pending": DeliveryState.PENDING,
            "sending": DeliveryState.SENDING,
            "sent": DeliveryState.SENT,
            "failed": DeliveryState.FAILED,
            "uncertain": DeliveryState.UNCERTAIN,
        }
        assert all(p.updated_at == made and p.attempts == 1 for p in posts.values())
        sending, pending = posts["sending"], posts["pending"]
        assert sending.claimed_until == expiry and sending.next_attempt_at is None
        assert pending.next_attempt_at == made + timedelta(minutes=1)
        assert pending.claimed_until is None and pending.claimed_by is None
        # Before its claim expires the post is being sent; after, it may have arrived.
        assert abandon_expired(session, expiry - timedelta(seconds=1)) == 0
        assert abandon_expired(session, expiry + timedelta(seconds=1)) == 1
        session.rollback()

    downgrade(engine, before)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT kind, state FROM staff_post")).all())
        back = conn.execute(
            text("SELECT next_attempt_at FROM staff_post WHERE state = 'sending'")
        ).scalar_one()
    assert rows == {k: k for k in ("pending", "sending", "sent", "failed", "uncertain")}
    assert back is not None
    upgrade(engine)
