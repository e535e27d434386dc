"""Announcements and their review workflow.

States: draft → in_review → approved, with reject (back to draft, with the reviewer's
comment) and withdraw (stops it everywhere). Approval pins the revision that goes out;
editing an approved announcement makes a new revision that needs review again while the
pinned one keeps going out. Revisions are never changed once written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Any

from sqlalchemy import Select, false, func, or_, select
from sqlalchemy.orm import Session, aliased

from cms.models import (
    Announcement,
    Area,
    Priority,
    Revision,
    Role,
    Status,
    Topic,
    User,
    get_setting,
    revision_area,
    utcnow,
)
from cms.services import audit, share
from cms.services.errors import N_, Errors, NotFound, PermissionDenied, WorkflowError
from cms.services.text import (
    MAX_DATE,
    MIN_DATE,
    clean_text,
    in_date_range,
    parse_date,
    parse_id,
    parse_int,
)

MAX_TITLE = 200
MAX_BODY = 10_000
MAX_SPOKEN = 10_000
MAX_WINDOW_DAYS = 366
MAX_REPEATS = 5
RATE_RANGE = (-50, 50)
DEFAULT_VOICE = "zh-CN-XiaoxiaoNeural"
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

EDITORS = {Role.ADMIN, Role.EDITOR}
REVIEWERS = {Role.ADMIN, Role.REVIEWER}
WITHDRAWERS = {Role.ADMIN, Role.EDITOR, Role.REVIEWER}
READERS = {Role.ADMIN, Role.EDITOR, Role.REVIEWER}


def voice_names() -> list[str]:
    from audio.voices import VOICES

    return list(VOICES)


@dataclass(frozen=True)
class Content:
    """Validated content of one revision."""

    title: str
    body: str
    spoken_text: str | None
    topic_id: int | None
    priority: Priority
    area_ids: tuple[int, ...]
    to_loudspeaker: bool
    to_chats: bool
    start_date: date
    end_date: date
    repeats: int
    chat_post_time: time | None
    voice: str
    rate: int

    @classmethod
    def of(cls, rev: Revision) -> Content:
        return cls(
            title=rev.title,
            body=rev.body,
            spoken_text=rev.spoken_text,
            topic_id=rev.topic_id,
            priority=rev.priority,
            area_ids=tuple(sorted(a.id for a in rev.areas)),
            to_loudspeaker=rev.to_loudspeaker,
            to_chats=rev.to_chats,
            start_date=rev.start_date,
            end_date=rev.end_date,
            repeats=rev.repeats,
            chat_post_time=rev.chat_post_time,
            voice=rev.voice,
            rate=rev.rate,
        )


_HHMM = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "on", "yes", "y"}


def _as_date(errors: Errors, name: str, value: object, label: str) -> date | None:
    text = value if isinstance(value, date) else str(value or "").strip()
    if not text:
        errors.add(name, N_("请填写{label}"), label=label)
        return None
    day = parse_date(text)
    if day is None:
        errors.add(name, N_("{label}应为 YYYY-MM-DD 格式的日期"), label=label)
        return None
    if not in_date_range(day):
        errors.add(
            name,
            N_("{label}应在 {lo} 到 {hi} 之间"),
            label=label,
            lo=MIN_DATE.isoformat(),
            hi=MAX_DATE.isoformat(),
        )
        return None
    return day


def _as_int(errors: Errors, name: str, value: object, label: str, lo: int, hi: int) -> int:
    number = None if isinstance(value, float) else parse_int(value)
    if number is None:
        errors.add(name, N_("{label}应为整数"), label=label)
        return lo
    if not lo <= number <= hi:
        errors.add(name, N_("{label}应在 {lo} 到 {hi} 之间"), label=label, lo=lo, hi=hi)
    return number


def _area_ids(errors: Errors, session: Session, raw: object) -> tuple[int, ...]:
    if isinstance(raw, str):
        raw = [p for p in raw.replace("，", ",").split(",") if p.strip()]
    if not isinstance(raw, list | tuple) or not raw:
        errors.add("area_ids", N_("请至少选择一个目标区域"))
        return ()
    ids: list[int] = []
    for item in raw:
        area_id = parse_id(item)
        if area_id is None:
            errors.add("area_ids", N_("区域编号“{v}”无效"), v=str(item)[:20])
            return ()
        ids.append(area_id)
    found = set(session.scalars(select(Area.id).where(Area.id.in_(ids))))
    missing = [i for i in ids if i not in found]
    if missing:
        errors.add("area_ids", N_("区域不存在：{ids}"), ids="、".join(map(str, missing[:10])))
    return tuple(sorted(set(ids)))


def parse_content(session: Session, data: Mapping[str, Any], *, today: date) -> Content:
    """Validate raw form or JSON input; raises ValidationError naming every bad field."""
    errors = Errors()
    title = clean_text(errors, "title", data.get("title"), label=N_("标题"), max_len=MAX_TITLE)
    body = clean_text(
        errors, "body", data.get("body"), label=N_("正文"), max_len=MAX_BODY, multiline=True
    )
    spoken = clean_text(
        errors,
        "spoken_text",
        data.get("spoken_text"),
        label=N_("播音稿"),
        max_len=MAX_SPOKEN,
        required=False,
        multiline=True,
    )
    topic_id: int | None = None
    raw_topic = data.get("topic_id")
    if raw_topic not in (None, ""):
        topic_id = parse_id(raw_topic)
        if topic_id is None:
            errors.add("topic_id", N_("主题无效"))
        elif session.get(Topic, topic_id) is None:
            errors.add("topic_id", N_("主题 {id} 不存在"), id=topic_id)
    try:
        priority = Priority(str(data.get("priority") or "normal"))
    except ValueError:
        errors.add("priority", N_("优先级应为 normal（普通）或 urgent（紧急）"))
        priority = Priority.NORMAL
    area_ids = _area_ids(errors, session, data.get("area_ids"))
    to_loudspeaker = _as_bool(data.get("to_loudspeaker", False))
    to_chats = _as_bool(data.get("to_chats", False))
    if not (to_loudspeaker or to_chats):
        errors.add("channels", N_("请至少选择一个发布渠道（大喇叭或群聊）"))
    start = _as_date(errors, "start_date", data.get("start_date"), N_("开始日期"))
    end = _as_date(errors, "end_date", data.get("end_date"), N_("结束日期"))
    if start and end:
        if end < start:
            errors.add("end_date", N_("结束日期不能早于开始日期"))
        elif (end - start).days + 1 > MAX_WINDOW_DAYS:
            errors.add("end_date", N_("播出期最长 {n} 天"), n=MAX_WINDOW_DAYS)
        elif end < today:
            errors.add("end_date", N_("结束日期已经过去"))
    repeats = _as_int(errors, "repeats", data.get("repeats", 1), N_("重复次数"), 1, MAX_REPEATS)
    rate = _as_int(errors, "rate", data.get("rate", 0), N_("语速"), *RATE_RANGE)
    post_time: time | None = None
    raw_time = str(data.get("chat_post_time") or "").strip()
    if raw_time:
        match = _HHMM.fullmatch(raw_time)
        if match and int(match[1]) < 24 and int(match[2]) < 60:
            post_time = time(int(match[1]), int(match[2]))
        else:
            errors.add("chat_post_time", N_("群聊发送时间应为 HH:MM"))
    elif to_chats:
        errors.add("chat_post_time", N_("发到群聊时请填写发送时间"))
    voice = str(data.get("voice") or DEFAULT_VOICE)
    if voice not in voice_names():
        errors.add("voice", N_("不支持的声音“{v}”"), v=voice[:60])
    errors.raise_if_any()
    assert start is not None and end is not None
    return Content(
        title=title,
        body=body,
        spoken_text=spoken or None,
        topic_id=topic_id,
        priority=priority,
        area_ids=area_ids,
        to_loudspeaker=to_loudspeaker,
        to_chats=to_chats,
        start_date=start,
        end_date=end,
        repeats=repeats,
        chat_post_time=post_time,
        voice=voice,
        rate=rate,
    )


def _require(user: User, roles: set[Role], msgid: str) -> None:
    if user.role not in roles:
        raise PermissionDenied(msgid)


def _new_revision(session: Session, ann: Announcement, content: Content, author: User) -> Revision:
    number = (
        session.scalar(select(func.max(Revision.number)).where(Revision.announcement_id == ann.id))
        or 0
    ) + 1
    fields = {k: v for k, v in content.__dict__.items() if k != "area_ids"}
    targets = list(session.scalars(select(Area).where(Area.id.in_(content.area_ids))))
    rev = Revision(announcement=ann, number=number, author_id=author.id, areas=targets, **fields)
    session.add(rev)
    session.flush()
    ann.latest_revision = rev
    return rev


def create(session: Session, user: User, data: Mapping[str, Any], *, today: date) -> Announcement:
    """Create a draft from raw input."""
    _require(user, EDITORS, N_("只有编辑或管理员可以新建公告"))
    content = parse_content(session, data, today=today)
    ann = Announcement(status=Status.DRAFT, created_by_id=user.id)
    session.add(ann)
    session.flush()
    rev = _new_revision(session, ann, content, user)
    audit.record(session, user, "announcement.create", ann, revision=rev.number, title=rev.title)
    return ann


def update(
    session: Session, user: User, ann: Announcement, data: Mapping[str, Any], *, today: date
) -> Revision:
    """Save an edit as a new revision; an approved announcement goes back to draft for review.

    Returns the latest revision (unchanged when nothing changed).
    """
    _require(user, EDITORS, N_("只有编辑或管理员可以修改公告"))
    if ann.status is Status.IN_REVIEW:
        raise WorkflowError(N_("公告正在审核中，审核完成（或被退回）后才能修改"))
    if ann.status is Status.WITHDRAWN:
        raise WorkflowError(N_("公告已撤回，不能再修改"))
    content = parse_content(session, data, today=today)
    if content == Content.of(ann.current):
        return ann.current
    rev = _new_revision(session, ann, content, user)
    previous = ann.status
    ann.status = Status.DRAFT
    audit.record(
        session, user, "announcement.edit", ann, revision=rev.number, previous_status=previous.value
    )
    return rev


def submit(session: Session, user: User, ann: Announcement) -> None:
    _require(user, EDITORS, N_("只有编辑或管理员可以提交审核"))
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
    own = user.id in {ann.current.author_id, ann.submitted_by_id}
    return not own or bool(get_setting(session, SELF_APPROVAL_SETTING, False))


def approve(session: Session, user: User, ann: Announcement, comment: str = "") -> None:
    """Pin the latest revision as the one that goes out."""
    _require(user, REVIEWERS, N_("只有审核员或管理员可以审核"))
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
    ann.reviewed_by_id, ann.reviewed_at = user.id, utcnow()
    share.ensure_token(ann)  # the share page exists from the first approval on
    audit.record(
        session, user, "announcement.approve", ann, revision=ann.current.number, comment=clean
    )


def reject(session: Session, user: User, ann: Announcement, comment: str) -> None:
    """Send the announcement back to draft with the reviewer's comment (required)."""
    _require(user, REVIEWERS, N_("只有审核员或管理员可以审核"))
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
    ann.reviewed_by_id, ann.reviewed_at = user.id, utcnow()
    audit.record(
        session, user, "announcement.reject", ann, revision=ann.current.number, comment=clean
    )


