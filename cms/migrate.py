"""Schema migrations with Alembic, driven from code (no alembic.ini to find)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from cms.models import DATA_DIR_ATTRIBUTE

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(engine: Engine, target: str = "heads") -> None:
    """Bring the database schema up to ``target``.

    Migrations that move stored file paths (0015) learn the data folder from the engine
    (``make_engine(url, data_dir=settings.data_dir)``).
    """
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        config.attributes["connection"] = connection
        config.attributes["data_dir"] = getattr(engine.dialect, DATA_DIR_ATTRIBUTE, None)
        command.upgrade(config, target)
        if connection.dialect.name == "sqlite":
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"migration left rows with dangling references: {broken}")


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """On SQLite, foreign keys off while migrating (SQLite's own procedure for changing tables).

    Batch migrations recreate a table: dropping the old one would fire the ON DELETE
    actions (CASCADE, SET NULL) of every table that refers to it. The pragma only works
    outside a transaction; the references are checked before the migration commits.
    """
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys=ON")


def downgrade(engine: Engine, target: str) -> None:
    """Take the database schema back to ``target`` (for an admin undoing an upgrade)."""
    config = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.connect() as connection, _foreign_keys_off(connection), connection.begin():
        config.attributes["connection"] = connection
        config.attributes["data_dir"] = getattr(engine.dialect, DATA_DIR_ATTRIBUTE, None)
        command.downgrade(config, target)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
