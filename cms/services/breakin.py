"""Break-ins (立即插播): an urgent notice played *now* at every outlet it reaches.

A reviewer sends one on approving an urgent notice (or later, while it is approved); an
admin may send one under the emergency rule, which approves the notice's current text at
once and requires a written reason. Both are audited. The scheduler
(:mod:`cms.jobs.breakin`) then builds the insert once (chime, the notice read twice),
gives every reached outlet its own copy (a hard link), posts the news to the operators'
linked chats and makes the notice's pending chat posts due now. Operators see a banner
with the insert and an 已播放 button; boxes fetch it at ``/o/<token>/now.mp3``; every later
program of the day starts with the notice. The reviewer (or an admin) ends it: from then
on ``now.mp3`` is quiet again. A break-in lasts at most its township day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, selectinload

from cms.clock import clock_of
from cms.models import (
    Announcement,
    BreakIn,
    BreakInOutlet,
    JobState,
    Outlet,
    Priority,
    Revision,
    Role,
    Status,
    User,
)
from cms.roles import REVIEWERS
from cms.services import audit, share
from cms.services.announcements import reaches
from cms.services.errors import N_, Errors, NotFound, PermissionDenied, WorkflowError
from cms.services.scope import Scope
from cms.services.text import clean_text

RULES = {
    "approval": N_("审核通过时插播"),
    "reviewer": N_("审核员插播"),
    "emergency": N_("管理员紧急插播"),
}
INSERT_REPEATS = 2
"""The notice is read twice in the insert, whatever its own repeats."""
PLAYED_VIAS = ("web", "link")


def _allowed(user: User, ann: Announcement) -> None:
    if user.role not in REVIEWERS:
        raise PermissionDenied(N_("只有审核员或管理员可以立即插播"))
    if not Scope.of(user).contains(ann.area):
        raise PermissionDenied(N_("只能插播本单位的公告"))


def check(rev: Revision, today: date) -> None:
    """Whether ``rev`` may be played now (raises :class:`WorkflowError` when not)."""
    if rev.priority is not Priority.URGENT:
        raise WorkflowError(N_("只有紧急公告可以立即插播，请先把优先级改为紧急"))
    if not rev.to_loudspeaker:
        raise WorkflowError(N_("这条公告不在大喇叭播出，不能插播"))
    if not rev.start_date <= today <= rev.end_date:
        raise WorkflowError(
            N_("公告的播出期不含今天（{start} – {end}），不能插播"),
            start=rev.start_date.isoformat(),
            end=rev.end_date.isoformat(),
        )


def active_of(session: Session, announcement_id: int, today: date) -> BreakIn | None:
    """The announcement's break-in running today, if any."""
    return session.scalar(
        select(BreakIn)
        .where(BreakIn.announcement_id == announcement_id, live(today))
        .order_by(BreakIn.id.desc())
    )


def live(today: date) -> ColumnElement[bool]:
    """SQL condition: a break-in of ``today`` not ended (built or still building)."""
    return (
        (BreakIn.day == today)
        & BreakIn.ended_at.is_(None)
        & BreakIn.state.in_([JobState.PENDING, JobState.RUNNING, JobState.DONE])
    )


