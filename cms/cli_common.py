"""What every ``dalaba`` command shares: settings, the database and the exits with their own codes.

The command modules (``cms.cli`` and ``cms.cli_*``, and plugins such as ``bot.cli``) import
from here and never from each other, so there are no import cycles between them.

Only ``dalaba db upgrade`` (and ``dalaba demo``, for the demo database it creates) changes the
schema. Every other command opens the database with :func:`checked_engine`, which refuses one whose
schema is behind (or ahead of) this version with one clear message and
:data:`SCHEMA_EXIT_CODE`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from cms.settings import ConfigError, Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

# sysexits.h EX_CONFIG: the database is not set up for this version of dalaba.
SCHEMA_EXIT_CODE = 78
# sysexits.h EX_TEMPFAIL: the disk is full, try again later.
DISK_FULL_EXIT_CODE = 75
UPGRADE_HINT = "请先运行 dalaba db upgrade"


class DiskFullExit(click.ClickException):
    """The disk is full: one clear message and its own exit code (75, "try again later")."""

    exit_code = DISK_FULL_EXIT_CODE


class SchemaExit(click.ClickException):
    """The database schema does not match this version: say what to do, exit 78."""

    exit_code = SCHEMA_EXIT_CODE


def load_settings(demo: bool = False, **overrides: object) -> Settings:
    """The settings from ``DALABA_*`` variables; a bad value ends the command with its message."""
    from cms.channels import check_config
    from cms.publishers import check_config as check_publishers

    try:
        settings = Settings.from_env(None, demo=demo, **overrides)
        check_config(settings)
        check_publishers(settings)
        return settings
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def schema_problem(engine: Engine) -> str | None:
    """Why this database cannot be used as it is (Chinese, for a terminal), or None."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from cms.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    with engine.connect() as connection:
        current = set(MigrationContext.configure(connection).get_current_heads())
    heads = set(script.get_heads())
    if current == heads:
        return None
    if not current:
        return f"数据库还没有建立表结构：{UPGRADE_HINT}"
    known = {revision.revision for revision in script.walk_revisions()}
    unknown = sorted(current - known)
    if unknown:
        return (
            f"数据库结构（版本 {'、'.join(unknown)}）比这个版本的大喇叭新："
            "请换用更新的大喇叭，或恢复与之匹配的数据库备份"
        )
    return (
        f"数据库结构需要升级（当前版本 {'、'.join(sorted(current))}，"
        f"最新版本 {'、'.join(sorted(heads))}）：{UPGRADE_HINT}"
    )


def checked_engine(settings: Settings) -> Engine:
    """The database engine, refused (exit 78) when its schema is not this version's."""
    from cms.db import make_engine

    made = make_engine(settings.database_url, data_dir=settings.data_dir)
    problem = schema_problem(made)
    if problem is not None:
        made.dispose()
        raise SchemaExit(problem)
    return made


def upgraded_engine(settings: Settings) -> Engine:
    """The database engine after bringing the schema up to date (``db upgrade`` and ``demo``)."""
    from cms.db import make_engine
    from cms.migrate import upgrade

    made = make_engine(settings.database_url, data_dir=settings.data_dir)
    upgrade(made)
    return made


def session_factory(settings: Settings) -> sessionmaker[Session]:
    """Sessions on the (checked) database of ``settings``."""
    from cms.db import make_session_factory

    return make_session_factory(checked_engine(settings), clock=settings.clock)


def cli_settings() -> Settings:
    """Settings for commands that never sign anything, so need no ``DALABA_SECRET_KEY``."""
    return load_settings(secret_key="unused-for-cli")
