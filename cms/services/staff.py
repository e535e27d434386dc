"""The township's staff channel: officers told in their own work group what waits for them.

A township binds one of its work robots (WeCom, DingTalk or Feishu, see
:mod:`cms.services.chats`) as its staff channel and chooses what goes there:

- ``review``: "待审核 N 条" with links when notices are submitted, at most one post every
  :data:`REVIEW_EVERY` (submissions in between are collected into the next one);
- ``returned``: a notice sent back for changes, addressed to its author;
- ``programs``: missed and unconfirmed programs, as the alerts (and escalation) define them;
- ``failures``: chat posts and Official Account articles that failed.

:func:`collect` turns new events into :class:`~cms.models.StaffPost` rows (the scheduler
ticks it every minute and sends the rows through the robot's channel). Each event is read
once: the channel keeps marks of how far it has read, starting at the moment of binding.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from cms import publishers
from cms.clock import clock_of
from cms.models import (
    Alert,
    Announcement,
    Area,
    AreaKind,
    ArticleState,
    AuditLog,
    ChatGroup,
    Delivery,
    DeliveryState,
    PublisherAccount,
    PublisherArticle,
    Role,
    StaffChannel,
    StaffPost,
    Status,
    User,
)
from cms.services import audit
from cms.services.chats import ROBOT_PLATFORMS
from cms.services.errors import N_, Errors, Message, PermissionDenied
from cms.services.scope import Scope

__all__ = ["EVENTS", "REVIEW_EVERY", "bind", "channel_of", "collect", "robots_of"]

EVENTS = {
    "review": N_("有公告提交审核（待审核 N 条，最多每 10 分钟一条）"),
    "returned": N_("公告被退回修改（告诉作者）"),
    "programs": N_("节目漏播、未确认播放"),
    # "{noun}": every installed publisher's noun (cms.publishers.noun).
    "failures": N_("群聊发送失败、{noun}文章失败"),
}
REVIEW_EVERY = timedelta(minutes=10)
PROGRAM_ALERTS = (
    "program_missed",
    "program_failed",
    "program_incomplete",
    "program_unconfirmed",
    "urgent_late",
)
MAX_LISTED = 10
TITLE = "大喇叭"


def _scope(area: Area) -> Scope:
    return Scope(area.id, area.path)


def robots_of(session: Session, area: Area) -> list[ChatGroup]:
    """The township's active work robots (bound to it or below it)."""
    rows = session.scalars(
        select(ChatGroup)
        .join(Area, Area.id == ChatGroup.area_id)
        .where(
            ChatGroup.active,
            ChatGroup.platform.in_(list(ROBOT_PLATFORMS)),
            Area.path.startswith(area.path),
        )
        .order_by(ChatGroup.id)
    )
    return list(rows)


def channel_of(session: Session, area: Area) -> StaffChannel | None:
    return session.scalar(select(StaffChannel).where(StaffChannel.area_id == area.id))


def bind(
    session: Session,
    user: User,
    area: Area,
    chat_group_id: int | None,
    events: Sequence[str],
    now: datetime,
) -> StaffChannel | None:
    """Bind (or change, or with ``chat_group_id`` None remove) the township's staff channel.

    Raises:
        PermissionDenied: not an admin of this township.
        ValidationError: not a township, or a robot that is not the township's.
    """
    if user.role is not Role.ADMIN or not Scope.of(user).contains(area):
        raise PermissionDenied(N_("只有本乡镇的管理员可以设置工作群"))
    errors = Errors()
    if area.kind is not AreaKind.TOWNSHIP:
        errors.add("area_id", N_("工作群按乡镇设置"))
    chosen = [e for e in events if e in EVENTS]
    robot = None
    if chat_group_id is not None:
        robot = next((c for c in robots_of(session, area) if c.id == chat_group_id), None)
        if robot is None:
            errors.add("chat_group_id", N_("请选择本乡镇已绑定的企业微信、钉钉或飞书机器人"))
    errors.raise_if_any()
    channel = channel_of(session, area)
    if robot is None:
        if channel is not None:
            session.delete(channel)
            audit.record(session, user, "staff_channel.remove", area)
        return None
    if channel is None:
        channel = StaffChannel(
            area_id=area.id,
            chat_group_id=robot.id,
            events=chosen,
            audit_mark=session.scalar(select(func.max(AuditLog.id))) or 0,
            alert_mark=session.scalar(select(func.max(Alert.id))) or 0,
            failure_mark=clock_of(session).now(),
        )
        session.add(channel)
    else:
        channel.chat_group_id, channel.events = robot.id, chosen
    session.flush()
    audit.record(session, user, "staff_channel.save", area, chat_group_id=robot.id, events=chosen)
    return channel


# -- collecting events into posts --------------------------------------------------------------


def _post(session: Session, channel: StaffChannel, kind: str, lines: list[str]) -> None:
    session.add(StaffPost(staff_channel_id=channel.id, kind=kind, text="\n".join(lines)))


def _link(base_url: str, announcement_id: int) -> str:
    return f"{base_url}/announcements/{announcement_id}"


def _listed(lines: list[str]) -> list[str]:
    if len(lines) <= MAX_LISTED:
        return lines
    return [*lines[:MAX_LISTED], f"……另有 {len(lines) - MAX_LISTED} 条"]


_Logged = TypeVar("_Logged", AuditLog, Alert)


