"""Injected time: the scheduler never calls ``datetime.now`` itself, so tests can move a day."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


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


def local_day(now: datetime, tz: ZoneInfo) -> date:
    """The township's calendar day at ``now``."""
    return now.astimezone(tz).date()


def at_local(day: date, when: time, tz: ZoneInfo) -> datetime:
    """``day`` at local time ``when`` in the township, as UTC."""
    return datetime.combine(day, when, tzinfo=tz).astimezone(UTC)


def parse_hhmm(text: str) -> time:
    hh, _, mm = text.partition(":")
    return time(int(hh), int(mm))
