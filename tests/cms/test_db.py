"""The one rule for writes: IMMEDIATE write transactions, one retry policy, reads never write."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.exc import IntegrityError, OperationalError

from cms.db import (
    WHEN_NEEDED,
    WRITES,
    RetryPolicy,
    WriterGate,
    _gate_for,
    is_retryable,
    make_session_factory,
    unit_of_work,
)
from cms.models import ApiToken, Role, Topic, utcnow
from cms.services import users


def _locked() -> OperationalError:
    return OperationalError("UPDATE x", {}, sqlite3.OperationalError("database is locked"))


def test_retry_policy_reruns_only_lock_errors() -> None:
    calls: list[int] = []
    slept: list[float] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise _locked()
        return "done"

    policy = RetryPolicy(attempts=5, base_delay=0.01)
    assert policy.run(flaky, sleep=slept.append) == "done"
    assert len(calls) == 3 and len(slept) == 2 and all(0 <= s <= 0.02 for s in slept)

    def broken() -> None:
        raise IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed"))

    with pytest.raises(IntegrityError):
        policy.run(broken, sleep=slept.append)
    assert len(slept) == 2  # not retried

    def always_locked() -> None:
        raise _locked()

    with pytest.raises(OperationalError):
        policy.run(always_locked, sleep=slept.append)
    assert len(slept) == 2 + 4  # five tries, four pauses, then the error


def test_is_retryable_knows_sqlite_and_postgres_conflicts() -> None:
    assert is_retryable(_locked())
    full = OperationalError("x", {}, sqlite3.OperationalError("database or disk is full"))
    assert not is_retryable(full)

    class PgError(Exception):
        sqlstate = "40001"

    assert is_retryable(OperationalError("x", {}, PgError()))


def test_a_write_unit_that_read_first_waits_instead_of_failing(engine: Engine) -> None:
    """The classic WAL trap: read, another writer commits, then write. IMMEDIATE avoids it."""
    sessions = make_session_factory(engine)
    unit_of_work(sessions, lambda s: s.add(Topic(name="起始")))
    other_committed = threading.Event()

    def other_writer() -> None:
        with sessions.begin() as s:
            s.add(Topic(name="别人写的"))
        other_committed.set()

    thread: threading.Thread | None = None

    def read_then_write(session: Any) -> int:
        nonlocal thread
        count = len(session.scalars(select(Topic)).all())
        if thread is None:
            thread = threading.Thread(target=other_writer)
            thread.start()
            # The other writer must wait for our lock, not commit under our snapshot.
            assert not other_committed.wait(0.3)
        session.add(Topic(name=f"第{count}个"))
        return count

    assert unit_of_work(sessions, read_then_write) == 1
    assert thread is not None
    thread.join(5)
    assert other_committed.is_set()
    with sessions() as session:
        names = set(session.scalars(select(Topic.name)))
    assert names == {"起始", "第1个", "别人写的"}


def test_a_unit_that_writes_only_when_needed_reads_without_the_writer_lock(
    engine: Engine,
) -> None:
    """``write=WHEN_NEEDED``: a unit that finds nothing to write never queues for the writer
    lock; one that writes is run again as a write, and only its write is kept."""
    if engine.dialect.name != "sqlite":
        pytest.skip("only SQLite has one writer lock for the whole database")
    sessions = make_session_factory(engine)
    unit_of_work(sessions, lambda s: s.add(Topic(name="已有")))
    runs: list[int] = []

    def add_if_missing(session: Any) -> str:
        runs.append(1)
        if session.scalar(select(Topic.id).where(Topic.name == "新的")) is None:
            session.add(Topic(name="新的"))
            session.flush()
            return "added"
        return "there"

    # Another connection holds the writer lock: a unit with nothing to write goes on.
    blocker = sessions()
    blocker.connection(execution_options={"dalaba_write": True})
    blocker.add(Topic(name="别人的"))
    blocker.flush()
    found: list[list[str]] = []
    reading = threading.Thread(
        target=lambda: found.append(unit_of_work(sessions, _names, write=WHEN_NEEDED))
    )
    reading.start()
    reading.join(10)  # a unit queueing for the lock would wait the busy timeout (15 s)
    assert not reading.is_alive() and found == [["已有"]]
    blocker.rollback()
    blocker.close()

    # Something to write: the read try stops at the INSERT, the write try does it, once.
    held = WRITES.count.get(f"{__name__}.{add_if_missing.__qualname__}", 0)
    runs.clear()
    assert unit_of_work(sessions, add_if_missing, write=WHEN_NEEDED) == "added"
    assert runs == [1, 1]
    assert WRITES.count.get(f"{__name__}.{add_if_missing.__qualname__}", 0) == held + 1
    runs.clear()
    assert unit_of_work(sessions, add_if_missing, write=WHEN_NEEDED) == "there"
    assert runs == [1]
    with sessions() as session:
        assert session.scalars(select(Topic.name).order_by(Topic.id)).all() == ["已有", "新的"]


def _names(session: Any) -> list[str]:
    return list(session.scalars(select(Topic.name)))


def test_the_deferred_trap_is_real(engine: Engine) -> None:
    """Without IMMEDIATE the same interleaving fails at once: why the rule exists."""
    sessions = make_session_factory(engine)
    with sessions() as reader:
        reader.execute(text("SELECT count(*) FROM topic")).scalar()  # snapshot taken
        with sessions.begin() as writer:
            writer.add(Topic(name="抢先"))
        reader.add(Topic(name="迟到"))
        with pytest.raises(OperationalError, match="locked"):
            reader.flush()


def test_api_reads_write_last_used_at_once_a_minute(app: Any, session: Any, make_user: Any) -> None:
    user = make_user(Role.EDITOR)
    token = users.issue_api_token(session, None, user)
    session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    bookkeeper = app.extensions["dalaba.bookkeeper"]
    bookkeeper.inline = False  # the real background writer
    for _ in range(5):
        assert client.get("/api/v1/topics", headers=headers).status_code == 200
    bookkeeper.drain()
    session.rollback()
    first = session.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == user.id))
    assert first is not None and abs(first - utcnow()) < timedelta(minutes=1)
    for _ in range(5):
        client.get("/api/v1/topics", headers=headers)
    bookkeeper.drain()
    session.rollback()
    again = session.scalar(select(ApiToken.last_used_at).where(ApiToken.user_id == user.id))
    assert again == first  # within the minute: not written again


def test_a_failing_last_used_write_never_fails_the_request(
    app: Any, session: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = make_user(Role.EDITOR)
    token = users.issue_api_token(session, None, user)
    session.commit()

    def locked(*_args: Any, **_kwargs: Any) -> bool:
        raise _locked()

    monkeypatch.setattr(users, "touch_token", locked)
    response = app.test_client().get("/api/v1/topics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_concurrent_api_reads_with_one_token_never_fail(
    app: Any, session: Any, make_user: Any
) -> None:
    """The measured failure: 8 threads × 25 GETs with one token gave 500s; now none."""
    user = make_user(Role.EDITOR)
    token = users.issue_api_token(session, None, user)
    session.commit()
    app.extensions["dalaba.bookkeeper"].inline = False
    headers = {"Authorization": f"Bearer {token}"}
    statuses: list[int] = []
    lock = threading.Lock()

    def client_loop() -> None:
        client = app.test_client()
        for _ in range(25):
            code = client.get("/api/v1/topics", headers=headers).status_code
            with lock:
                statuses.append(code)

    threads = [threading.Thread(target=client_loop) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    app.extensions["dalaba.bookkeeper"].drain()
    assert len(statuses) == 200 and set(statuses) == {200}


def test_writers_of_one_process_take_the_writer_lock_in_arrival_order(engine: Engine) -> None:
    """SQLite's busy handler lets a newcomer overtake a writer that has waited for long; the
    gate serves this process's writers first come, first served."""
    gate = _gate_for(engine)
    sessions = make_session_factory(engine, write=True)
    order: list[str] = []
    first = sessions()
    first.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: the writer lock is held
    waiting: list[threading.Thread] = []

    def write(name: str) -> None:
        with sessions.begin() as s:
            s.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: waits for its turn
            order.append(name)
            s.add(Topic(name=name))

    for name in ("甲", "乙", "丙", "丁"):
        queued = gate._next_ticket + 1
        thread = threading.Thread(target=write, args=(name,))
        thread.start()
        waiting.append(thread)
        for _ in range(200):  # until this writer has drawn its ticket
            if gate._next_ticket >= queued:
                break
            threading.Event().wait(0.01)
    assert order == []
    first.commit()
    first.close()
    for thread in waiting:
        thread.join(10)
    assert order == ["甲", "乙", "丙", "丁"]


def test_the_writer_gate_skips_who_gave_up_and_never_waits_for_its_own_holder() -> None:
    gate = WriterGate()
    assert gate.enter(1.0) is True
    assert gate.enter(1.0) is False  # a write begun inside a write: SQLite's own wait decides
    gave_up: list[bool] = []
    thread = threading.Thread(target=lambda: gave_up.append(gate.enter(0.05)))
    thread.start()
    thread.join(5)
    assert gave_up == [False]
    gate.leave()
    # The ticket of the thread that gave up is skipped: the next comer is served at once.
    served: list[bool] = []
    thread = threading.Thread(target=lambda: served.append(gate.enter(1.0)))
    thread.start()
    thread.join(5)
    assert served == [True]
