"""Fixtures for the operators' links: outlets with slots, real MP3 programs on disk, tokens."""

from __future__ import annotations

import itertools
import subprocess
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from imageio_ffmpeg import get_ffmpeg_exe
from sqlalchemy.orm import Session
from waitress import wasyncore
from waitress.channel import HTTPChannel

from cms.models import Area, JobState, Outlet, OutletKind, Program, Slot
from cms.services import operators as svc
from cms.settings import Settings
from tests.clock import SuiteClock
from tests.scheduler.helpers import LONG_AGO

_names = itertools.count(1)


def encode_tone(out: Path, seconds: float, frequency: int) -> Path:
    """A sine tone in the house format: MPEG-1 Layer III, 44.1 kHz mono, 64 kbit/s CBR."""
    subprocess.run(
        [
            get_ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"sine=frequency={frequency}:duration={seconds}",
            "-ac", "1", "-ar", "44100", "-c:a", "libmp3lame", "-b:a", "64k",
            "-write_xing", "0", "-id3v2_version", "0", str(out),
        ],
        check=True,
    )  # fmt: skip
    return out


@pytest.fixture(scope="session")
def tones(tmp_path_factory: pytest.TempPathFactory) -> Callable[[float, int], bytes]:
    """Encoded tones, cached for the session (ffmpeg takes a moment per file)."""
    folder = tmp_path_factory.mktemp("tones")
    cache: dict[tuple[float, int], bytes] = {}

    def tone(seconds: float = 2.0, frequency: int = 440) -> bytes:
        key = (seconds, frequency)
        if key not in cache:
            cache[key] = encode_tone(
                folder / f"{seconds}-{frequency}.mp3", seconds, frequency
            ).read_bytes()
        return cache[key]

    return tone


@pytest.fixture
def make_outlet(session: Session, grid: dict[str, Area]) -> Callable[..., Outlet]:
    def make(
        area: Area | None = None,
        slots: tuple[time, ...] = (time(7, 30), time(19, 0)),
        kind: OutletKind = OutletKind.LOUDSPEAKER,
        minutes: int = 10,
        **kw: Any,
    ) -> Outlet:
        outlet = Outlet(
            name=kw.pop("name", f"石桥村大喇叭{next(_names)}"),
            kind=kind,
            area_id=(area or grid["g1"]).id,
            **{"created_at": LONG_AGO, **kw},
        )
        outlet.slots = [Slot(at=at, minutes=minutes) for at in slots]
        session.add(outlet)
        session.commit()
        return outlet

    return make


@pytest.fixture
def make_program(
    session: Session, settings: Settings, tones: Callable[[float, int], bytes]
) -> Callable[..., Program]:
    """A built program with a real MP3 under the data folder (written as the scheduler does)."""

    def make(
        outlet: Outlet,
        day: date,
        slot: int = 0,
        seconds: float = 2.0,
        frequency: int = 440,
        state: JobState = JobState.DONE,
        titles: tuple[str, ...] = ("垃圾分类从我做起",),
    ) -> Program:
        the_slot = outlet.slots[slot]
        path = (
            settings.data_dir / "programs" / day.isoformat() / f"{outlet.id}-{the_slot.at:%H%M}.mp3"
        )
        data = tones(seconds, frequency)
        if state is JobState.DONE:
            write_program(path, data)
        program = Program(
            outlet_id=outlet.id,
            day=day,
            slot_id=the_slot.id,
            state=state,
            path=str(path) if state is JobState.DONE else None,
            duration=seconds,
            manifest={"announcements": [{"title": t} for t in titles]},
            # Built at the 04:00 build of its day, as the scheduler does (now, for a future day).
            built_at=min(
                settings.now(),
                datetime.combine(day, time(4, 0), tzinfo=settings.tz).astimezone(UTC),
            ),
        )
        session.add(program)
        session.commit()
        return program

    return make


def write_program(path: Path, data: bytes) -> None:
    """Write atomically, as the scheduler does: a temporary file, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{next(_names)}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


@pytest.fixture
def link(session: Session) -> Callable[[Outlet], str]:
    """Issue a link token for an outlet and return the page's path."""

    def make(outlet: Outlet) -> str:
        token = svc.issue_outlet_token(session, None, outlet)
        session.commit()
        return f"/o/{token}"

    return make


@pytest.fixture
def ffmpeg_decodes() -> Callable[[bytes, Path], bool]:
    """Whether ffmpeg decodes the bytes as MP3 without errors."""

    def check(data: bytes, folder: Path) -> bool:
        path = folder / f"check-{next(_names)}.mp3"
        path.write_bytes(data)
        done = subprocess.run(
            [get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
            capture_output=True,
            text=True,
        )
        return done.returncode == 0 and not done.stderr.strip()

    return check


class Clock:
    """The injected clock as the operator tests move it: to a township day and hour."""

    def __init__(self, tz: Any, clock: SuiteClock) -> None:
        self.tz = tz
        self.clock = clock

    def set(self, day: date, hh: int, mm: int = 0) -> datetime:
        self.clock.set(datetime.combine(day, time(hh, mm), tzinfo=self.tz))
        return self.clock.now()

    @property
    def today(self) -> date:
        return self.clock.now().astimezone(self.tz).date()


@pytest.fixture
def clock(settings: Settings, injected_clock: SuiteClock) -> Clock:
    """Noon today in the configured zone: the 07:30 slot has played, the 19:00 one has not."""
    clock = Clock(settings.tz, injected_clock)
    clock.set(settings.today(), 12)
    return clock


@pytest.fixture
def day(clock: Clock) -> date:
    return clock.today


@pytest.fixture
def waitress_port(app: Any) -> Iterator[Callable[..., int]]:
    """Serve the app as ``dalaba serve`` does, on a loopback port; returns the port.

    Stopped cleanly: the I/O loop itself closes every connection (which closes what they
    were sending) and then the listening socket, so that its last poll sees no closed socket.
    """
    running: list[tuple[Any, threading.Thread]] = []

    from cms.web.server import make_server

    def start(**adjustments: Any) -> int:
        server = make_server(app, "127.0.0.1", 0, **adjustments)
        thread = threading.Thread(target=server.run, name="waitress-test", daemon=True)
        thread.start()
        running.append((server, thread))
        return int(server.effective_port)

    yield start
    for server, thread in running:
        server.task_dispatcher.shutdown(timeout=5)

        def close_all(server: Any = server) -> None:
            for dispatcher in list(server._map.values()):
                if isinstance(dispatcher, HTTPChannel):
                    dispatcher.handle_close()
            wasyncore.close_all(server._map)

        server.trigger.pull_trigger(close_all)
        thread.join(timeout=5)