def start(
    session: Session,
    user: User,
    ann: Announcement,
    *,
    rule: str,
    today: date,
    now: datetime | None = None,
    reason: str = "",
) -> BreakIn:
    """Start a break-in of ``ann`` (audited); the scheduler builds it within a tick.

    ``rule``: ``approval`` or ``reviewer`` (the approved revision plays), or ``emergency``
    (admins only, ``reason`` required: the current text is approved at once if it was not).
    """
    if rule not in RULES:
        raise WorkflowError(N_("未知的插播方式"))
    _allowed(user, ann)
    now = now or clock_of(session).now()
    errors = Errors()
    clean = clean_text(
        errors,
        "reason",
        reason,
        label=N_("紧急情况说明"),
        max_len=500,
        required=rule == "emergency",
        multiline=True,
    )
    errors.raise_if_any()
    if ann.campaign:
        raise WorkflowError(N_("县级活动由各乡镇的副本播出，不能直接插播"))
    if ann.status is Status.WITHDRAWN:
        raise WorkflowError(N_("公告已经撤回"))
    if rule == "emergency":
        if user.role is not Role.ADMIN:
            raise PermissionDenied(N_("只有管理员可以按紧急规则插播"))
        rev = ann.current
        check(rev, today)
        if ann.status is not Status.APPROVED or ann.approved_revision_id != rev.id:
            previous = ann.status
            ann.status = Status.APPROVED
            ann.approved_revision = rev
            ann.reviewed_by_id, ann.reviewed_at = user.id, now
            share.ensure_token(ann)
            audit.record(
                session,
                user,
                "announcement.emergency_approve",
                ann,
                revision=rev.number,
                previous_status=previous.value,
                reason=clean,
            )
    else:
        if ann.status is not Status.APPROVED or ann.approved_revision is None:
            raise WorkflowError(N_("只有审核通过的公告可以插播"))
        rev = ann.approved_revision
        check(rev, today)
    if active_of(session, ann.id, today) is not None:
        raise WorkflowError(N_("这条公告正在插播"))
    row = BreakIn(
        announcement_id=ann.id,
        revision_id=rev.id,
        area_id=ann.area_id,
        day=today,
        rule=rule,
        reason=clean,
        state=JobState.PENDING,
        started_by_id=user.id,
        started_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(
        session, user, "breakin.start", row, announcement=ann.id, revision=rev.number,
        rule=rule, reason=clean,
    )  # fmt: skip
    return row


def end(session: Session, user: User, row: BreakIn, now: datetime | None = None) -> None:
    """End a break-in: ``now.mp3`` is quiet again and the banners go (audited)."""
    _allowed(user, row.announcement)
    if row.ended_at is not None:
        raise WorkflowError(N_("插播已经结束"))
    row.ended_at = now or clock_of(session).now()
    row.ended_by_id = user.id
    audit.record(session, user, "breakin.end", row, announcement=row.announcement_id)


def get(session: Session, break_in_id: int, user: User) -> BreakIn:
    row = session.get(BreakIn, break_in_id)
    if row is None or not Scope.of(user).contains(row.announcement.area):
        raise NotFound(N_("插播 {id} 不存在"), id=break_in_id)
    return row


def listing(session: Session, user: User, since: date) -> list[BreakIn]:
    """Break-ins from ``since`` owned inside the user's area, newest first."""
    stmt = (
        select(BreakIn)
        .join(Announcement, Announcement.id == BreakIn.announcement_id)
        .where(BreakIn.day >= since, Scope.of(user).announcements())
        .options(selectinload(BreakIn.revision), selectinload(BreakIn.started_by))
        .order_by(BreakIn.id.desc())
    )
    return list(session.scalars(stmt))


def reached_outlets(session: Session, rev: Revision) -> list[Outlet]:
    """Active outlets the revision reaches (the one reach rule)."""
    outlets = session.scalars(
        select(Outlet).where(Outlet.active).options(selectinload(Outlet.area)).order_by(Outlet.id)
    )
    return [o for o in outlets if reaches(rev, o.area)]


@dataclass(frozen=True)
class Playing:
    """A built break-in as one outlet sees it."""

    break_in: BreakIn
    copy: BreakInOutlet

    @property
    def title(self) -> str:
        return self.break_in.revision.title


def playing(session: Session, outlet_ids: Iterable[int], today: date) -> dict[int, list[Playing]]:
    """For each outlet, the built break-ins it plays now, newest first (one query)."""
    ids = list(outlet_ids)
    out: dict[int, list[Playing]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = session.execute(
        select(BreakIn, BreakInOutlet)
        .join(BreakInOutlet, BreakInOutlet.break_in_id == BreakIn.id)
        .where(live(today), BreakIn.state == JobState.DONE, BreakInOutlet.outlet_id.in_(ids))
        .options(selectinload(BreakIn.revision))
        .order_by(BreakIn.id.desc())
    )
    for row, copy in rows:
        out[copy.outlet_id].append(Playing(row, copy))
    return out


def front_announcements(session: Session, day: date) -> set[int]:
    """Announcements whose break-in runs on ``day``: every later program starts with them."""
    return set(session.scalars(select(BreakIn.announcement_id).where(live(day)).distinct()))


def mark_played(
    session: Session, user: User | None, copy: BreakInOutlet, via: str, now: datetime | None = None
) -> bool:
    """An operator's 已播放 for one outlet's copy; False when it was confirmed already."""
    if via not in PLAYED_VIAS:
        raise WorkflowError(N_("未知的确认方式"))
    if copy.played_at is not None:
        return False
    copy.played_at = now or clock_of(session).now()
    copy.played_by_id = user.id if user else None
    copy.via = via
    audit.record(session, user, "breakin.played", copy.break_in, outlet=copy.outlet_id, via=via)
    return True
