"""Announcements and their review workflow.

States: draft → in_review → approved, with reject (back to draft, with the reviewer's
comment) and withdraw (stops it everywhere). Approval pins the revision that goes out;
editing an approved announcement makes a new revision that needs review again while the
pinned one keeps going out. Revisions are never changed once written.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from cms import tree
from cms.clock import clock_of
from cms.models import (
    Announcement,
    Area,
    Priority,
    Revision,
    Role,
    Status,
    User,
    get_setting,
    revision_area,
)
from cms.roles import EDITORS, REVIEWERS, STAFF
from cms.services import audit, campaigns, share
from cms.services import content as content_model
from cms.services.content import (  # noqa: F401  (the limits, as other modules import them here)
    DEFAULT_VOICE,
    MAX_BODY,
    MAX_REPEATS,
    MAX_SPOKEN,
    MAX_TITLE,
    MAX_WINDOW_DAYS,
    RATE_RANGE,
    Content,
    voice_names,
)
from cms.services.errors import N_, Errors, NotFound, PermissionDenied, WorkflowError
from cms.services.scope import Scope, owner_area
from cms.services.text import clean_text

SELF_APPROVAL_SETTING = "allow_self_approval"

STATUS_LABELS = {
    "draft": N_("草稿"),
    "in_review": N_("待审核"),
    "approved": N_("已通过"),
    "scheduled": N_("待播出"),
    "active": N_("播出中"),
    "finished": N_("已结束"),
    "withdrawn": N_("已撤回"),
}
PRIORITY_LABELS = {Priority.NORMAL: N_("普通"), Priority.URGENT: N_("紧急")}


def parse_content(
    session: Session, data: Mapping[str, Any], *, today: date, scope: Scope | None = None
) -> Content:
    """Validate raw form or JSON input; raises ValidationError naming every bad field.

    With ``scope``, only areas inside it may be targeted.
    """
    return content_model.parse(session, data, today=today, scope=scope)


def target_scope(user: User, ann: Announcement | None = None) -> Scope:
    """Where ``user`` may aim ``ann`` (a new one: ``None``): inside the user's area and the
    announcement's office."""
    if ann is not None and ann.area is not None:
        return Scope(ann.area_id, ann.area.path)
    return Scope.of(user)


def _require(
    user: User, roles: frozenset[Role], msgid: str, ann: Announcement | None = None
) -> None:
    """``user`` has one of ``roles``, and ``ann`` (if given) is owned inside their area."""
    if ann is not None:
        Scope.of(user).announcement(ann, ann.id)
    if user.role not in roles:
        raise PermissionDenied(msgid)


def _new_revision(session: Session, ann: Announcement, content: Content, author: User) -> Revision:
    number = (
        session.scalar(select(func.max(Revision.number)).where(Revision.announcement_id == ann.id))
        or 0
    ) + 1
    fields = content_model.revision_values(session, content)
    rev = Revision(announcement=ann, number=number, author_id=author.id, **fields)
    session.add(rev)
    session.flush()
    ann.latest_revision = rev
    return rev


def create(
    session: Session,
    user: User,
    data: Mapping[str, Any],
    *,
    today: date,
    campaign: bool = False,
) -> Announcement:
    """Create a draft from raw input (``campaign``: a county campaign, see cms.services.campaigns)."""
    _require(user, EDITORS, N_("只有编辑或管理员可以新建公告"))
    if campaign and not campaigns.may_draft(user):
        raise PermissionDenied(N_("只有县级编辑可以新建县级活动"))
    if not data.get("voice"):
        # No voice chosen (an API client, a script): the office's default voice.
        data = {**data, "voice": tree.default_voice(session, tree.area_of_user(session, user))}
    content = parse_content(session, data, today=today, scope=target_scope(user))
    ann = Announcement(status=Status.DRAFT, created_by_id=user.id, campaign=campaign)
    session.add(ann)
    session.flush()
    rev = _new_revision(session, ann, content, user)
    ann.area_id = owner_area(user, rev.areas)
    extra = {"campaign": True} if campaign else {}
    audit.record(
        session, user, "announcement.create", ann, revision=rev.number, title=rev.title, **extra
    )
    return ann


def update(
    session: Session, user: User, ann: Announcement, data: Mapping[str, Any], *, today: date
) -> Revision:
    """Save an edit as a new revision; an approved announcement goes back to draft for review.

    Returns the latest revision (unchanged when nothing changed).
    """
    _require(user, EDITORS, N_("只有编辑或管理员可以修改公告"), ann)
    if ann.status is Status.IN_REVIEW:
        raise WorkflowError(N_("公告正在审核中，审核完成（或被退回）后才能修改"))
    if ann.status is Status.WITHDRAWN:
        raise WorkflowError(N_("公告已撤回，不能再修改"))
    content = parse_content(session, data, today=today, scope=target_scope(user, ann))
    if content == Content.of(ann.current):
        return ann.current
    rev = _new_revision(session, ann, content, user)
    if ann.area_id is None:
        ann.area_id = owner_area(user, rev.areas)
    previous = ann.status
    ann.status = Status.DRAFT
    audit.record(
        session, user, "announcement.edit", ann, revision=rev.number, previous_status=previous.value
    )
    campaigns.edited(session, user, ann)
    return rev


