"""One answer to "what reaches this outlet on this day", shared by every reader."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Area, Outlet, Priority
from cms.services import announcements, budget
from cms.services import programs as programs_svc
from cms.services.announcements import reaching_outlets


def _demo(session: Session, settings) -> date:  # type: ignore[no-untyped-def]
    from cms.demo import seed

    seed(session, settings)
    session.commit()
    from cms.web import today

    return today(settings)


def test_scheduler_dashboard_and_budget_read_the_same_answer(session: Session, settings) -> None:  # type: ignore[no-untyped-def]
    day = _demo(session, settings)
    outlets = list(session.scalars(select(Outlet).where(Outlet.active).order_by(Outlet.id)))
    reached = reaching_outlets(session, day, outlets)
    assert any(reached.values()), "the demo plays something today"
    dashboard = {o.id: anns for o, anns in announcements.plan_for_day(session, day)}
    for outlet in outlets:
        assert programs_svc.outlet_announcements(session, outlet, day) == reached[outlet.id]
        assert dashboard[outlet.id] == reached[outlet.id]
        # Urgent first, each announcement once, only loudspeaker ones, all reaching the area.
        anns = reached[outlet.id]
        urgent = [a.approved.priority is Priority.URGENT for a in anns]
        assert urgent == sorted(urgent, reverse=True)
        assert len({a.id for a in anns}) == len(anns)
        assert all(a.approved.to_loudspeaker for a in anns)
        assert all(announcements.reaches(a.approved, outlet.area) for a in anns)

    # The budget of a one-day draft counts, per slot, exactly what reaches its outlet.
    top = session.scalars(select(Area).where(Area.parent_id.is_(None))).one()
    plan = budget.budget(
        session, text="测试", rate=0, repeats=1, area_ids=[top.id], start=day, end=day
    )
    by_outlet = {s.outlet_id for s in plan.slots}
    assert by_outlet == {o.id for o in outlets if o.slots}
    for slot in plan.slots:
        others = [a for a in reached[slot.outlet_id]]
        assert (slot.others_seconds > 0) == bool(others)


def test_exclude_leaves_the_edited_announcement_out(session: Session, settings) -> None:  # type: ignore[no-untyped-def]
    day = _demo(session, settings)
    outlets = list(session.scalars(select(Outlet).where(Outlet.active)))
    reached = reaching_outlets(session, day, outlets)
    some = next(anns[0] for anns in reached.values() if anns)
    without = reaching_outlets(session, day, outlets, exclude=some.id)
    for outlet in outlets:
        assert without[outlet.id] == [a for a in reached[outlet.id] if a.id != some.id]
    # Outside every campaign window nothing reaches anyone.
    far = reaching_outlets(session, day + timedelta(days=3650), outlets)
    assert not any(far.values())
