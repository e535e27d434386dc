"""Reach: which loudspeakers, chats and Official Accounts a notice reaches, and when.

The one rule (:func:`cms.tree.overlap`): an outlet or a bound chat reaches a
notice when its area and one of the notice's targets overlap in the area tree. The
editor's preview, the review page, the refusal at submission, the notice's own page and
the scheduler (through :func:`cms.services.announcements.reaches`) all read it here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from cms.channels import PlatformLabels
from cms.models import (
    Airtime,
    Announcement,
    Area,
    ArticleState,
    ChatGroup,
    Delivery,
    DeliveryState,
    JobState,
    Outlet,
    Program,
    PublisherAccount,
    PublisherArticle,
    Revision,
    Status,
)
from cms.services import airtime
from cms.services.errors import N_, Message, ValidationError
from cms.services.scope import Scope
from cms.tree import narrower, overlaps, paths_overlap

T = TypeVar("T")

# How far ahead the first play is looked for (a campaign may start far in the future).
LOOKAHEAD_DAYS = 366
# How many coming plays the notice's page lists.
NEXT_PLAYS = 6

# How the preview names each installed platform's chats (read from the plugins when used).
PLATFORM_LABELS = PlatformLabels(reach=True)

NOTHING_REACHED = N_(
    "所选区域没有可用于所选渠道的大喇叭或群聊：这条公告发不出去。"
    "请换目标区域，或先在“广播点”里添加大喇叭、在“群聊”里绑定群"
)


@dataclass(frozen=True)
class Plan:
    """What decides a notice's reach: its targets, channels, window and post time."""

    areas: Sequence[Area]
    to_loudspeaker: bool
    to_chats: bool
    start: date
    end: date
    chat_post_time: time | None
    # When it is on the air within the window (cms.services.airtime): the last day's end
    # and the parts of the day.
    end_time: time | None = None
    airtime: str = Airtime.ALL.value

    @property
    def start_date(self) -> date:
        return self.start

    @property
    def end_date(self) -> date:
        return self.end

    @classmethod
    def of(cls, rev: Revision) -> Plan:
        return cls(
            areas=list(rev.areas),
            to_loudspeaker=rev.to_loudspeaker,
            to_chats=rev.to_chats,
            start=rev.start_date,
            end=rev.end_date,
            chat_post_time=rev.chat_post_time,
            end_time=rev.end_time,
            airtime=str(rev.airtime or Airtime.ALL.value),
        )


@dataclass(frozen=True)
class OutletReach:
    outlet: Outlet
    slots: list[str]
    first_play: datetime | None  # UTC; None: no slot left in the window
    part: list[Area]  # the narrower targets it plays the notice for ("（三组）")


@dataclass(frozen=True)
class ChatReach:
    chat: ChatGroup
    post_at: datetime | None  # UTC; None: no post time set
    part: list[Area]


@dataclass
class Reach:
    outlets: list[OutletReach] = field(default_factory=list)
    chats: list[ChatReach] = field(default_factory=list)
    accounts: list[PublisherAccount] = field(default_factory=list)

    @property
    def nothing(self) -> bool:
        """No outlet with a slot, no chat and no Official Account: the notice goes nowhere."""
        return not (any(o.slots for o in self.outlets) or self.chats or self.accounts)

    @property
    def first(self) -> OutletReach | None:
        """The outlet that plays the notice first."""
        playing = [o for o in self.outlets if o.first_play is not None]
        return min(playing, key=lambda o: (o.first_play, o.outlet.id), default=None)


def _at(day: date, when: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, when, tzinfo=tz).astimezone(UTC)


def first_play(
    outlet: Outlet,
    start: date,
    end: date,
    now: datetime,
    tz: ZoneInfo,
    rule: airtime.OnAir | None = None,
) -> datetime | None:
    """The first slot of ``outlet`` in the window that begins at or after ``now``."""
    return next(iter(plays(outlet, start, end, now, tz, limit=1, rule=rule)), None)