def _after_mark(
    session: Session, model: type[_Logged], mark: int, *where: ColumnElement[bool]
) -> tuple[Sequence[_Logged], int]:
    """The rows of ``model`` after ``mark`` that match ``where``, in order, and the new mark.

    The new mark is read first: a row committed meanwhile is read next time.
    """
    new_mark = session.scalar(select(func.max(model.id))) or mark
    rows = session.scalars(
        select(model).where(model.id > mark, model.id <= new_mark, *where).order_by(model.id)
    ).all()
    return rows, new_mark


def _audit_events(session: Session, channel: StaffChannel, scope: Scope, base_url: str) -> None:
    rows, mark = _after_mark(
        session,
        AuditLog,
        channel.audit_mark,
        AuditLog.action.in_(["announcement.submit", "announcement.reject"]),
        AuditLog.object_type == "announcement",
    )
    returned: list[str] = []
    for entry in rows:
        ann = session.get(Announcement, entry.object_id) if entry.object_id else None
        if ann is None or not scope.contains(ann.area):
            continue
        if entry.action == "announcement.submit":
            channel.review_due = channel.review_due or "review" in channel.events
        elif "returned" in channel.events:
            author = ann.current.author
            comment = str(entry.detail.get("comment") or "").strip()
            returned += [
                f"{author.display_name}：您的《{ann.current.title}》被退回修改"
                + (f"，审核意见：{comment}" if comment else ""),
                _link(base_url, ann.id),
            ]
    if returned:
        _post(session, channel, "returned", ["【退回修改】", *returned])
    channel.audit_mark = max(channel.audit_mark, mark)


def _review(
    session: Session, channel: StaffChannel, scope: Scope, now: datetime, base_url: str
) -> None:
    if not channel.review_due:
        return
    if channel.review_posted_at is not None and now - channel.review_posted_at < REVIEW_EVERY:
        return  # collected into the next post
    waiting = session.scalars(
        select(Announcement)
        .where(Announcement.status == Status.IN_REVIEW, scope.announcements())
        .order_by(Announcement.updated_at, Announcement.id)
    ).all()
    channel.review_due = False
    if not waiting:
        return
    lines = [f"《{a.current.title}》 {_link(base_url, a.id)}" for a in waiting]
    _post(
        session,
        channel,
        "review",
        [f"【待审核 {len(waiting)} 条】", *_listed(lines), f"{base_url}/announcements/review"],
    )
    channel.review_posted_at = now


def _alerts(session: Session, channel: StaffChannel, scope: Scope) -> None:
    rows, mark = _after_mark(
        session, Alert, channel.alert_mark, Alert.kind.in_(PROGRAM_ALERTS), scope.alerts()
    )
    channel.alert_mark = max(channel.alert_mark, mark)
    if rows and "programs" in channel.events:
        # Work groups speak Chinese: the stored message is rendered from its Chinese msgid.
        lines = [Message.loads(a.message).render() for a in rows]
        _post(session, channel, "programs", ["【节目提醒】", *_listed(lines)])


def _failures(session: Session, channel: StaffChannel, scope: Scope, base_url: str) -> None:
    # Rows stamp ``updated_at`` with the writing session's clock (cms.clock): the mark is
    # read on the same clock.
    now = clock_of(session).now()
    since = channel.failure_mark or now
    channel.failure_mark = now
    if "failures" not in channel.events:
        return
    lines: list[str] = []
    deliveries = session.scalars(
        select(Delivery)
        .where(
            Delivery.state.in_([DeliveryState.FAILED, DeliveryState.UNCERTAIN]),
            Delivery.updated_at > since,
            Delivery.updated_at <= now,
            scope.deliveries(),
        )
        .order_by(Delivery.id)
    ).all()
    for d in deliveries:
        state = "发送失败" if d.state is DeliveryState.FAILED else "不确定是否送达"
        reason = Message.loads(d.last_error).render() if d.last_error else ""
        lines.append(
            f"群聊“{d.chat_group.title or d.chat_group.chat_id}”：《{d.revision.title}》{state}"
            + (f"（{reason}）" if reason else "")
        )
    articles = session.scalars(
        select(PublisherArticle)
        .join(PublisherAccount, PublisherAccount.id == PublisherArticle.account_id)
        .join(Area, Area.id == PublisherAccount.area_id)
        .where(
            PublisherArticle.state.in_([ArticleState.FAILED, ArticleState.UNCERTAIN]),
            PublisherArticle.updated_at > since,
            PublisherArticle.updated_at <= now,
            Area.path.startswith(scope.path or ""),
        )
        .order_by(PublisherArticle.id)
    ).all()
    for a in articles:
        state = "失败" if a.state is ArticleState.FAILED else "不确定是否成功"
        lines.append(
            f"{publishers.noun(a.account.platform)}文章《{a.revision.title}》{state} "
            f"{_link(base_url, a.announcement_id)}"
        )
    if lines:
        _post(session, channel, "failures", ["【发送失败】", *_listed(lines)])


def collect(session: Session, now: datetime, base_url: str) -> int:
    """Turn new events into posts for every staff channel; returns how many posts were made."""
    before = session.scalar(select(func.count(StaffPost.id))) or 0
    for channel in session.scalars(select(StaffChannel).order_by(StaffChannel.id)).all():
        if not channel.chat_group.active:
            continue
        scope = _scope(channel.area)
        _audit_events(session, channel, scope, base_url)
        _review(session, channel, scope, now, base_url)
        _alerts(session, channel, scope)
        _failures(session, channel, scope, base_url)
    session.flush()
    return (session.scalar(select(func.count(StaffPost.id))) or 0) - before
