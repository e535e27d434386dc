"""PostgreSQL for the tests: the database CI provides, and a private schema or database per test.

``DALABA_TEST_POSTGRES_URL`` names a database the tests may write to (CI starts one, see
``.ci/run``). Without it a PostgreSQL test skips, except under CI (``CI`` set), where a
missing database is a failure, as for the browser suite.

Each test gets its own schema (the URL's ``search_path`` points at it, so every connection,
subprocesses included, sees only that test's rows) or, where a test needs whole databases
(backup and restore), its own databases; both are dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import create_engine, make_url, text

from cms.settings import Settings

ENV = "DALABA_TEST_POSTGRES_URL"


def postgres_url() -> str:
    """The test database's URL; skips the test without one (fails under CI)."""
    url = os.environ.get(ENV)
    if not url:
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide {ENV}")
        pytest.skip(f"{ENV} is not set")
    return url


def with_database(url: str, database: str) -> str:
    return make_url(url).set(database=database).render_as_string(hide_password=False)


def libpq_url(url: str) -> str:
    """The SQLAlchemy URL as libpq (psql, pg_dump) takes it: no ``+driver``."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def private_schema(url: str) -> Iterator[str]:
    """A new empty schema in ``url``'s database; yields a URL whose connections use only it."""
    name = f"test_{secrets.token_hex(6)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{name}"'))
        yield (
            make_url(url)
            .update_query_dict({"options": f"-csearch_path={name}"})
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def private_databases(url: str, count: int) -> Iterator[list[str]]:
    """``count`` new empty databases beside ``url``'s (the role needs CREATEDB)."""
    names = [f"dalaba_test_{secrets.token_hex(5)}" for _ in range(count)]
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    created: list[str] = []
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
                created.append(name)
        yield [with_database(url, name) for name in names]
    finally:
        with admin.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def settings_for(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """``settings`` on the backend a parametrised fixture asks for ("sqlite" or "postgresql").

    A test module runs on both by overriding its ``settings`` fixture::

        @pytest.fixture(params=BACKENDS)
        def settings(request, settings):
            return settings_for(request, settings)
    """
    if request.param == "sqlite":
        return settings
    return replace(settings, database_url=request.getfixturevalue("postgres_schema"))


BACKENDS = ["sqlite", "postgresql"]
