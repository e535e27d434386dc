"""start_scheduler: APScheduler jobs only tick, each with coalescing and a misfire grace."""

from __future__ import annotations

import time

from cms.channels import ChannelRegistry
from cms.models import utcnow
from cms.scheduler import lease
from cms.scheduler.outbox import OutboxChannel
from cms.scheduler.runner import start_scheduler, tuning_from_env


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
