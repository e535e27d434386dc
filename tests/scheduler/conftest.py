"""Fixtures for the scheduler: a manual clock, a scheduler on the test database, outlets, chats."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import date, datetime, time
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from cms.channels import ChannelRegistry
from cms.db import make_session_factory
from cms.jobs.context import Context
from cms.jobs.outbox import OutboxChannel
from cms.models import Area, ChatGroup, Outlet, Role, User
from cms.scheduler.core import Scheduler
from cms.services import outlets as outlet_svc
from cms.settings import Settings
from tests.clock import SuiteClock
from tests.scheduler.helpers import LONG_AGO, FakeChannel

_chat_ids = itertools.count(1000)


@pytest.fixture(scope="session")
def audio_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One render cache for the whole run: content-addressed, so tests can share it safely."""
    return tmp_path_factory.mktemp("audio-cache")


@pytest.fixture
def clock(settings: Settings, today: date, injected_clock: SuiteClock) -> SuiteClock:
    """03:00 in the township on the test day (before the 04:00 build), for app and scheduler."""
    injected_clock.set(datetime.combine(today, time(3, 0), tzinfo=settings.tz))
    return injected_clock


@pytest.fixture
def registry() -> ChannelRegistry:
    return ChannelRegistry()


@pytest.fixture
def ctx(
    settings: Settings,
    engine: Engine,
    clock: SuiteClock,
    registry: ChannelRegistry,
    audio_cache: Path,
) -> Context:
    from audio.render import Renderer

    sessions = make_session_factory(engine, clock=clock)
    registry.register(OutboxChannel(sessions))
    return Context(
        settings=settings,
        engine=engine,
        sessions=sessions,
        registry=registry,
        worker="test-worker",
        clock=clock,
        renderer_factory=lambda s: Renderer(audio_cache, engine="offline"),
    )


@pytest.fixture
def scheduler(ctx: Context) -> Scheduler:
    return Scheduler(ctx)


@pytest.fixture
def admin(make_user: Callable[..., User]) -> User:
    return make_user(Role.ADMIN)


@pytest.fixture
def make_outlet(session: Session, admin: User) -> Callable[..., Outlet]:
    def make(area: Area, slots: str = "07:30 10, 19:30 10", name: str | None = None) -> Outlet:
        outlet = outlet_svc.save_outlet(
            session,
            admin,
            None,
            name=name or f"{area.name}大喇叭",
            kind="loudspeaker",
            area_id=area.id,
            slots=slots,
        )
        # In service long before the test clock's day (an outlet created "now", in real time,
        # would make every slot of the fake day one that ended before it existed).
        outlet.created_at = LONG_AGO
        session.commit()
        return outlet

    return make


@pytest.fixture
def make_chat(session: Session) -> Callable[..., ChatGroup]:
    def make(area: Area, platform: str = "telegram", title: str | None = None) -> ChatGroup:
        chat = ChatGroup(
            platform=platform,
            chat_id=str(-next(_chat_ids)),
            title=title or f"{area.name}群",
            area_id=area.id,
        )
        session.add(chat)
        session.commit()
        return chat

    return make


@pytest.fixture
def fake_channel(registry: ChannelRegistry) -> FakeChannel:
    channel = FakeChannel()
    registry.register(channel)
    return channel


@pytest.fixture
def fresh_session(engine: Engine) -> Iterator[Callable[[], Session]]:
    """Sessions that see what the scheduler committed (the shared one caches objects)."""
    opened: list[Session] = []

    def make() -> Session:
        s = make_session_factory(engine)()
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
