"""What every job needs: settings, sessions, the clock, the renderer and this worker's name."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cms.channels import ChannelRegistry
from cms.scheduler.clock import Clock, SystemClock, local_day
from cms.settings import Settings

if TYPE_CHECKING:
    from audio.render import Renderer


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    registry: ChannelRegistry
    worker: str
    clock: Clock = field(default_factory=SystemClock)
    renderer_factory: object = None
    _renderer: Renderer | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def now(self) -> datetime:
        return self.clock.now()

    def today(self) -> date:
        return local_day(self.now(), self.settings.tz)

    @property
    def renderer(self) -> Renderer:
        """One renderer per scheduler (it remembers edge-tts outages for its cool-down)."""
        with self._lock:
            if self._renderer is None:
                if callable(self.renderer_factory):
                    self._renderer = self.renderer_factory(self.settings)
                else:
                    self._renderer = make_renderer(self.settings)
            return self._renderer

    @property
    def programs_dir(self) -> Path:
        return self.settings.audio_dir / "programs"


def make_renderer(settings: Settings) -> Renderer:
    from audio.render import Renderer

    return Renderer(
        settings.audio_dir / "cache",
        engine=settings.tts_engine,
        edge_wss_url=settings.edge_wss_url,
    )