def plays(
    outlet: Outlet,
    start: date,
    end: date,
    now: datetime,
    tz: ZoneInfo,
    *,
    limit: int,
    rule: airtime.OnAir | None = None,
) -> list[datetime]:
    """Up to ``limit`` slot starts of ``outlet`` in the window, from ``now`` on (with
    ``rule``, only the slots its airtime and last day's end allow)."""
    if not outlet.slots:
        return []
    out: list[datetime] = []
    day = max(start, now.astimezone(tz).date())
    last = min(end, day + timedelta(days=LOOKAHEAD_DAYS))
    while day <= last and len(out) < limit:
        for slot in outlet.slots:
            at = _at(day, slot.at, tz)
            if at >= now and (rule is None or airtime.plays(rule, day, slot.at)):
                out.append(at)
                if len(out) >= limit:
                    break
        day += timedelta(days=1)
    return out


def post_time(plan: Plan, now: datetime, tz: ZoneInfo) -> datetime | None:
    """When the chats get the notice: the post time on its first day, or at once if past."""
    if plan.chat_post_time is None:
        return None
    return max(_at(plan.start, plan.chat_post_time, tz), now)


def of_plan(session: Session, plan: Plan, now: datetime, tz: ZoneInfo) -> Reach:
    """Every outlet, chat and Official Account the plan reaches, outlets by first play."""
    return of_plans(session, [plan], now, tz)[0]


def of_plans(session: Session, plans: Sequence[Plan], now: datetime, tz: ZoneInfo) -> list[Reach]:
    """:func:`of_plan` for many plans (a page of notices): the outlets, chats and accounts
    near any of them are read once, in three queries, whatever the number of plans."""
    reaches = [Reach() for _ in plans]
    targets = [p.areas for p in plans if p.areas]
    if not targets:
        return reaches
    # Only the areas that overlap a target are read (a county has hundreds of outlets).
    near = select(Area.id).where(
        or_(*(overlaps(t) for t in {t.id: t for areas in targets for t in areas}.values()))
    )

    def active_near(model: type[T], *also: Any) -> list[T]:
        """The active rows of ``model`` (outlets, chats, accounts) in the areas near a target."""
        column: Any = model
        return list(
            session.scalars(
                select(model)
                .where(column.active, column.area_id.in_(near))
                .order_by(column.id)
                .options(selectinload(column.area), *also)
            )
        )

    loud = any(p.to_loudspeaker and p.areas for p in plans)
    outlets = active_near(Outlet, selectinload(Outlet.slots)) if loud else []
    to_chats = any(p.to_chats and p.areas for p in plans)
    chats = active_near(ChatGroup) if to_chats else []
    accounts = active_near(PublisherAccount) if to_chats else []
    far = datetime.max.replace(tzinfo=now.tzinfo)
    for plan, reach in zip(plans, reaches, strict=True):
        if not plan.areas:
            continue
        paths = tuple(t.path for t in plan.areas)
        if plan.to_loudspeaker:
            parts = airtime.parts(plan.airtime)
            for outlet in outlets:
                if not paths_overlap(outlet.area.path, paths):
                    continue
                reach.outlets.append(
                    OutletReach(
                        outlet=outlet,
                        slots=[s.label for s in outlet.slots if airtime.part_of(s.at) in parts],
                        first_play=first_play(outlet, plan.start, plan.end, now, tz, plan),
                        part=narrower(plan.areas, outlet.area),
                    )
                )
            reach.outlets.sort(key=lambda o: (o.first_play or far, o.outlet.id))
        if plan.to_chats:
            at = post_time(plan, now, tz)
            reach.chats = [
                ChatReach(chat, at, narrower(plan.areas, chat.area))
                for chat in chats
                if paths_overlap(chat.area.path, paths)
            ]
            reach.accounts = [a for a in accounts if paths_overlap(a.area.path, paths)]
    return reaches


def require_reach(session: Session, ann: Announcement, now: datetime, tz: ZoneInfo) -> None:
    """Refuse to submit a notice whose channels reach nothing (a field error on the targets).

    A county campaign never goes out itself (its townships' copies do): not checked.
    """
    if ann.campaign:
        return
    if of_plan(session, Plan.of(ann.current), now, tz).nothing:
        raise ValidationError({"area_ids": Message(NOTHING_REACHED)})


# -- after approval ------------------------------------------------------------------------


@dataclass(frozen=True)
class Play:
    outlet: Outlet
    at: datetime  # UTC
    part: list[Area]
    state: str  # planned | built | failed | missed


