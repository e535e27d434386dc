"""The scheduler's fixtures (a scheduler on the test database, outlets), for seeding real
audio; here clips render into the data folder, as in production (not a shared test cache)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from cms.channels import ChannelRegistry
from cms.clock import ManualClock
from cms.db import make_session_factory
from cms.jobs.context import Context
from cms.jobs.outbox import OutboxChannel
from cms.settings import Settings
from tests.scheduler import conftest as scheduler_fixtures

admin = scheduler_fixtures.admin
clock = scheduler_fixtures.clock
make_outlet = scheduler_fixtures.make_outlet
registry = scheduler_fixtures.registry
scheduler = scheduler_fixtures.scheduler


@pytest.fixture
def ctx(
    settings: Settings, engine: Engine, clock: ManualClock, registry: ChannelRegistry
) -> Context:
    sessions = make_session_factory(engine)
    registry.register(OutboxChannel(sessions))
    return Context(
        settings=settings,
        engine=engine,
        sessions=sessions,
        registry=registry,
        worker="test-worker",
        clock=clock,
    )
