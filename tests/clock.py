"""The injected clock of the test suite, and the hours every date-sensitive test runs at.

Web, services and scheduler read time from ``settings.clock`` (cms/clock.py); the
``injected_clock`` fixture (tests/conftest.py) is that clock. A test marked ``any_hour``
runs four times, the clock pinned at each of :data:`ANY_HOUR` (UTC) on the real day: from
16:00 UTC the township (Asia/Shanghai) is already on the next date, so a test that mixes
the server's date with the township's fails at 16:01 and 23:59 but not at 00:30 or 15:59.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from cms.clock import SystemClock, parse_hhmm

# Either side of the UTC midnight and of 16:00 UTC (the township's midnight).
ANY_HOUR = ("00:30", "15:59", "16:01", "23:59")


class SuiteClock:
    """Real time until pinned (by the ``any_hour`` hours or a fixture); then it moves only
    when told to, like ``ManualClock``."""

    def __init__(self, pinned: datetime | None = None) -> None:
        self._pinned = pinned.astimezone(UTC) if pinned is not None else None
        self._lock = threading.Lock()

    @classmethod
    def at_utc(cls, hhmm: str) -> SuiteClock:
        """Pinned at ``hhmm`` UTC on today's UTC date."""
        day = SystemClock().now().date()
        return cls(datetime.combine(day, parse_hhmm(hhmm), tzinfo=UTC))

    @property
    def pinned(self) -> bool:
        return self._pinned is not None

    def now(self) -> datetime:
        with self._lock:
            return self._pinned if self._pinned is not None else SystemClock().now()

    def set(self, when: datetime) -> None:
        if when.tzinfo is None:
            raise ValueError("SuiteClock needs a timezone-aware time")
        with self._lock:
            self._pinned = when.astimezone(UTC)

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        with self._lock:
            self._pinned = (self._pinned or SystemClock().now()) + step
            return self._pinned
