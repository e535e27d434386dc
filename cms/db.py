"""Engine, sessions and the one rule for writes.

SQLite in WAL mode lets many readers run beside one writer. A *deferred* transaction
that read first and then writes cannot wait for the writer lock: if another writer
committed after its snapshot began, SQLite answers "database is locked" at once and the
busy timeout never applies. So every transaction that may write begins ``IMMEDIATE``
(it takes the writer lock up front and waits up to :data:`BUSY_TIMEOUT_MS` for it),
and read-only work keeps the deferred ``BEGIN`` so readers never queue behind writers.

:func:`unit_of_work` is the single retry policy for a lock that outlasted the busy
timeout (or PostgreSQL's serialization failures and deadlocks): the web, the
scheduler and the bot all go through it. It reruns the whole unit on a fresh
transaction, so a unit must keep its side effects inside the database.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from cms.clock import Clock
from cms.models import DATA_DIR_ATTRIBUTE

log = logging.getLogger(__name__)

T = TypeVar("T")

BUSY_TIMEOUT_MS = 15_000
# Connection execution option that makes SQLite begin the transaction IMMEDIATE.
WRITE_OPTION = "dalaba_write"
# PostgreSQL: serialization_failure, deadlock_detected, lock_not_available.
_PG_RETRYABLE = {"40001", "40P01", "55P03"}


# The driver dalaba installs for a database, and the extra that carries it.
POSTGRES_DRIVER = "psycopg"
POSTGRES_EXTRA = "dalaba[postgres]"


def driver_problem(url: str) -> str | None:
    """Why the database driver ``url`` needs cannot be loaded (Chinese, for a terminal), or None.

    PostgreSQL needs ``psycopg`` from the ``postgres`` extra; without it SQLAlchemy would only
    say ``No module named 'psycopg'`` on the first connection. A malformed URL is left to
    ``create_engine``, whose message names the problem.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    try:
        dialect = parsed.get_dialect()
    except NoSuchModuleError:
        return f"DALABA_DATABASE_URL 的数据库类型 {parsed.drivername!r} 不受支持"
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        install = f"pip install '{POSTGRES_EXTRA}'"
        if parsed.get_backend_name() != "postgresql":
            return f"DALABA_DATABASE_URL 需要的数据库驱动没有安装（{exc}）"
        if parsed.get_driver_name() != POSTGRES_DRIVER:
            return (
                f"DALABA_DATABASE_URL 要用的 PostgreSQL 驱动 {parsed.get_driver_name()} 没有安装："
                f"请把地址写成 postgresql+{POSTGRES_DRIVER}://…，并安装 PostgreSQL 附加组件"
                f"（{install}）"
            )
        return (
            f"DALABA_DATABASE_URL 是 PostgreSQL，但没有安装它的驱动 {POSTGRES_DRIVER}："
            f"请安装 PostgreSQL 附加组件（{install}）"
        )
    return None


