"""Alembic: an empty database upgrades to head, and the migrations match the models, on
SQLite and on PostgreSQL (a private schema)."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from cms.db import make_engine
from cms.migrate import current_revision, head_revision, upgrade
from cms.models import Base
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