def submit(session: Session, user: User, ann: Announcement) -> None:
    _require(user, EDITORS, N_("只有编辑或管理员可以提交审核"), ann)
    if ann.status is not Status.DRAFT:
        raise WorkflowError(
            N_("只有草稿可以提交审核（当前：{status}）"), status=STATUS_LABELS[ann.status.value]
        )
    ann.status = Status.IN_REVIEW
    ann.submitted_by_id = user.id
    audit.record(session, user, "announcement.submit", ann, revision=ann.current.number)


def can_approve(session: Session, user: User, ann: Announcement) -> bool:
    if user.role not in REVIEWERS or ann.status is not Status.IN_REVIEW:
        return False
    if not Scope.of(user).contains(ann.area):
        return False
    own = user.id in {ann.current.author_id, ann.submitted_by_id}
    return not own or bool(get_setting(session, SELF_APPROVAL_SETTING, False))


def approve(session: Session, user: User, ann: Announcement, comment: str = "") -> None:
    """Pin the latest revision as the one that goes out."""
    _require(user, REVIEWERS, N_("只有审核员或管理员可以审核"), ann)
    if ann.status is not Status.IN_REVIEW:
        raise WorkflowError(
            N_("只有待审核的公告可以通过（当前：{status}）"), status=STATUS_LABELS[ann.status.value]
        )
    if not can_approve(session, user, ann):
        raise PermissionDenied(N_("不能审核自己撰写或提交的公告（管理员可在设置中允许）"))
    errors = Errors()
    clean = clean_text(
        errors,
        "comment",
        comment,
        label=N_("审核意见"),
        max_len=2000,
        required=False,
        multiline=True,
    )
    errors.raise_if_any()
    ann.status = Status.APPROVED
    ann.approved_revision = ann.current
    ann.review_comment = clean or None
    ann.reviewed_by_id, ann.reviewed_at = user.id, clock_of(session).now()
    share.ensure_token(ann)  # the share page exists from the first approval on
    audit.record(
        session, user, "announcement.approve", ann, revision=ann.current.number, comment=clean
    )
    if ann.campaign:
        campaigns.follow(session, user, ann)


def reject(session: Session, user: User, ann: Announcement, comment: str) -> None:
    """Send the announcement back to draft with the reviewer's comment (required)."""
    _require(user, REVIEWERS, N_("只有审核员或管理员可以审核"), ann)
    if ann.status is not Status.IN_REVIEW:
        raise WorkflowError(
            N_("只有待审核的公告可以退回（当前：{status}）"), status=STATUS_LABELS[ann.status.value]
        )
    errors = Errors()
    clean = clean_text(
        errors, "comment", comment, label=N_("退回意见"), max_len=2000, multiline=True
    )
    errors.raise_if_any()
    ann.status = Status.DRAFT
    ann.review_comment = clean
    ann.reviewed_by_id, ann.reviewed_at = user.id, clock_of(session).now()
    audit.record(
        session, user, "announcement.reject", ann, revision=ann.current.number, comment=clean
    )


def withdraw(session: Session, user: User, ann: Announcement, reason: str = "") -> None:
    """Stop the announcement everywhere from now on."""
    _require(user, STAFF, N_("没有撤回公告的权限"), ann)
    if ann.status is Status.WITHDRAWN:
        raise WorkflowError(N_("公告已经撤回"))
    errors = Errors()
    clean = clean_text(
        errors, "reason", reason, label=N_("撤回原因"), max_len=2000, required=False, multiline=True
    )
    errors.raise_if_any()
    previous = ann.status
    ann.status = Status.WITHDRAWN
    ann.withdrawn_at = clock_of(session).now()
    audit.record(
        session, user, "announcement.withdraw", ann, previous_status=previous.value, reason=clean
    )
    if ann.campaign:
        campaigns.withdraw_copies(session, user, ann)


def get(session: Session, announcement_id: int, user: User | None = None) -> Announcement:
    """The announcement; with ``user``, only when it is owned inside the user's area."""
    ann = session.get(Announcement, announcement_id)
    if ann is None:
        raise NotFound(N_("公告 {id} 不存在"), id=announcement_id)
    if user is not None:
        Scope.of(user).announcement(ann, announcement_id)
    return ann