def withdraw(session: Session, user: User, ann: Announcement, reason: str = "") -> None:
    """Stop the announcement everywhere from now on."""
    _require(user, WITHDRAWERS, N_("没有撤回公告的权限"))
    if ann.status is Status.WITHDRAWN:
        raise WorkflowError(N_("公告已经撤回"))
    errors = Errors()
    clean = clean_text(
        errors, "reason", reason, label=N_("撤回原因"), max_len=2000, required=False, multiline=True
    )
    errors.raise_if_any()
    previous = ann.status
    ann.status = Status.WITHDRAWN
    ann.withdrawn_at = utcnow()
    audit.record(
        session, user, "announcement.withdraw", ann, previous_status=previous.value, reason=clean
    )


def get(session: Session, announcement_id: int) -> Announcement:
    ann = session.get(Announcement, announcement_id)
    if ann is None:
        raise NotFound(N_("公告 {id} 不存在"), id=announcement_id)
    return ann


def revision(session: Session, ann: Announcement, number: int) -> Revision:
    rev = session.scalar(
        select(Revision).where(Revision.announcement_id == ann.id, Revision.number == number)
    )
    if rev is None:
        raise NotFound(N_("第 {n} 版不存在"), n=number)
    return rev


def live_filter():  # type: ignore[no-untyped-def]
    """SQL condition: announcements whose approved revision goes out (not withdrawn)."""
    return (Announcement.approved_revision_id.is_not(None)) & (
        Announcement.status != Status.WITHDRAWN
    )