def make_engine(url: str, *, data_dir: Path | None = None, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite, create the folder and tune the connection.

    ``data_dir`` (``Settings.data_dir``) is the folder that stored file paths are relative to
    (:class:`cms.models.DataPath`); an engine without one refuses to read or write them.

    Raises:
        ConfigError: the database's driver is not installed (the message names the extra).
    """
    problem = driver_problem(url)
    if problem is not None:
        from cms.settings import ConfigError

        raise ConfigError(problem)
    engine = _make_engine(url, **kwargs)
    event.listen(engine, "checkin", _forget_clock)
    if data_dir is not None:
        use_data_dir(engine, data_dir)
    return engine


def use_data_dir(engine: Engine, data_dir: Path) -> Engine:
    """Stored file paths on ``engine`` are relative to ``data_dir`` (kept on its dialect).

    Raises:
        ValueError: the engine already serves another data folder.
    """
    root = Path(data_dir).expanduser().resolve()
    current = getattr(engine.dialect, DATA_DIR_ATTRIBUTE, None)
    if current is not None and current != root:
        raise ValueError(f"this engine's data folder is {current}, not {root}")
    setattr(engine.dialect, DATA_DIR_ATTRIBUTE, root)
    return engine


def _make_engine(url: str, **kwargs: Any) -> Engine:
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1] if "///" in url else ""
        if path and path != ":memory:" and not path.startswith("file:"):
            _create_private(Path(path))
        kwargs.setdefault("connect_args", {"timeout": BUSY_TIMEOUT_MS / 1000})
        engine = create_engine(url, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # SQLAlchemy, not pysqlite, issues BEGIN, so that transactions behave as on
        # PostgreSQL, and a connection marked for writing begins IMMEDIATE.
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def _create_private(path: Path) -> None:
    """A new database file is 0600 in a new 0700 folder (SQLite gives -wal/-shm the file's mode)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    immediate = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def writer(engine: Engine) -> Engine:
    """The same engine (and pool) whose transactions begin IMMEDIATE on SQLite."""
    if engine.get_execution_options().get(WRITE_OPTION):
        return engine
    return engine.execution_options(**{WRITE_OPTION: True})


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched.

    ``Session.execute`` is typed to return a plain ``Result``; for those statements it is a
    ``CursorResult``, which has the count.
    """
    return cast("CursorResult[Any]", result).rowcount


@event.listens_for(Session, "after_begin")
def _clock_on_connection(session: Session, _transaction: Any, connection: Any) -> None:
    """Row stamps (``cms.models.stamp``) read the clock of the session that writes them."""
    connection.info["clock"] = session.info.get("clock")


def _forget_clock(_dbapi_connection: Any, record: Any) -> None:
    """A pooled connection forgets its last session's clock (plain engine use reads real time)."""
    record.info.pop("clock", None)


def make_session_factory(
    engine: Engine, *, write: bool = False, clock: Clock | None = None
) -> sessionmaker[Session]:
    """Sessions on ``engine``; with ``write``, every transaction takes the writer lock first.

    ``clock`` (the edge's, usually ``settings.clock``) rides along in ``session.info``: the
    services read the time from it (:func:`cms.clock.clock_of`).
    """
    info = {"clock": clock} if clock is not None else None
    return sessionmaker(writer(engine) if write else engine, expire_on_commit=False, info=info)


def is_retryable(exc: BaseException) -> bool:
    """A lock or conflict that a fresh transaction can get past (not a broken query)."""
    if isinstance(exc, OperationalError):
        text = str(exc.orig if exc.orig is not None else exc).lower()
        if "database is locked" in text or "database table is locked" in text:
            return True
        if "busy" in text and "sqlite" in type(exc.orig).__module__:
            return True
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return getattr(exc.orig, "sqlstate", None) in _PG_RETRYABLE
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a unit of work is rerun after a lock or conflict.

    Each try already waited up to the busy timeout for the writer lock, so a few tries
    with jittered backoff are plenty; after the last one the error is raised and the
    edge turns it into a clear answer (503 on the web, a retry at the next tick …).
    """

    attempts: int = 5
    base_delay: float = 0.05
    max_delay: float = 1.0

    def delay(self, attempt: int) -> float:
        """Sleep before try ``attempt + 1``: exponential with full jitter."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))

    def run(self, fn: Callable[[], T], *, sleep: Callable[[float], None] = time.sleep) -> T:
        """Call ``fn`` until it does not fail with a retryable database error."""
        for attempt in range(self.attempts):
            try:
                return fn()
            except DBAPIError as exc:
                if attempt == self.attempts - 1 or not is_retryable(exc):
                    raise
                log.info("database busy (%s); trying again", exc.orig)
                sleep(self.delay(attempt))
        raise AssertionError("unreachable")


RETRY = RetryPolicy()


def unit_of_work(
    factory: sessionmaker[Session],
    fn: Callable[[Session], T],
    *,
    write: bool = True,
    policy: RetryPolicy = RETRY,
) -> T:
    """Run ``fn(session)`` in one transaction (IMMEDIATE when ``write``), retried on locks.

    ``fn`` may run more than once: it must not have side effects outside the session.
    """

    def once() -> T:
        with factory() as session, session.begin():
            if write:
                session.connection(execution_options={WRITE_OPTION: True})
            return fn(session)

    return policy.run(once)


@contextmanager
def transaction(factory: sessionmaker[Session], *, write: bool = True) -> Iterator[Session]:
    """One unit of work that is not retried (a CLI command): commit on success, else roll back.

    It still begins IMMEDIATE for writes, so it waits for the writer lock instead of
    failing at once.
    """
    with factory() as session, session.begin():
        if write:
            session.connection(execution_options={WRITE_OPTION: True})
        yield session