@dataclass(frozen=True)
class Post:
    chat: ChatGroup
    state: DeliveryState | None  # None: no delivery row yet (created within a tick)
    due_at: datetime | None
    sent_at: datetime | None
    reason: str | None  # a stored message (failed, uncertain, cancelled)
    attempts: int


@dataclass(frozen=True)
class ArticleLine:
    account: PublisherAccount
    state: ArticleState | None
    reason: str | None
    url: str | None
    article_id: int | None


@dataclass(frozen=True)
class StatusLine:
    """The honest status line of a notice: what it is, and what comes next."""

    key: str  # a STATUS key: draft, in_review, approved, active, finished, withdrawn, campaign
    label: str  # a msgid
    params: dict[str, str]


@dataclass
class Outcome:
    """What happens to an approved notice: its next plays, its chat posts, its articles."""

    plays: list[Play]
    posts: list[Post]
    articles: list[ArticleLine]
    first_play: datetime | None
    last_play: datetime | None
    status: StatusLine


def _last_play(reach: Reach, plan: Plan, tz: ZoneInfo) -> datetime | None:
    """The last slot start on the notice's last day that its airtime allows."""
    lasts = [
        _at(plan.end, s.at, tz)
        for o in reach.outlets
        for s in o.outlet.slots
        if airtime.plays(plan, plan.end, s.at)
    ]
    return max(lasts, default=None)


def outcome(session: Session, ann: Announcement, now: datetime, tz: ZoneInfo) -> Outcome | None:
    """The approved notice's coming plays, chat posts and articles, and its status line."""
    rev = ann.approved_revision
    if ann.campaign:
        return Outcome([], [], [], None, None, status_line(session, ann, now, tz))
    if rev is None:
        return None
    plan = Plan.of(rev)
    reach = of_plan(session, plan, now, tz)
    plays_: list[Play] = []
    states = _program_states(session, reach, plan, now, tz)
    for o in reach.outlets:
        for at in plays(o.outlet, plan.start, plan.end, now, tz, limit=NEXT_PLAYS, rule=plan):
            state = states.get((o.outlet.id, at), "planned")
            plays_.append(Play(o.outlet, at, o.part, state))
    plays_.sort(key=lambda p: (p.at, p.outlet.id))
    deliveries = {
        d.chat_group_id: d
        for d in session.scalars(select(Delivery).where(Delivery.revision_id == rev.id))
    }
    posts = []
    for c in reach.chats:
        d = deliveries.pop(c.chat.id, None)
        posts.append(_post(c.chat, d, c.post_at))
    for d in deliveries.values():  # a chat since switched off or moved: its row still tells
        posts.append(_post(d.chat_group, d, d.due_at))
    articles = {
        a.account_id: a
        for a in session.scalars(
            select(PublisherArticle).where(PublisherArticle.revision_id == rev.id)
        )
    }
    lines = []
    for account in reach.accounts:
        a = articles.pop(account.id, None)
        lines.append(_article(account, a))
    for a in articles.values():
        lines.append(_article(a.account, a))
    first = reach.first
    return Outcome(
        plays=plays_[:NEXT_PLAYS],
        posts=posts,
        articles=lines,
        first_play=first.first_play if first else None,
        last_play=_last_play(reach, plan, tz),
        status=status_line(session, ann, now, tz, reach=reach),
    )


def _post(chat: ChatGroup, d: Delivery | None, due: datetime | None) -> Post:
    if d is None:
        return Post(chat, None, due, None, None, 0)
    return Post(chat, d.state, d.due_at, d.sent_at, d.last_error, d.attempts)


def _article(account: PublisherAccount, a: PublisherArticle | None) -> ArticleLine:
    if a is None:
        return ArticleLine(account, None, None, None, None)
    return ArticleLine(account, a.state, a.last_error, a.article_url, a.id)


