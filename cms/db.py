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

Write transactions are short: a job claims its row in one, does its audio work, file
writes and network calls outside any transaction, and records the outcome in another
(the database is the queue, so a crash in between leaves a claim that expires). On
SQLite every write transaction's wait for the writer lock and its hold of it are timed
(:class:`WriteLog`); one that holds the lock longer than :data:`SLOW_WRITE_MS` is logged
with what it was (the unit of work's function, the web request's endpoint), which is how
a slow writer that makes every other request queue is found.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
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
SLOW_WRITE_MS = 250
"""A write transaction that holds SQLite's writer lock longer than this is logged."""
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
    event.listen(engine, "before_cursor_execute", _refuse_writes_when_reading)
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
        event.listen(engine, "commit", _sqlite_end)
        event.listen(engine, "rollback", _sqlite_end)
        event.listen(engine, "checkin", _sqlite_checkin)
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
    if not immediate:
        conn.exec_driver_sql("BEGIN")
        return
    asked = time.perf_counter()
    gate = _gate_for(conn.engine)
    entered = gate.enter(BUSY_TIMEOUT_MS / 1000)
    try:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    except BaseException:
        if entered:
            gate.leave()
        raise
    conn.info[_HELD] = (asked, time.perf_counter(), _label.get(), gate if entered else None)


def _sqlite_end(conn: Any) -> None:
    _release(conn.info)


def _sqlite_checkin(_dbapi_connection: Any, record: Any) -> None:
    """A connection back in the pool with its write still marked (it was never ended) frees it."""
    _release(record.info)


def _release(info: dict[str, Any]) -> None:
    held = info.pop(_HELD, None)
    if held is not None:
        asked, got, label, gate = held
        if gate is not None:
            gate.leave()
        WRITES.note(label, wait=got - asked, hold=time.perf_counter() - got)


class WriterGate:
    """First come, first served for SQLite's one writer lock among this process's threads.

    SQLite's own wait for the lock (the busy handler) polls with growing sleeps, up to
    100 ms apart, and whoever polls at the right moment wins: under load a writer that has
    waited longest keeps losing to newcomers, which is the long tail of every write. Here a
    thread waits for its turn in arrival order and is woken the moment the previous writer
    ends; SQLite's busy timeout still guards the lock against other processes.

    A thread that already holds the gate (a write begun inside a write) is not made to wait
    for itself, and one that waited ``timeout`` goes on without it to SQLite's own wait.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next_ticket = 0
        self._serving = 0
        self._holder: int | None = None
        self._abandoned: set[int] = set()  # tickets whose threads stopped waiting

    def enter(self, timeout: float) -> bool:
        me = threading.get_ident()
        with self._cond:
            if self._holder == me:
                return False
            ticket = self._next_ticket
            self._next_ticket += 1
            deadline = time.monotonic() + timeout
            while self._serving != ticket:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self._serving == ticket:
                        break
                    self._abandon(ticket)
                    return False
            self._holder = me
            return True

    def leave(self) -> None:
        with self._cond:
            self._holder = None
            self._advance()

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1
        self._cond.notify_all()

    def _abandon(self, ticket: int) -> None:
        self._abandoned.add(ticket)


_GATES: dict[str, WriterGate] = {}
_GATES_LOCK = threading.Lock()


def _gate_for(engine: Engine) -> WriterGate:
    """One gate per database file, shared by every engine of this process that opens it."""
    key = str(engine.url.database or "")
    with _GATES_LOCK:
        gate = _GATES.get(key)
        if gate is None:
            gate = _GATES[key] = WriterGate()
        return gate


_HELD = "dalaba_write_held"
_label: ContextVar[str] = ContextVar("dalaba_write_label", default="?")


@contextmanager
def labelled(label: str) -> Iterator[None]:
    """Name the write transactions begun inside (for :data:`WRITES` and the slow-write log)."""
    token = _label.set(label)
    try:
        yield
    finally:
        _label.reset(token)


@dataclass
class WriteLog:
    """How long write transactions waited for SQLite's writer lock and held it, by label.

    Only SQLite has one writer for the whole database; PostgreSQL locks rows, so nothing
    is timed there.
    """

    slow_ms: float = SLOW_WRITE_MS
    count: dict[str, int] = field(default_factory=dict)
    held_s: dict[str, float] = field(default_factory=dict)
    longest_s: dict[str, float] = field(default_factory=dict)
    waited_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, label: str, *, wait: float, hold: float) -> None:
        with self._lock:
            self.count[label] = self.count.get(label, 0) + 1
            self.held_s[label] = self.held_s.get(label, 0.0) + hold
            self.longest_s[label] = max(self.longest_s.get(label, 0.0), hold)
            self.waited_s += wait
        if hold * 1000 >= self.slow_ms:
            log.info(
                "write lock held %.0f ms (after waiting %.0f ms) by %s",
                hold * 1000,
                wait * 1000,
                label,
            )

    def summary(self) -> list[tuple[str, int, float, float]]:
        """(label, transactions, total ms held, longest ms held), the most held first."""
        with self._lock:
            rows = [
                (k, self.count[k], self.held_s[k] * 1000, self.longest_s[k] * 1000)
                for k in self.count
            ]
        return sorted(rows, key=lambda r: -r[2])


WRITES = WriteLog()


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
    connection.info[_READING] = session.info.get(_READING, False)


def _forget_clock(_dbapi_connection: Any, record: Any) -> None:
    """A pooled connection forgets its last session's clock (plain engine use reads real time)."""
    record.info.pop("clock", None)
    record.info.pop(_READING, None)


class WriteNeeded(Exception):  # noqa: N818 - a signal, not a failure
    """A unit of work run first as a read (``write=WHEN_NEEDED``) came to a write."""


_READING = "dalaba_reading_first"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _refuse_writes_when_reading(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
    if conn.info.get(_READING) and statement.lstrip()[:7].upper().startswith(_WRITES):
        raise WriteNeeded(statement[:80])


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


WHEN_NEEDED = "when_needed"
"""``unit_of_work(write=WHEN_NEEDED)``: take the write lock only if the unit writes."""


def unit_of_work(
    factory: sessionmaker[Session],
    fn: Callable[[Session], T],
    *,
    write: bool | str = True,
    policy: RetryPolicy = RETRY,
) -> T:
    """Run ``fn(session)`` in one transaction (IMMEDIATE when ``write``), retried on locks.

    ``fn`` may run more than once: it must not have side effects outside the session.
    With ``write=WHEN_NEEDED`` it runs first as a read; at its first INSERT, UPDATE or
    DELETE that try is abandoned and ``fn`` runs again as a write. For the scheduler's
    checks at every tick that mostly find nothing to change: they then never queue for the
    writer lock, nor make others queue behind them. ``fn`` must not catch :class:`WriteNeeded`.
    """
    if write == WHEN_NEEDED:

        def reading() -> T:
            with factory(info={_READING: True}) as session, session.begin():
                return fn(session)

        try:
            return policy.run(reading)
        except WriteNeeded:
            return unit_of_work(factory, fn, write=True, policy=policy)

    def once() -> T:
        with factory() as session, session.begin():
            if write:
                session.connection(execution_options={WRITE_OPTION: True})
            return fn(session)

    if not write:
        return policy.run(once)
    with labelled(_name_of(fn)):
        return policy.run(once)


def _name_of(fn: Callable[..., Any]) -> str:
    """What a unit of work is called in the write log: its function (a partial's too)."""
    target = getattr(fn, "func", fn)
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', '?')}"


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
