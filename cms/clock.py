"""One injected clock for web, services, scheduler and channels.

Nothing in dalaba calls ``datetime.now``, ``date.today`` or ``time.time`` for the time of
day (tests/test_clock_rule.py enforces it): the edge (the app, a job's context, a CLI
command, the bot) holds a :class:`Clock`, usually ``settings.clock``, and the sessions it
opens carry it too, so a service reads the time with :func:`clock_of`. "Today" is always
the township's date (``DALABA_TIMEZONE``), never the server's or UTC's.

``DALABA_FAKE_NOW`` (tests only, see the README) starts the clock at another moment.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Protocol
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "Clock",
    "ManualClock",
    "OffsetClock",
    "SystemClock",
    "at_local",
    "clock_from_env",
    "clock_of",
    "local_day",
    "parse_fake_now",
    "parse_hhmm",
]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class OffsetClock:
    """The real clock moved by a fixed amount: it runs, but from another moment.

    What ``DALABA_FAKE_NOW`` gives a whole ``dalaba serve``: leases, ticks and login
    timeouts keep working because time still passes.
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("OffsetClock needs a timezone-aware start")
        self.offset = start.astimezone(UTC) - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset


class ManualClock:
    """A clock that only moves when told to (tests, and `build-day` for another date)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._now += step
            return self._now


def clock_of(session: Session) -> Clock:
    """The clock of the edge that opened ``session`` (see ``cms.db.make_session_factory``).

    A session opened without one (a script, an old test) reads the real clock.
    """
    clock: Clock | None = session.info.get("clock")
    return clock if clock is not None else SystemClock()


def parse_fake_now(text: str) -> datetime:
    """``DALABA_FAKE_NOW``: an ISO 8601 moment with its offset, e.g. ``2026-12-04T16:01:00Z``.

    Raises:
        ValueError: not such a moment (a naive time would be ambiguous).
    """
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-12-04T16:01:00+00:00")
    return value


def clock_from_env(environ: Mapping[str, str]) -> Clock:
    """The real clock, or with ``DALABA_FAKE_NOW`` set, one running from that moment.

    Raises:
        ValueError: ``DALABA_FAKE_NOW`` is not a moment with its UTC offset.
    """
    fake = environ.get("DALABA_FAKE_NOW", "").strip()
    return OffsetClock(parse_fake_now(fake)) if fake else SystemClock()


def local_day(now: datetime, tz: ZoneInfo) -> date:
    """The township's calendar day at ``now``."""
    return now.astimezone(tz).date()


def at_local(day: date, when: time, tz: ZoneInfo) -> datetime:
    """``day`` at local time ``when`` in the township, as UTC."""
    return datetime.combine(day, when, tzinfo=tz).astimezone(UTC)


def parse_hhmm(text: str) -> time:
    hh, _, mm = text.partition(":")
    return time(int(hh), int(mm))