def _program_states(
    session: Session, reach: Reach, plan: Plan, now: datetime, tz: ZoneInfo
) -> dict[tuple[int, datetime], str]:
    """Built, failed or missed programs of the reached outlets, by (outlet, slot start)."""
    ids = [o.outlet.id for o in reach.outlets]
    if not ids:
        return {}
    out: dict[tuple[int, datetime], str] = {}
    for program in session.scalars(
        select(Program).where(
            Program.outlet_id.in_(ids),
            Program.day >= max(plan.start, now.astimezone(tz).date()),
            Program.day <= plan.end,
        )
    ):
        at = _at(program.day, program.slot.at, tz)
        if program.missed:
            out[(program.outlet_id, at)] = "missed"
        elif program.state is JobState.FAILED:
            out[(program.outlet_id, at)] = "failed"
        elif program.state is JobState.DONE:
            out[(program.outlet_id, at)] = "built"
    return out


def status_lines(
    session: Session, anns: Iterable[Announcement], now: datetime, tz: ZoneInfo
) -> dict[int, StatusLine]:
    """:func:`status_line` of each announcement (by id), their reaches read together."""
    anns = list(anns)
    needing = [
        a
        for a in anns
        if a.status is Status.APPROVED and a.approved_revision is not None and not a.campaign
    ]
    reaches = of_plans(session, [Plan.of(a.approved_revision) for a in needing], now, tz)  # type: ignore[arg-type]
    reach_of = {a.id: r for a, r in zip(needing, reaches, strict=True)}
    return {a.id: status_line(session, a, now, tz, reach=reach_of.get(a.id)) for a in anns}


def status_line(
    session: Session,
    ann: Announcement,
    now: datetime,
    tz: ZoneInfo,
    *,
    reach: Reach | None = None,
) -> StatusLine:
    """ "已批准 · 首播 07:30 石桥村村委会大喇叭" before the first play, 播出中 only between the
    first and the last play, "县级活动 · 待乡镇采用" for a county campaign."""
    if ann.status is not Status.APPROVED or ann.approved_revision is None:
        return StatusLine(ann.status.value, _STATUS[ann.status.value], {})
    if ann.campaign:
        return StatusLine("campaign", N_("县级活动 · 待乡镇采用"), {})
    rev = ann.approved_revision
    plan = Plan.of(rev)
    reach = reach if reach is not None else of_plan(session, plan, now, tz)
    today = now.astimezone(tz).date()
    if today > plan.end:
        return StatusLine("finished", N_("已结束"), {})
    first = reach.first
    last = _last_play(reach, plan, tz)
    if first is not None and first.first_play is not None:
        local = first.first_play.astimezone(tz)
        started = _played_before(reach, plan, now, tz)
        if not started:
            when = (
                local.strftime("%H:%M") if local.date() == today else local.strftime("%m-%d %H:%M")
            )
            return StatusLine(
                "approved",
                N_("已批准 · 首播 {when} {outlet}"),
                {"when": when, "outlet": first.outlet.name},
            )
    if last is not None and _played_before(reach, plan, now, tz) and now <= last:
        return StatusLine("active", N_("播出中"), {})
    if reach.chats or reach.accounts:
        at = post_time(plan, now, tz) if reach.chats else None
        if at is not None and now < at:
            local = at.astimezone(tz)
            when = (
                local.strftime("%H:%M") if local.date() == today else local.strftime("%m-%d %H:%M")
            )
            return StatusLine("approved", N_("已批准 · {when} 发到群聊"), {"when": when})
        if not reach.outlets:
            return _posts_line(session, rev)
    if last is not None and now > last:
        return StatusLine("finished", N_("已结束"), {})
    return StatusLine("approved", N_("已批准 · 没有可播出的大喇叭时段"), {})


def _posts_line(session: Session, rev: Revision) -> StatusLine:
    """After the post time of a notice for chats only: what became of its posts."""
    states = set(session.scalars(select(Delivery.state).where(Delivery.revision_id == rev.id)))
    if states & {DeliveryState.FAILED, DeliveryState.UNCERTAIN}:
        return StatusLine("failed", N_("已批准 · 群聊发送有问题"), {})
    if states == {DeliveryState.SENT}:
        return StatusLine("approved", N_("已批准 · 已发到群聊"), {})
    if DeliveryState.SENT in states:
        return StatusLine("approved", N_("已批准 · 部分群聊已发送"), {})
    return StatusLine("approved", N_("已批准 · 正在发到群聊"), {})