def revision(session: Session, ann: Announcement, number: int) -> Revision:
    rev = session.scalar(
        select(Revision).where(Revision.announcement_id == ann.id, Revision.number == number)
    )
    if rev is None:
        raise NotFound(N_("第 {n} 版不存在"), n=number)
    return rev


def approved_filter():  # type: ignore[no-untyped-def]
    """SQL condition: announcements with an approved revision, not withdrawn."""
    return (Announcement.approved_revision_id.is_not(None)) & (
        Announcement.status != Status.WITHDRAWN
    )


def live_filter():  # type: ignore[no-untyped-def]
    """SQL condition: announcements whose approved revision goes out (not withdrawn).

    A county campaign never goes out itself: its townships' copies do.
    """
    return approved_filter() & Announcement.campaign.is_(False)


def going_out_on(session: Session, day: date, area: Area | None = None) -> list[Announcement]:
    """Approved, not withdrawn, with the campaign window covering ``day``; urgent first.

    The approved revisions and their target areas come in the same round trips (every
    caller looks at both): one query each, not one per announcement, which made a county's
    unchanged day of 768 programs take over a minute. ``area``: only those that reach it
    (a target overlaps the area in the tree; what :func:`reaches` checks).
    """
    stmt = (
        select(Announcement)
        .join(Revision, Revision.id == Announcement.approved_revision_id)
        .where(live_filter(), Revision.start_date <= day, Revision.end_date >= day)
        .order_by(Revision.priority.desc(), Announcement.id)
        .options(selectinload(Announcement.approved_revision).selectinload(Revision.areas))
    )
    if area is not None:
        targets = select(revision_area.c.revision_id).where(
            revision_area.c.area_id.in_(tree.overlapping_ids(area))
        )
        stmt = stmt.where(Announcement.approved_revision_id.in_(targets))
    anns = list(session.scalars(stmt))
    anns.sort(key=lambda a: (a.approved.priority is not Priority.URGENT, a.id))
    return anns


PHASES = ("draft", "in_review", "approved", "scheduled", "active", "finished", "withdrawn")


def search(
    session: Session,
    *,
    today: date,
    status: str | None = None,
    topic_id: int | None = None,
    area_id: int | None = None,
    q: str | None = None,
    scope: Scope | None = None,
) -> Select[Announcement]:
    """A query for the announcement list, newest first (only the scope's, when given)."""
    stmt = select(Announcement).join(Revision, Revision.id == Announcement.latest_revision_id)
    if scope is not None:
        stmt = stmt.where(scope.announcements())
    if status in {"draft", "in_review", "withdrawn"}:
        stmt = stmt.where(Announcement.status == Status(status))
    elif status in {"approved", "scheduled", "active", "finished"}:
        pinned = aliased(Revision)
        stmt = stmt.join(pinned, pinned.id == Announcement.approved_revision_id).where(
            approved_filter()
        )
        if status == "scheduled":
            stmt = stmt.where(pinned.start_date > today)
        elif status == "active":
            stmt = stmt.where(pinned.start_date <= today, pinned.end_date >= today)
        elif status == "finished":
            stmt = stmt.where(pinned.end_date < today)
    if topic_id:
        stmt = stmt.where(Revision.topic_id == topic_id)
    if area_id:
        area = session.get(Area, area_id)
        if area is None:
            return stmt.where(false())
        else:
            # Matches announcements aimed at the area, anything below it, or anything above it
            # (an announcement for the whole township reaches every village in it).
            stmt = stmt.where(
                select(revision_area.c.area_id)
                .where(
                    revision_area.c.revision_id == Revision.id,
                    revision_area.c.area_id.in_(tree.overlapping_ids(area)),
                )
                .exists()
            )
    if q:
        escaped = q.strip().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        stmt = stmt.where(
            or_(
                Revision.title.like(like, escape="\\"),
                Revision.body.like(like, escape="\\"),
                Revision.spoken_text.like(like, escape="\\"),
            )
        )
    return stmt.order_by(Announcement.updated_at.desc(), Announcement.id.desc()).options(
        # Each row shows its status, which looks at the approved revision's targets.
        selectinload(Announcement.approved_revision).selectinload(Revision.areas)
    )


# How the diff shows fields that read better together; every other field shows on its own.
_DIFF_GROUPS = {
    "topic_id": ("topic", N_("主题")),
    "area_ids": ("areas", N_("目标区域")),
    "to_loudspeaker": ("channels", N_("发布渠道")),
    "to_chats": ("channels", N_("发布渠道")),
    "start_date": ("window", N_("播出期")),
    "end_date": ("window", N_("播出期")),
}


def diff_fields() -> list[tuple[str, str]]:
    """(name, label) of what the diff compares, in the content model's order."""
    return list(
        dict.fromkeys(_DIFF_GROUPS.get(s.name, (s.name, s.label)) for s in content_model.SPECS)
    )


