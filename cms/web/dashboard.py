"""The dashboard: what goes out today, where."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from cms.models import Announcement, ChatGroup, Role, Status
from cms.services import announcements as svc
from cms.services import schedule as schedule_svc
from cms.services.scope import Scope
from cms.web import today
from cms.web.auth import ANY_USER, rule
from cms.web.db import db, settings

bp = Blueprint("dashboard", __name__)


@bp.get("/")
@rule(*ANY_USER)
def index() -> Any:
    """Today at a glance: announcements going out, per outlet and per chat."""
    day = today(settings())
    scope = Scope.of(g.user)
    # Everything that goes out today; an office lists its own (a county notice reaches its
    # outlets and chats below, shown there by title).
    going_all = svc.going_out_on(db(), day)
    going = [a for a in going_all if scope.contains(a.area)]
    plan = svc.plan_for_day(db(), day, scope)
    if g.user.role is Role.OPERATOR:
        mine = {o.id for o in g.user.outlets}
        plan = [(o, anns) for o, anns in plan if o.id in mine]
    counts = dict(
        db()
        .execute(
            select(Announcement.status, func.count())
            .where(scope.announcements())
            .group_by(Announcement.status)
        )
        .all()
    )
    chats = list(
        db().scalars(
            select(ChatGroup)
            .where(ChatGroup.active, scope.chats())
            .options(selectinload(ChatGroup.area))
        )
    )
    chat_plan = [
        (
            c,
            [a for a in going_all if a.approved.to_chats and svc.reaches(a.approved, c.area)],
        )
        for c in chats
    ]
    alerts = (
        schedule_svc.open_alerts(db(), limit=20, scope=scope)
        if g.user.role is not Role.OPERATOR
        else []
    )
    return render_template(
        "dashboard.html",
        alerts=alerts,
        day=day,
        going=going,
        plan=plan,
        # Announcements of an office above (the county's) play here but open only there.
        openable={a.id for a in going},
        chat_plan=chat_plan,
        in_review=counts.get(Status.IN_REVIEW, 0),
        drafts=counts.get(Status.DRAFT, 0),
        priority_labels=svc.PRIORITY_LABELS,
        campaigns_waiting=_campaigns_waiting(),
    )


def _campaigns_waiting() -> int:
    """County campaigns offered to the user's township that it has not taken up yet."""
    from cms.services import campaigns

    town = campaigns.user_township(g.user)
    if town is None or g.user.role is Role.OPERATOR:
        return 0
    offered = campaigns.offered_to(db(), town)
    return sum(1 for c in offered if campaigns.copy_of(db(), c, town) is None)
