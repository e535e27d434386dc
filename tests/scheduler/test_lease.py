"""The scheduler lease: one holder, renewal, expiry, and takeover from a dead local process,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from cms import lease
from tests.pg import BACKENDS, settings_for

T0 = datetime(2026, 3, 5, 8, 0, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture(params=BACKENDS)
def settings(request, settings):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (a private schema)."""
    return settings_for(request, settings)


def test_one_holder_until_expiry(engine) -> None:  # type: ignore[no-untyped-def]
    a, b = "elsewhere:1:aa", "elsewhere:2:bb"  # another host: no pid shortcut
    assert lease.acquire(engine, a, T0, TTL)
    assert not lease.acquire(engine, b, T0 + timedelta(seconds=5), TTL)
    assert lease.acquire(engine, a, T0 + timedelta(seconds=20), TTL)  # renewal
    assert not lease.acquire(engine, b, T0 + timedelta(seconds=45), TTL)  # renewed until 50 s
    assert lease.acquire(engine, b, T0 + timedelta(seconds=51), TTL)  # expired: taken over
    assert not lease.acquire(engine, a, T0 + timedelta(seconds=52), TTL)  # a lost it
    state = lease.read(engine)
    assert state.holder == b and state.held_by(b, T0 + timedelta(seconds=52))


def test_release_hands_over_at_once(engine) -> None:  # type: ignore[no-untyped-def]
    assert lease.acquire(engine, "elsewhere:1:aa", T0, TTL)
    lease.release(engine, "elsewhere:1:aa", T0 + timedelta(seconds=1))
    assert lease.acquire(engine, "elsewhere:2:bb", T0 + timedelta(seconds=2), TTL)


def test_dead_process_on_this_host_is_taken_over_before_expiry(engine) -> None:  # type: ignore[no-untyped-def]
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = f"{socket.gethostname()}:{proc.pid}:dead00"
    assert lease.acquire(engine, dead, T0, TTL)
    live = f"{socket.gethostname()}:{os.getppid()}:live00"
    assert lease.acquire(engine, lease.make_holder_id(), T0 + timedelta(seconds=1), TTL)
    # A live local holder is respected.
    assert lease.acquire(engine, live, T0 + timedelta(seconds=100), TTL)
    assert not lease.acquire(engine, lease.make_holder_id(), T0 + timedelta(seconds=101), TTL)


def test_info_is_kept_with_the_holder(engine) -> None:  # type: ignore[no-untyped-def]
    holder = "elsewhere:1:aa"
    assert lease.acquire(engine, holder, T0, TTL)
    assert lease.record_info(engine, holder, last_tick="x", queues={"clips": {}})
    assert lease.record_info(engine, holder, pid=1)
    assert lease.read(engine).info == {"last_tick": "x", "queues": {"clips": {}}, "pid": 1}
    assert not lease.record_info(engine, "elsewhere:2:bb", last_tick="y")
