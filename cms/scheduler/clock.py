"""Injected time: the scheduler never calls ``datetime.now`` itself, so tests can move a day.

The clock lives in the core (:mod:`cms.clock`) so services and the web share it; the
scheduler's modules import it from here as they always did.
"""

from __future__ import annotations

from cms.clock import (
    Clock,
    ManualClock,
    OffsetClock,
    SystemClock,
    at_local,
    local_day,
    parse_hhmm,
)

__all__ = [
    "Clock",
    "ManualClock",
    "OffsetClock",
    "SystemClock",
    "at_local",
    "local_day",
    "parse_hhmm",
]