def going_out_on(session: Session, day: date) -> list[Announcement]:
    """Approved, not withdrawn, with the campaign window covering ``day``; urgent first."""
    stmt = (
        select(Announcement)
        .join(Revision, Revision.id == Announcement.approved_revision_id)
        .where(live_filter(), Revision.start_date <= day, Revision.end_date >= day)
        .order_by(Revision.priority.desc(), Announcement.id)
    )
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
) -> Select[Announcement]:
    """A query for the announcement list, newest first."""
    stmt = select(Announcement).join(Revision, Revision.id == Announcement.latest_revision_id)
    if status in {"draft", "in_review", "withdrawn"}:
        stmt = stmt.where(Announcement.status == Status(status))
    elif status in {"approved", "scheduled", "active", "finished"}:
        pinned = aliased(Revision)
        stmt = stmt.join(pinned, pinned.id == Announcement.approved_revision_id).where(
            live_filter()
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
            from cms.services.areas import ancestor_ids, descendant_ids

            ids = descendant_ids(session, [area]) | set(ancestor_ids(area))
            stmt = stmt.where(
                select(revision_area.c.area_id)
                .where(revision_area.c.revision_id == Revision.id, revision_area.c.area_id.in_(ids))
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
    return stmt.order_by(Announcement.updated_at.desc(), Announcement.id.desc())


DIFF_FIELDS = [
    ("title", N_("标题")),
    ("body", N_("正文")),
    ("spoken_text", N_("播音稿")),
    ("topic", N_("主题")),
    ("priority", N_("优先级")),
    ("areas", N_("目标区域")),
    ("channels", N_("发布渠道")),
    ("window", N_("播出期")),
    ("repeats", N_("重复次数")),
    ("chat_post_time", N_("群聊发送时间")),
    ("voice", N_("声音")),
    ("rate", N_("语速")),
]


def _field_text(rev: Revision, name: str) -> str:
    match name:
        case "topic":
            return rev.topic.name if rev.topic else ""
        case "priority":
            return rev.priority.value
        case "areas":
            return "、".join(a.name for a in rev.areas)
        case "channels":
            return "、".join(rev.channels)
        case "window":
            return f"{rev.start_date} – {rev.end_date}"
        case "chat_post_time":
            return rev.chat_post_time.strftime("%H:%M") if rev.chat_post_time else ""
        case _:
            value = getattr(rev, name)
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
    for name, label in DIFF_FIELDS:
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
    """Whether a revision aimed at its target areas reaches ``area`` (targets include descendants)."""
    return any(area.path.startswith(target.path) for target in rev.areas)


def plan_for_day(session: Session, day: date) -> list[tuple[Any, list[Announcement]]]:
    """For each active outlet, the announcements it plays on ``day`` (urgent first)."""
    from cms.models import Outlet

    going = [a for a in going_out_on(session, day) if a.approved.to_loudspeaker]
    outlets = session.scalars(
        select(Outlet).where(Outlet.active).order_by(Outlet.area_id, Outlet.id)
    )
    return [(o, [a for a in going if reaches(a.approved, o.area)]) for o in outlets]