def _field_text(rev: Revision, name: str) -> str:
    match name:
        case "topic":
            return rev.topic.name if rev.topic else ""
        case "areas":
            return "、".join(a.name for a in rev.areas)
        case "channels":
            return "、".join(rev.channels)
        case "window":
            return f"{rev.start_date} – {rev.end_date}"
        case _:
            value = getattr(rev, name)
            if isinstance(value, enum.Enum):
                return str(value.value)
            if isinstance(value, time):
                return value.strftime("%H:%M")
            return "" if value is None else str(value)


@dataclass(frozen=True)
class FieldDiff:
    name: str
    label: str
    old: str
    new: str
    ops: list[tuple[str, str]]  # (op, text) with op in {"equal", "delete", "insert"}


def diff(old: Revision, new: Revision) -> list[FieldDiff]:
    """Character-level differences field by field (Chinese has no spaces to split words on)."""
    out: list[FieldDiff] = []
    for name, label in diff_fields():
        a, b = _field_text(old, name), _field_text(new, name)
        if a == b:
            continue
        ops: list[tuple[str, str]] = []
        matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
        for tag, i1, i2, j1, j2 in matcher.get_opcodes():
            if tag == "equal":
                ops.append(("equal", a[i1:i2]))
            else:
                if i2 > i1:
                    ops.append(("delete", a[i1:i2]))
                if j2 > j1:
                    ops.append(("insert", b[j1:j2]))
        out.append(FieldDiff(name, label, a, b, ops))
    return out


def default_window(today: date) -> tuple[date, date]:
    return today, today + timedelta(days=6)


def reaches(rev: Revision, area: Area) -> bool:
    """Whether a revision reaches an outlet or chat of ``area``: one of its targets overlaps
    the area in the tree (:func:`cms.tree.overlap`, the one rule)."""
    return tree.paths_overlap(area.path, target_paths(rev))


def target_paths(rev: Revision) -> tuple[str, ...]:
    """The tree paths of a revision's targets, for :func:`cms.tree.paths_overlap`."""
    return tuple(target.path for target in rev.areas)


def reaching(
    announcements: Iterable[Announcement], areas: Iterable[tuple[int, Area]]
) -> dict[int, list[Announcement]]:
    """For each ``(key, area)``, the announcements (approved revisions) that reach the area.

    :func:`reaches` for many at once: each target path and area path is read once.
    """
    targets = [(a, target_paths(a.approved)) for a in announcements]
    out: dict[int, list[Announcement]] = {}
    for key, area in areas:
        path = area.path
        out[key] = [a for a, paths in targets if tree.paths_overlap(path, paths)]
    return out


def narrower_targets(rev: Revision, area: Area) -> list[Area]:
    """The targets inside ``area`` when no target covers all of it: a village loudspeaker
    playing a notice for its 三组 names "（三组）" on the run sheet and in the program."""
    return tree.narrower(rev.areas, area)


def for_part(title: str, part: Iterable[Area]) -> str:
    """A title naming the narrower targets it is for: "通知（三组）"."""
    names = "、".join(a.name for a in part)
    return f"{title}（{names}）" if names else title


def reaching_outlets(
    session: Session,
    day: date,
    outlets: Iterable[Any],
    *,
    going: list[Announcement] | None = None,
    exclude: int | None = None,
) -> dict[int, list[Announcement]]:
    """What reaches each outlet on ``day``: the one answer for the scheduler, the dashboard,
    the run sheet and the budget.

    For each outlet (by id), the approved announcements for loudspeakers whose campaign
    covers ``day`` and whose targets include the outlet's area, urgent first.

    Args:
        going: :func:`going_out_on` for ``day``, when the caller has it already.
        exclude: an announcement to leave out (the budget of a draft being edited).
    """
    live = [
        a
        for a in (going_out_on(session, day) if going is None else going)
        if a.id != exclude and a.approved_revision is not None and a.approved.to_loudspeaker
    ]
    return reaching(live, ((o.id, o.area) for o in outlets))


def plan_for_day(
    session: Session,
    day: date,
    scope: Scope | None = None,
    *,
    going: list[Announcement] | None = None,
) -> list[tuple[Any, list[Announcement]]]:
    """For each active outlet (in ``scope``), the announcements it plays on ``day`` (urgent
    first); ``going``: :func:`going_out_on` for ``day``, when the caller has it already."""
    from cms.models import Outlet

    stmt = (
        select(Outlet)
        .where(Outlet.active)
        .order_by(Outlet.area_id, Outlet.id)
        .options(selectinload(Outlet.area), selectinload(Outlet.slots))
    )
    if scope is not None:
        stmt = stmt.where(scope.outlets())
    outlets = list(session.scalars(stmt))
    reached = reaching_outlets(session, day, outlets, going=going)
    return [(o, reached[o.id]) for o in outlets]
