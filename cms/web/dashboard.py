"""The dashboard: what goes out today, where."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, g, render_template
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from cms.models import Announcement, ChatGroup, Delivery, Role, Status
from cms.roles import ANY_USER
from cms.services import alerts as alerts_svc
from cms.services import announcements as svc
from cms.services import reach as reach_svc
from cms.services.scope import Scope
from cms.web import today
from cms.web.auth import rule
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
    plan = svc.plan_for_day(db(), day, scope, going=going_all)
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
    reached = svc.reaching(
        [a for a in going_all if a.approved.to_chats], ((c.id, c.area) for c in chats)
    )
    chat_plan = [(c, reached[c.id]) for c in chats]
    alerts: list[tuple[datetime, str, Any]] = []
    if g.user.role is not Role.OPERATOR:
        # One list in time order (newest first): the scheduler's alerts, and every chat post
        # or Official Account article that failed, is uncertain or is retrying, with its reason.
        alerts = [
            (reach_svc.aware(a.created_at), "alert", a)
            for a in alerts_svc.open_alerts(db(), limit=20, where=scope.alerts())
        ]
        alerts += [(p.at, "problem", p) for p in reach_svc.problems(db(), scope, limit=20)]
        alerts.sort(key=lambda item: item[0], reverse=True)
    # Each chat line tells what became of its post (sent, failed, retrying …).
    posts = {
        (d.revision_id, d.chat_group_id): d
        for d in db().scalars(
            select(Delivery).where(
                Delivery.revision_id.in_([a.approved_revision_id for a in going_all]),
                Delivery.chat_group_id.in_([c.id for c in chats]),
            )
        )
    }
    # Each notice's honest status; the on-air count and list are the ones whose status says so.
    statuses = reach_svc.status_lines(db(), going, settings().now(), settings().tz)
    return render_template(
        "dashboard.html",
        alerts=alerts,
        day=day,
        going=going,
        statuses=statuses,
        on_air_ids={a_id for a_id, line in statuses.items() if line.key == "active"},
        plan=plan,
        # Announcements of an office above (the county's) play here but open only there.
        openable={a.id for a in going},
        chat_plan=chat_plan,
        posts=posts,
        platforms=reach_svc.PLATFORM_LABELS,
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
    return campaigns.waiting_for(db(), town)
