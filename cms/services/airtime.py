"""When a notice is on the air: the one rule for the scheduler, the budget, the run sheet,
the reach preview and chat posting.

A revision plays on the days from ``start_date`` to ``end_date``. Two choices narrow that
down, for notices that end when their event ends:

- ``end_time``: on the last day only slots that begin before this time play it, and its
  chat post is not sent at or after it (a notice for an 8:00–11:30 Saturday event does not
  play at 12:00 that Saturday);
- ``airtime``: only slots in these parts of the day play it: 早 (morning, before 11:00),
  中 (noon, 11:00–15:59), 晚 (evening, from 16:00).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, tzinfo
from typing import Protocol, TypeVar

from cms.models import Airtime
from cms.services.errors import N_

__all__ = [
    "AIRTIME_LABELS",
    "PART_LABELS",
    "in_slot",
    "part_of",
    "parse_time",
    "parts",
    "plays",
    "post_allowed",
    "stops_at",
]

NOON_FROM = time(11, 0)
EVENING_FROM = time(16, 0)

PART_LABELS = {"morning": N_("早"), "noon": N_("中"), "evening": N_("晚")}
AIRTIME_LABELS = {
    Airtime.ALL.value: N_("早、中、晚都播"),
    Airtime.MORNING.value: N_("只在早上播"),
    Airtime.NOON.value: N_("只在中午播"),
    Airtime.EVENING.value: N_("只在晚上播"),
    Airtime.MORNING_NOON.value: N_("早上和中午"),
    Airtime.MORNING_EVENING.value: N_("早上和晚上"),
    Airtime.NOON_EVENING.value: N_("中午和晚上"),
}


class OnAir(Protocol):
    """What the rule reads of a revision."""

    @property
    def start_date(self) -> date: ...
    @property
    def end_date(self) -> date: ...
    @property
    def end_time(self) -> time | None: ...
    @property
    def airtime(self) -> Airtime | str: ...


def parse_time(text: str) -> time | None:
    """``HH:MM`` as a time, or None when it is not one."""
    hours, sep, minutes = text.strip().partition(":")
    if not (sep and hours.isascii() and minutes.isascii()):
        return None
    if not (hours.isdigit() and minutes.isdigit() and len(hours) <= 2 and len(minutes) == 2):
        return None
    if int(hours) > 23 or int(minutes) > 59:
        return None
    return time(int(hours), int(minutes))


def part_of(at: time) -> str:
    """The part of the day a slot at ``at`` belongs to: morning, noon or evening."""
    if at < NOON_FROM:
        return "morning"
    return "noon" if at < EVENING_FROM else "evening"


def parts(airtime: Airtime | str | None) -> set[str]:
    """The parts of the day an airtime choice covers."""
    value = str(airtime or Airtime.ALL.value)
    if value == Airtime.ALL.value:
        return set(PART_LABELS)
    return set(value.split("+"))


def plays(rev: OnAir, day: date, at: time) -> bool:
    """Whether ``rev`` plays in a slot beginning at ``at`` (township time) on ``day``."""
    if not rev.start_date <= day <= rev.end_date:
        return False
    if day == rev.end_date and rev.end_time is not None and at >= rev.end_time:
        return False
    return part_of(at) in parts(rev.airtime)


class _HasRevision(Protocol):
    @property
    def approved(self) -> OnAir: ...


A = TypeVar("A", bound=_HasRevision)


def in_slot(anns: Iterable[A], day: date, at: time) -> list[A]:
    """Those of ``anns`` (approved announcements) whose approved revision plays in the slot."""
    return [a for a in anns if plays(a.approved, day, at)]


def stops_at(rev: OnAir, tz: tzinfo) -> datetime | None:
    """The moment the notice ends on its last day (aware), or None when it runs all day."""
    if rev.end_time is None:
        return None
    return datetime.combine(rev.end_date, rev.end_time, tzinfo=tz)


def post_allowed(rev: OnAir, due: datetime, tz: tzinfo) -> bool:
    """Whether a chat post due at ``due`` still makes sense (before the event ends)."""
    end = stops_at(rev, tz)
    return end is None or due < end
