"""What every job needs: settings, sessions, the clock, the renderer and this worker's name."""

from __future__ import annotations

import copy
import logging
import secrets
import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from cms.channels import ChannelRegistry
from cms.clock import Clock, local_day
from cms.services.speech import make_renderer
from cms.settings import ConfigError, Settings

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from audio.render import Renderer


@dataclass
class Context:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    registry: ChannelRegistry
    worker: str
    clock: Clock | None = None  # None: the settings' clock (settings.clock)
    renderer_factory: object = None
    # Shared by the copies :meth:`for_job` makes, so all jobs use one renderer.
    _shared: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def now(self) -> datetime:
        return (self.clock or self.settings.clock).now()

    def today(self) -> date:
        return local_day(self.now(), self.settings.tz)

    @property
    def renderer(self) -> Renderer:
        """One renderer per scheduler (it remembers edge-tts outages for its cool-down)."""
        with self._lock:
            if "renderer" not in self._shared:
                factory = self.renderer_factory if callable(self.renderer_factory) else None
                self._shared["renderer"] = (factory or make_renderer)(self.settings)
            return self._shared["renderer"]

    def renderer_for(self, engine_mode: str) -> Renderer:
        """The renderer of a township's own engine mode (the install's one for its own mode).

        A mode this install cannot run (neural without a model folder) falls back to the
        install's renderer, which records why on the clip like any fallback.
        """
        if engine_mode == self.settings.tts_engine:
            return self.renderer
        name = f"renderer:{engine_mode}"
        with self._lock:
            if name not in self._shared:
                try:
                    settings = self.settings.with_(tts_engine=engine_mode)
                except ConfigError:
                    log.warning("engine mode %r cannot run here; using the default", engine_mode)
                    self._shared[name] = None
                else:
                    factory = self.renderer_factory if callable(self.renderer_factory) else None
                    self._shared[name] = (factory or make_renderer)(settings)
            renderer = self._shared[name]
        return renderer if renderer is not None else self.renderer

    @property
    def shared(self) -> dict[str, Any]:
        """State every copy of this context sees (one scheduler's memory between passes)."""
        return self._shared

    def for_job(self) -> Context:
        """A copy whose worker name is unique to one claim (``worker/token``).

        Finishing a row requires the claim's own name, so a job that overran its claim and
        was taken again cannot overwrite what the newer claim recorded, even in the same
        process.
        """
        job = copy.copy(self)
        job.worker = f"{self.worker}/{secrets.token_hex(4)}"
        return job

    @property
    def programs_dir(self) -> Path:
        return self.settings.audio_dir / "programs"
