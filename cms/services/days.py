"""Day states: the one rule for what became of a program (one outlet, one day, one slot).

Every place that says how a slot went uses :func:`outcome`: the operators' pages, the day
and run-sheet pages, the compliance view and its exports, and the scheduler when it marks a
program missed or raises an alert. So the numbers always add up: every applicable program
has exactly one outcome, and the compliance columns are those outcomes counted.

The outcomes, in the order a slot lives through them:

- *not applicable*: the slot ended before its outlet existed (a fresh install or a new
  outlet is not blamed for the morning it was not there), or the program had nothing to play;
- *pending*: the slot is still ahead (built or not), or it began but the program may still
  be built within :data:`BUILD_GRACE`;
- *built* (on time): ready by its deadline, the slot has begun, nobody confirmed it yet and
  a confirmation would still count as on time;
- *built late*: built only after its deadline (a retried missed slot): it can still be played
  late, but it was missed at its time;
- *missed*: not built by its deadline;
- *confirmed*, *confirmed late*: an operator confirmed playing it (late: after the slot's end
  plus the late grace);
- *not confirmed*: built on time, and the time for an on-time confirmation has passed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from cms.models import JobState, Program, Receipt
from cms.services.errors import N_

BUILD_GRACE = timedelta(minutes=30)
"""How long after its slot began a program that was not built is still built (then missed)."""


class Outcome(StrEnum):
    NOT_APPLICABLE = "not_applicable"
    PENDING = "pending"
    BUILT = "built"
    BUILT_LATE = "built_late"
    MISSED = "missed"
    CONFIRMED = "confirmed"
    CONFIRMED_LATE = "confirmed_late"
    NOT_CONFIRMED = "not_confirmed"

    @property
    def applicable(self) -> bool:
        return self is not Outcome.NOT_APPLICABLE

    @property
    def label(self) -> str:
        """The Chinese msgid of the outcome (translate where it is shown)."""
        return LABELS[self]


LABELS: dict[Outcome, str] = {
    Outcome.NOT_APPLICABLE: N_("不适用"),
    Outcome.PENDING: N_("待播出"),
    Outcome.BUILT: N_("待确认"),
    Outcome.BUILT_LATE: N_("补生成"),
    Outcome.MISSED: N_("漏播"),
    Outcome.CONFIRMED: N_("已确认"),
    Outcome.CONFIRMED_LATE: N_("迟报"),
    Outcome.NOT_CONFIRMED: N_("未确认"),
}

APPLICABLE: tuple[Outcome, ...] = tuple(o for o in Outcome if o.applicable)
"""The outcomes an applicable program can have: each is one column of the compliance view."""


@dataclass(frozen=True)
class SlotTimes:
    """When a slot of one day begins, ends, and by when its program must be built (UTC)."""

    start: datetime
    end: datetime
    deadline: datetime

    @classmethod
    def of(cls, day: date, at: time, minutes: int, tz: tzinfo) -> SlotTimes:
        start = datetime.combine(day, at, tzinfo=tz).astimezone(UTC)
        return cls(
            start=start, end=start + timedelta(minutes=minutes), deadline=start + BUILD_GRACE
        )

    @classmethod
    def of_program(cls, program: Program, tz: tzinfo) -> SlotTimes:
        return cls.of(program.day, program.slot.at, program.slot.minutes, tz)


def applies(times: SlotTimes, outlet_created_at: datetime) -> bool:
    """Whether the outlet existed before the slot ended (else nobody could have played it)."""
    return times.end > outlet_created_at


def is_built(program: Program | None) -> bool:
    """Built with something to play."""
    return program is not None and program.state is JobState.DONE and bool(program.path)


def _nothing_to_play(program: Program) -> bool:
    """Built empty because no announcement reached the outlet (not because clips failed)."""
    if program.state is not JobState.DONE or program.path:
        return False
    manifest = program.manifest or {}
    return not manifest.get("skipped") and not manifest.get("announcements")


def outcome(
    times: SlotTimes,
    *,
    outlet_created_at: datetime,
    program: Program | None,
    receipt: Receipt | None,
    now: datetime,
    late_grace: timedelta,
    planned: bool = True,
) -> Outcome:
    """What became of one slot's program at ``now`` (see the module doc).

    ``planned`` says whether anything was due to play when there is no program row: a slot
    without a row and without announcements is not applicable; with announcements it is
    pending until its deadline and missed after.
    """
    if not applies(times, outlet_created_at):
        return Outcome.NOT_APPLICABLE
    if receipt is not None and receipt.confirmed_at <= now:
        return Outcome.CONFIRMED_LATE if receipt.late else Outcome.CONFIRMED
    if program is None:
        if not planned:
            return Outcome.NOT_APPLICABLE
        return Outcome.PENDING if now <= times.deadline else Outcome.MISSED
    if _nothing_to_play(program):
        return Outcome.NOT_APPLICABLE
    if is_built(program):
        if now < times.start:
            return Outcome.PENDING
        if program.built_at is not None and program.built_at > times.deadline:
            return Outcome.BUILT_LATE
        if now > times.end + late_grace:
            return Outcome.NOT_CONFIRMED
        return Outcome.BUILT
    return Outcome.PENDING if now <= times.deadline else Outcome.MISSED


def confirmable_from(times: SlotTimes, program: Program | None) -> datetime | None:
    """From when 已播放 can be pressed: the slot's start, once the program is built."""
    return times.start if is_built(program) else None


@dataclass
class Tally:
    """Outcomes counted: every applicable program in exactly one column."""

    counts: dict[Outcome, int] = field(default_factory=lambda: dict.fromkeys(APPLICABLE, 0))

    def add(self, result: Outcome) -> None:
        if result.applicable:
            self.counts[result] += 1

    def merge(self, other: Tally) -> None:
        for key, value in other.counts.items():
            self.counts[key] += value

    def __getitem__(self, key: Outcome) -> int:
        return self.counts[key]

    @property
    def applicable(self) -> int:
        return sum(self.counts.values())

    @property
    def built(self) -> int:
        """Programs that exist to be played (on time or late, confirmed or not)."""
        return self.applicable - self.counts[Outcome.PENDING] - self.counts[Outcome.MISSED]

    @property
    def confirmed(self) -> int:
        return self.counts[Outcome.CONFIRMED] + self.counts[Outcome.CONFIRMED_LATE]

    @property
    def due(self) -> int:
        """Applicable programs whose slot is no longer ahead."""
        return self.applicable - self.counts[Outcome.PENDING]

    @property
    def rate(self) -> float:
        """Share of due programs confirmed as played."""
        return self.confirmed / self.due if self.due else 0.0


def tally(outcomes: Iterable[Outcome]) -> Tally:
    result = Tally()
    for item in outcomes:
        result.add(item)
    return result


def of_program(
    program: Program, receipt: Receipt | None, *, now: datetime, tz: tzinfo, late_grace: timedelta
) -> Outcome:
    """:func:`outcome` for a program row (its outlet and slot loaded or loadable)."""
    return outcome(
        SlotTimes.of_program(program, tz),
        outlet_created_at=program.outlet.created_at,
        program=program,
        receipt=receipt,
        now=now,
        late_grace=late_grace,
    )