def _played_before(reach: Reach, plan: Plan, now: datetime, tz: ZoneInfo) -> bool:
    """Whether a slot of a reached outlet in the window has begun by ``now``."""
    today = now.astimezone(tz).date()
    for o in reach.outlets:
        if not o.outlet.slots or today < plan.start:
            continue
        if today > plan.start:
            return True
        if any(
            _at(today, s.at, tz) <= now and airtime.plays(plan, today, s.at) for s in o.outlet.slots
        ):
            return True
    return False


_STATUS = {
    "draft": N_("草稿"),
    "in_review": N_("待审核"),
    "approved": N_("已通过"),
    "withdrawn": N_("已撤回"),
}


# -- what went wrong -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """A chat post or an Official Account article that failed, is uncertain, or is retrying."""

    at: datetime  # UTC, when it last changed
    kind: str  # delivery | article
    state: str  # failed | uncertain | retrying
    label: str  # a msgid
    title: str
    where: str  # the chat's title, or the account's township
    platform: str
    reason: str | None  # a stored message
    announcement_id: int
    object_id: int


PROBLEM_LABELS = {
    "failed": N_("群聊发送失败"),
    "uncertain": N_("群聊结果不确定"),
    "retrying": N_("群聊正在重试"),
    # An article's: "{noun}" is its platform's noun (cms.publishers.noun).
    "article_failed": N_("{noun}草稿失败"),
    "article_uncertain": N_("{noun}结果不确定"),
    "publish_failed": N_("{noun}发布失败"),
}


def problems(session: Session, scope: Scope | None = None, limit: int = 50) -> list[Problem]:
    """Failed, uncertain and retrying chat posts and articles, newest first (the scope's).

    A post already named by an open alert (the reconciliation's "delivery_gap") is left to
    that alert, so nothing is listed twice.
    """
    from cms.models import Alert

    alerted = select(Alert.object_id).where(
        Alert.object_type == "delivery", Alert.resolved_at.is_(None)
    )
    stmt = (
        select(Delivery)
        .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
        .where(
            or_(
                Delivery.state.in_([DeliveryState.FAILED, DeliveryState.UNCERTAIN]),
                (Delivery.state == DeliveryState.PENDING) & Delivery.last_error.is_not(None),
            ),
            Delivery.id.not_in(alerted),
        )
        .order_by(Delivery.updated_at.desc())
        .limit(limit)
    )
    if scope is not None:
        stmt = stmt.where(scope.chats())
    out: list[Problem] = []
    for d in session.scalars(stmt):
        state = "retrying" if d.state is DeliveryState.PENDING else d.state.value
        out.append(
            Problem(
                at=aware(d.updated_at),
                kind="delivery",
                state=state,
                label=PROBLEM_LABELS[state],
                title=d.revision.title,
                where=d.chat_group.title or d.chat_group.chat_id,
                platform=d.chat_group.platform,
                reason=d.last_error,
                announcement_id=d.revision.announcement_id,
                object_id=d.id,
            )
        )
    articles = (
        select(PublisherArticle)
        .join(PublisherAccount, PublisherAccount.id == PublisherArticle.account_id)
        .where(
            or_(
                PublisherArticle.state.in_([ArticleState.FAILED, ArticleState.UNCERTAIN]),
                (PublisherArticle.state == ArticleState.DRAFTED)
                & PublisherArticle.last_error.is_not(None),
            )
        )
        .order_by(PublisherArticle.updated_at.desc())
        .limit(limit)
    )
    if scope is not None and scope.path is not None:
        articles = articles.where(
            PublisherAccount.area_id.in_(select(Area.id).where(Area.path.startswith(scope.path)))
        )
    for a in session.scalars(articles):
        key = {
            ArticleState.FAILED: "article_failed",
            ArticleState.UNCERTAIN: "article_uncertain",
        }.get(a.state, "publish_failed")
        out.append(
            Problem(
                at=aware(a.updated_at),
                kind="article",
                state="uncertain" if a.state is ArticleState.UNCERTAIN else "failed",
                label=PROBLEM_LABELS[key],
                title=a.revision.title,
                where=a.account.area.name,
                platform=a.account.platform,
                reason=a.last_error,
                announcement_id=a.announcement_id,
                object_id=a.id,
            )
        )
    out.sort(key=lambda p: p.at, reverse=True)
    return out[:limit]


def aware(when: datetime) -> datetime:
    """Stored datetimes are UTC; SQLite hands them back naive."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
