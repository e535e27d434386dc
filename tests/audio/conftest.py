"""Fixtures for the audio tests: the loopback edge-tts server and renderers wired to it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import edge_tts.communicate
import pytest

from audio import Renderer
from tests.audio.helpers import FAST_RETRY, FakeClock
from tests.fakes.edge_server import FakeEdgeServer


@pytest.fixture(scope="session")
def edge_server() -> Iterator[FakeEdgeServer]:
    """One loopback server for the whole session (starting it encodes its tones)."""
    with FakeEdgeServer(slow_seconds=2.5) as server:
        yield server


@pytest.fixture
def edge(edge_server: FakeEdgeServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEdgeServer]:
    """The server with no faults and a fresh request log; edge-tts points at it."""
    edge_server.heal()
    edge_server.requests.clear()
    edge_server.faults_served.clear()
    monkeypatch.setattr(edge_tts.communicate, "WSS_URL", edge_server.url)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    yield edge_server
    edge_server.heal()


@pytest.fixture
def sleeps() -> list[float]:
    """Backoff delays the renderer asked for (nothing actually sleeps)."""
    return []


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_renderer(tmp_path: Path, sleeps: list[float], clock: FakeClock) -> Callable[..., Renderer]:
    """Build renderers on a per-test cache with injected sleep and clock."""

    def make(engine: str = "auto", cache: Path | None = None, **kwargs: object) -> Renderer:
        kwargs.setdefault("retry", FAST_RETRY)
        return Renderer(
            cache or tmp_path / "cache",
            engine=engine,
            sleep=sleeps.append,
            clock=clock,
            **kwargs,  # type: ignore[arg-type]
        )

    return make


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by tests that only read clips (renders once per session)."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture(scope="session")
def offline_renderer(shared_cache: Path) -> Renderer:
    return Renderer(shared_cache, engine="offline")
