"""What an outlet plays: the announcements of one outlet's day, and the programs that hold one.

The scheduler builds programs from :func:`outlet_announcements`; the pages show the same list,
so what a page says plays is what the build plays.
"""

from __future__ import annotations

from datetime import date, time

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Announcement, Outlet, Program
from cms.services import breakin
from cms.services.airtime import in_slot
from cms.services.announcements import going_out_on, reaching_outlets


def outlet_announcements(
    session: Session, outlet: Outlet, day: date, at: time | None = None
) -> list[Announcement]:
    """Announcements that play at ``outlet`` on ``day`` (in the slot at ``at``), urgent first."""
    # Only those aimed at the outlet's area or above it are loaded: a county's day has many
    # announcements, an outlet hears a few (every build of every program asks this).
    going = going_out_on(session, day, outlet.area)
    reached = reaching_outlets(session, day, [outlet], going=going)[outlet.id]
    anns = breaking_first(reached, breakin.front_announcements(session, day))
    return anns if at is None else in_slot(anns, day, at)


def breaking_first(anns: list[Announcement], front: set[int]) -> list[Announcement]:
    """A notice being played now (立即插播) leads every later program of its day."""
    if not front:
        return anns
    return sorted(anns, key=lambda a: a.id not in front)  # stable: urgent order kept


def programs_with_revision(session: Session, revision_id: int, since: date) -> list[Program]:
    """Programs from ``since`` whose manifest lists ``revision_id``."""
    out = []
    for program in session.scalars(
        select(Program)
        .where(Program.manifest.is_not(None), Program.day >= since)
        .order_by(Program.day.desc(), Program.id)
    ):
        listed = (program.manifest or {}).get("announcements", [])
        if any(item.get("revision_id") == revision_id for item in listed):
            out.append(program)
    return out
