"""Fixtures for the bot: the loopback Bot API, a running channel, a voice note, polling helpers."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from bot.application import Limits, build_application
from bot.channel import TelegramChannel
from cms.db import make_session_factory
from cms.settings import Settings
from tests.fakes.telegram_api import FakeBotApi

# Client limits high enough not to slow the tests; the flood-limit tests set their own.
FAST = Limits.below(10_000, 100_000)


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi(slow_seconds=1.5) as server:
        yield server


@pytest.fixture
def bot_settings(settings: Settings, api: FakeBotApi) -> Settings:
    return settings.with_env(DALABA_TELEGRAM_TOKEN=api.token, DALABA_TELEGRAM_API_URL=api.api_url)


class Clock:
    """Time for the handlers, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.at = now

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC))


@pytest.fixture
def make_channel(
    bot_settings: Settings, engine: Engine, clock: Clock
) -> Iterator[Callable[..., TelegramChannel]]:
    """Start a channel (polling the fake server by default); closed after the test."""
    started: list[TelegramChannel] = []

    def make(
        *,
        limits: Limits = FAST,
        updates: str = "polling",
        start_timeout: float = 30.0,
        token: str | None = None,
        **options: Any,
    ) -> TelegramChannel:
        application = build_application(
            bot_settings.with_env(DALABA_TELEGRAM_TOKEN=token) if token else bot_settings,
            sessions=make_session_factory(engine),
            clock=clock,
            limits=limits,
            updates=updates != "none",
        )
        options.setdefault("backoff", 0.05)
        options.setdefault("poll_timeout", 0.5)
        channel = TelegramChannel(application, updates=updates, **options)
        started.append(channel)
        channel.start(timeout=start_timeout)
        return channel

    yield make
    for channel in started:
        channel.close()


@pytest.fixture
def channel(make_channel: Callable[..., TelegramChannel]) -> TelegramChannel:
    return make_channel(updates="none")


@pytest.fixture(scope="session")
def voice_note(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 2-second OGG/Opus voice note (mono, 48 kHz), made with ffmpeg."""
    import imageio_ffmpeg

    path = tmp_path_factory.mktemp("voice") / "notice.ogg"
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=2",
            "-ac",
            "1",
            "-ar",
            "48000",
            "-c:a",
            "libopus",
            "-b:a",
            "24k",
            str(path),
        ],
        check=True,
    )
    return path


def wait_until(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    """Wait for something the bot does on its own thread (polling the fake's records)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def fresh(session: Session) -> None:
    """See what other threads committed: end the snapshot and forget loaded objects."""
    session.rollback()
    session.expire_all()
