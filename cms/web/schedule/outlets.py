"""Outlets: each one's day, its coming two weeks and the printable run sheet."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from flask import abort, g, render_template
from sqlalchemy import select

from cms.models import Announcement, Clip, ClipProfile, JobState, Outlet, Role
from cms.roles import ANY_USER
from cms.services import airtime
from cms.services import announcements as ann_svc
from cms.services import budget as budget_svc
from cms.services import programs as programs_svc
from cms.services import schedule as schedule_svc
from cms.services import terminals as terminal_svc
from cms.services.days import Outcome
from cms.services.scope import Scope
from cms.services.text import in_date_range, parse_date
from cms.web import today
from cms.web.auth import rule
from cms.web.db import db, settings
from cms.web.schedule import bp
from cms.web.schedule.common import CALENDAR_DAYS, outlet_or_404


def _day(text: str) -> date:
    if text == "today":
        return today(settings())
    day = parse_date(text)
    if day is None or not in_date_range(day):
        abort(404)
    return day


def _visible_outlets() -> list[Outlet]:
    if g.user.role is Role.OPERATOR:
        return sorted(g.user.outlets, key=lambda o: o.id)
    return list(
        db().scalars(
            select(Outlet).where(Scope.of(g.user).outlets()).order_by(Outlet.area_id, Outlet.id)
        )
    )


@bp.get("/outlets")
@rule(*ANY_USER)
def outlets() -> Any:
    """Outlets with links to their day, calendar and run sheet."""
    return render_template("schedule/outlets.html", outlets=_visible_outlets())


def _plan(outlet: Outlet, day: date) -> tuple[list[Announcement], list[schedule_svc.SlotDay]]:
    """The announcements that play at ``outlet`` on ``day``, and the day's slots with their
    programs (what was built, or what is due)."""
    planned = programs_svc.outlet_announcements(db(), outlet, day)
    slots = schedule_svc.slot_days(
        db(),
        outlet,
        day,
        now=settings().now(),
        tz=settings().tz,
        settings=settings(),
        planned=bool(planned),
    )
    return planned, slots


def _day_plan(
    outlet_id: int, day_text: str
) -> tuple[Outlet, date, list[Announcement], list[schedule_svc.SlotDay]]:
    """The outlet and the day the URL names (404 when there is none), and their plan."""
    outlet = outlet_or_404(outlet_id)
    day = _day(day_text)
    return (outlet, day, *_plan(outlet, day))


@bp.get("/outlets/<int:outlet_id>/<day_text>")
@rule(*ANY_USER)
def outlet_day(outlet_id: int, day_text: str) -> Any:
    """One outlet's programs for one day: listen, manifest, what is planned."""
    outlet, day, planned, slots = _day_plan(outlet_id, day_text)
    return render_template(
        "schedule/outlet_day.html",
        outlet=outlet,
        day=day,
        slots=slots,
        planned=planned,
        prev_day=day - timedelta(days=1),
        next_day=day + timedelta(days=1),
        boxes=terminal_svc.day_statuses(db(), [outlet.id], day, settings().tz),
        box_statuses=terminal_svc.STATUS_LABELS,
        box_kinds=terminal_svc.KIND_LABELS,
    )


@bp.get("/outlets/<int:outlet_id>/calendar")
@rule(*ANY_USER)
def calendar(outlet_id: int) -> Any:
    """The coming 14 days of one outlet: what is planned and what is built."""
    outlet = outlet_or_404(outlet_id)
    start = today(settings())
    days = []
    for offset in range(CALENDAR_DAYS):
        day = start + timedelta(days=offset)
        anns, slots = _plan(outlet, day)
        days.append({"day": day, "announcements": anns, "slots": slots})
    return render_template("schedule/calendar.html", outlet=outlet, days=days)


@bp.get("/outlets/<int:outlet_id>/<day_text>/runsheet")
@rule(*ANY_USER)
def runsheet(outlet_id: int, day_text: str) -> Any:
    """The printable run sheet (播出单): slot, order, titles, durations."""
    outlet, day, planned, slots = _day_plan(outlet_id, day_text)
    estimates = {}
    for ann in planned:
        rev = ann.approved
        clip = db().scalar(
            select(Clip).where(
                Clip.revision_id == rev.id,
                Clip.profile == ClipProfile.LOUDSPEAKER,
                Clip.state == JobState.DONE,
            )
        )
        estimates[rev.id] = (
            clip.duration if clip and clip.duration else budget_svc.estimate(rev.speech, rev.rate)
        )
    sheet = []
    for row in slots:
        program = row.program
        items: list[dict[str, Any]] = []
        total: float | None = None
        if program is not None and program.manifest and program.state is JobState.DONE:
            # What was built, not what was planned.
            items = [
                {
                    "title": item.get("title", ""),
                    "repeats": item.get("repeats", 1),
                    "duration": item.get("duration"),
                }
                for item in program.manifest.get("items", [])
            ]
            total = program.duration
        elif row.outcome is Outcome.PENDING:
            # Not built yet and still due: what it will be built from now.
            items = [
                {
                    "title": ann_svc.for_part(
                        a.approved.title, ann_svc.narrower_targets(a.approved, outlet.area)
                    ),
                    "repeats": a.approved.repeats,
                    "duration": estimates[a.approved.id],
                }
                for a in airtime.in_slot(planned, day, row.slot.at)
            ]
            total = budget_svc.slot_seconds([(i["duration"], i["repeats"]) for i in items])
        sheet.append(
            {"slot": row.slot, "program": program, "items": items, "total": total, "row": row}
        )
    return render_template("schedule/runsheet.html", outlet=outlet, day=day, sheet=sheet)
