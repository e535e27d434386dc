"""The spoken-duration budget: will a program overrun its slot if this text goes out?

The editor calls this before submitting (``GET /schedule/budget``): for every outlet the
draft would reach, on every day of its campaign (up to :data:`MAX_DAYS`), every slot's
expected length is the chime, the closing line, the gaps and each announcement that plays
there (its rendered clip's length when there is one, an estimate otherwise) with its
repeats. Slots that would run longer than their length are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Announcement, Area, Clip, ClipProfile, JobState, Outlet
from cms.services import airtime
from cms.services.announcements import reaching_outlets

MAX_DAYS = 31


@dataclass(frozen=True)
class _Draft:
    """The airtime of the draft being edited (what :func:`airtime.plays` reads)."""

    start_date: date
    end_date: date
    end_time: time | None
    airtime: str


CHIME_S = 2.64
LEAD_S = 0.6
ITEM_GAP_S = 3.0
REPEAT_GAP_S = 2.0


@dataclass(frozen=True)
class SlotBudget:
    outlet_id: int
    outlet: str
    day: str
    slot: str
    limit_seconds: int
    others_seconds: float
    total_seconds: float
    over: bool


@dataclass(frozen=True)
class Budget:
    estimate_seconds: float
    with_repeats_seconds: float
    slots: list[SlotBudget]

    @property
    def over(self) -> list[SlotBudget]:
        return [s for s in self.slots if s.over]

    def to_dict(self) -> dict[str, object]:
        worst = max(self.slots, key=lambda s: s.total_seconds / s.limit_seconds, default=None)
        return {
            "estimate_seconds": self.estimate_seconds,
            "with_repeats_seconds": self.with_repeats_seconds,
            "over": bool(self.over),
            "overruns": [asdict(s) for s in self.over],
            "worst": asdict(worst) if worst else None,
            "slots_checked": len(self.slots),
        }


def _lexicon(session: Session, area: Area | None = None):  # type: ignore[no-untyped-def]
    """The lexicon as it applies in ``area`` (the draft's targets' common area)."""
    from audio.text import Lexicon

    return Lexicon(tuple(tree.lexicon_pairs(session, area)))


def estimate(text: str, rate: int, lexicon=None) -> float:  # type: ignore[no-untyped-def]
    from audio.text import estimate_duration

    return estimate_duration(text, rate, lexicon)


def _closing_s() -> float:
    from audio.render import DEFAULT_CLOSING

    return estimate(DEFAULT_CLOSING, 0)


def slot_seconds(items: Sequence[tuple[float, int]]) -> float:
    """A program's length from (clip seconds, repeats) pairs, laid out as audio builds it."""
    if not items:
        return 0.0
    total = CHIME_S + LEAD_S + _closing_s() + ITEM_GAP_S * len(items)
    for seconds, repeats in items:
        total += seconds * repeats + REPEAT_GAP_S * (repeats - 1)
    return round(total, 1)


def budget(
    session: Session,
    *,
    text: str,
    rate: int,
    repeats: int,
    area_ids: Sequence[int],
    start: date,
    end: date,
    exclude_announcement: int | None = None,
    end_time: time | None = None,
    airtime_choice: str = "all",
) -> Budget:
    """The draft's spoken length and every reached slot's expected length with it.

    ``end_time`` and ``airtime_choice``: the draft's airtime (cms.services.airtime); a slot
    counts it only when it plays there, and the others only where they play.
    """
    draft = _Draft(start, end, end_time, airtime_choice)
    targets = list(session.scalars(select(Area).where(Area.id.in_(list(area_ids)))))
    common = tree.common_area_id(targets)
    lexicon = _lexicon(session, session.get(Area, common) if common is not None else None)
    mine = estimate(text, rate, lexicon)
    outlets = [
        o
        for o in session.scalars(select(Outlet).where(Outlet.active).order_by(Outlet.id))
        if any(tree.overlap(o.area, t) for t in targets)
    ]
    slots: list[SlotBudget] = []
    known: dict[int, float] = {}
    day = start
    last = min(end, start + timedelta(days=MAX_DAYS - 1))
    while day <= last and outlets:
        reached = reaching_outlets(session, day, outlets, exclude=exclude_announcement)
        for outlet in outlets:
            items: list[tuple[float, int, Announcement]] = []
            for ann in reached[outlet.id]:
                rev = ann.approved
                if rev.id not in known:
                    clip = session.scalar(
                        select(Clip).where(
                            Clip.revision_id == rev.id,
                            Clip.profile == ClipProfile.LOUDSPEAKER,
                            Clip.state == JobState.DONE,
                        )
                    )
                    known[rev.id] = (
                        clip.duration
                        if clip and clip.duration
                        else estimate(rev.speech, rev.rate, lexicon)
                    )
                items.append((known[rev.id], rev.repeats, ann))
            for slot in outlet.slots:
                playing = [
                    (seconds, times)
                    for seconds, times, ann in items
                    if airtime.plays(ann.approved, day, slot.at)
                ]
                others = slot_seconds(playing)
                if not airtime.plays(draft, day, slot.at):
                    continue  # the draft does not play in this slot
                total = slot_seconds([*playing, (mine, repeats)])
                slots.append(
                    SlotBudget(
                        outlet_id=outlet.id,
                        outlet=outlet.name,
                        day=day.isoformat(),
                        slot=slot.label,
                        limit_seconds=slot.minutes * 60,
                        others_seconds=others,
                        total_seconds=total,
                        over=total > slot.minutes * 60,
                    )
                )
        day += timedelta(days=1)
    return Budget(
        estimate_seconds=mine,
        with_repeats_seconds=round(mine * repeats + REPEAT_GAP_S * (repeats - 1), 1),
        slots=slots,
    )
