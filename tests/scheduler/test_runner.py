"""start_scheduler: APScheduler jobs only tick, each with coalescing and a misfire grace
(on SQLite and on PostgreSQL)."""

from __future__ import annotations

import time

import pytest

from cms import lease
from cms.channels import ChannelRegistry
from cms.jobs.outbox import OutboxChannel
from cms.models import utcnow
from cms.scheduler.runner import start_scheduler, tuning_from_env
from tests.pg import BACKENDS, settings_for


@pytest.fixture(params=BACKENDS)
def settings(request, settings):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (a private schema)."""
    return settings_for(request, settings)


def test_jobs_tick_hold_the_lease_and_hand_it_over(settings, engine) -> None:  # type: ignore[no-untyped-def]
    registry = ChannelRegistry()
    first = start_scheduler(settings, engine, registry, tick_seconds=0.1, lease_seconds=2)
    try:
        assert first.leader
        assert isinstance(registry.get("outbox"), OutboxChannel)  # the default channel
        jobs = first._aps.get_jobs()  # type: ignore[union-attr]
        assert {j.id for j in jobs} >= {
            "lease",
            "plan",
            "render",
            "build",
            "dispatch",
            "publish",
            "daily_build",
            "reconcile",
        }
        for job in jobs:
            assert job.coalesce is True and job.max_instances == 1
            assert job.misfire_grace_time and job.misfire_grace_time >= 1
        daily = next(j for j in jobs if j.id == "daily_build")
        assert daily.misfire_grace_time >= 3600  # a PC that was off at 04:00 still builds
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "last_tick" not in lease.read(engine).info:
            time.sleep(0.05)
        info = lease.read(engine).info
        assert "last_tick" in info and info["queues"]["programs"] == {}
        second = start_scheduler(
            settings, engine, ChannelRegistry(), tick_seconds=0.1, lease_seconds=2
        )
        try:
            assert not second.leader  # a standby: serves web only
        finally:
            second.stop()
    finally:
        first.stop()
    assert not lease.read(engine).alive(utcnow())  # released at once, not after expiry
    third = start_scheduler(settings, engine, ChannelRegistry(), tick_seconds=0.1, lease_seconds=2)
    try:
        assert third.leader
    finally:
        third.stop()


def test_tuning_from_env() -> None:
    assert tuning_from_env({}) == {}
    assert tuning_from_env({"DALABA_SCHEDULER_TICK": "0.5", "DALABA_SCHEDULER_LEASE": "9"}) == {
        "tick_seconds": 0.5,
        "lease_seconds": 9.0,
    }
    try:
        tuning_from_env({"DALABA_SCHEDULER_TICK": "0"})
    except ValueError as exc:
        assert "DALABA_SCHEDULER_TICK" in str(exc)
    else:
        raise AssertionError("accepted a zero tick")


# SQLite's writer lock; PostgreSQL's writers lock rows and do not time out on their own.
@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)
def test_a_busy_database_does_not_lose_the_lease_before_it_expires(
    settings, engine, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    """A heartbeat that meets a held writer lock keeps the lease until its expiry passes."""
    import sqlite3
    from dataclasses import replace
    from datetime import timedelta

    from cms import db as cms_db
    from cms.clock import ManualClock
    from cms.scheduler.core import Scheduler
    from cms.scheduler.runner import SchedulerHandle

    monkeypatch.setattr(cms_db, "BUSY_TIMEOUT_MS", 100)  # a lock outlasts it quickly
    busy_engine = cms_db.make_engine(settings.database_url, data_dir=settings.data_dir)
    clock = ManualClock(utcnow())
    ctx = replace(_context(settings, busy_engine), clock=clock)
    handle = SchedulerHandle(
        scheduler=Scheduler(ctx), holder=ctx.worker, lease_ttl=timedelta(seconds=30)
    )
    try:
        assert handle.heartbeat() and handle.leader
        blocker = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
        blocker.isolation_level = None
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        try:
            clock.set(clock.now() + timedelta(seconds=10))
            assert handle.heartbeat(), "a transient lock must not lose the lease"
            clock.set(clock.now() + timedelta(seconds=15))
            assert handle.heartbeat() and handle.leader  # 25 s: still within the 30 s lease
            clock.set(clock.now() + timedelta(seconds=5))
            assert not handle.heartbeat()  # 30 s: the expiry really passed
            assert not handle.leader
        finally:
            blocker.rollback()
            blocker.close()
        clock.set(clock.now() + timedelta(seconds=1))
        assert handle.heartbeat() and handle.leader  # the lock is gone: taken again
    finally:
        busy_engine.dispose()


def _context(settings, engine):  # type: ignore[no-untyped-def]
    from cms.db import make_session_factory
    from cms.jobs.context import Context

    return Context(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine),
        registry=ChannelRegistry(),
        worker=lease.make_holder_id(),
    )
