"""The publicity ledger (宣传台账): one month of a township's (or a county's) publicity work.

What a township reports upward each month, built from the rows instead of screenshots:

* notices that went out in the month (approved, campaign window overlapping the month,
  owned in the office), by topic and by village (a notice aimed at the township reaches
  each of its villages);
* broadcasts per outlet: programs planned (slots of the month with a program row), built,
  fetched (through the operator link or by a terminal, whole) and confirmed (已播放), and
  per box (terminal): programs fetched whole before their slot, late, in part;
* group posts per platform: sent, failed (uncertain counts as failed: nobody knows);
* share-page plays per notice; notices printed (for the notice board, handouts) and how
  often; Official Account articles published, with their links;
* break-ins (立即插播): when, which notice, outlets reached, outlets that confirmed it;
* charts: broadcasts per week (planned, built, confirmed) and reach by village.

Every total is the sum of its rows (:meth:`Ledger.check` says so, and the tests prove it).
A county's ledger has the same sections over all its townships, plus one row per township.
"""

from __future__ import annotations

import calendar
import re
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, selectinload

from cms.models import (
    Announcement,
    Area,
    AreaKind,
    ArticleState,
    AuditLog,
    BreakIn,
    BreakInOutlet,
    ChatGroup,
    Delivery,
    DeliveryState,
    DownloadEvent,
    JobState,
    Outlet,
    Program,
    PublisherAccount,
    PublisherArticle,
    Receipt,
    Revision,
    ShareDownload,
    Status,
    Terminal,
    TerminalFetch,
)
from cms.services.announcements import reaches
from cms.services.errors import N_, NotFound
from cms.services.notices import PRINT_ACTION
from cms.services.operators import AUDIO_KINDS
from cms.services.scope import Scope
from cms.services.terminals import covered, spans, status_of
from cms.tree import township_of

UNFILED = N_("未分类")
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")  # ASCII digits only ("²" is a digit to isdigit)


@dataclass
class OutletRow:
    outlet: str
    village: str
    township: str
    planned: int = 0
    built: int = 0
    fetched: int = 0
    confirmed: int = 0


@dataclass
class BoxRow:
    outlet: str
    terminal: str
    kind: str
    full: int = 0
    late: int = 0
    partial: int = 0
    none: int = 0


@dataclass
class PostRow:
    platform: str
    sent: int = 0
    failed: int = 0


@dataclass
class WeekRow:
    label: str
    first: date
    last: date
    planned: int = 0
    built: int = 0
    confirmed: int = 0


@dataclass
class BreakInRow:
    title: str
    started_at: datetime
    rule: str
    outlets: int
    played: int
    ended_at: datetime | None


@dataclass
class TownshipRow:
    township: str
    notices: int = 0
    planned: int = 0
    built: int = 0
    fetched: int = 0
    confirmed: int = 0
    posts_sent: int = 0
    breakins: int = 0


@dataclass
class Ledger:
    area: Area
    first: date
    last: date
    # title, topic (None: no topic, shown as UNFILED), dates
    notices: list[tuple[str, str | None, str]] = field(default_factory=list)
    by_topic: list[tuple[str | None, int]] = field(default_factory=list)
    by_village: list[tuple[str, str, int]] = field(default_factory=list)  # township, village, n
    outlets: list[OutletRow] = field(default_factory=list)
    boxes: list[BoxRow] = field(default_factory=list)
    posts: list[PostRow] = field(default_factory=list)
    shares: list[tuple[str, int]] = field(default_factory=list)
    prints: list[tuple[str, int]] = field(default_factory=list)  # notice, times printed
    printed: int = 0  # prints in the month, counted apart (check: the rows add up to it)
    articles: list[tuple[str, str, datetime | None]] = field(default_factory=list)
    # The same articles by publishing platform (its name, in name order): every platform
    # the area has an account on or published on this month, each with its articles.
    publishers: list[tuple[str, list[tuple[str, str, datetime | None]]]] = field(
        default_factory=list
    )
    breakins: list[BreakInRow] = field(default_factory=list)
    weeks: list[WeekRow] = field(default_factory=list)
    townships: list[TownshipRow] = field(default_factory=list)

    @property
    def month(self) -> str:
        return f"{self.first:%Y-%m}"

    @property
    def county(self) -> bool:
        return self.area.kind is AreaKind.COUNTY

    def total(self, rows: Iterable[object], name: str) -> int:
        return sum(int(getattr(r, name)) for r in rows)

    @property
    def totals(self) -> dict[str, int]:
        return {
            "notices": len(self.notices),
            "planned": self.total(self.outlets, "planned"),
            "built": self.total(self.outlets, "built"),
            "fetched": self.total(self.outlets, "fetched"),
            "confirmed": self.total(self.outlets, "confirmed"),
            "posts_sent": self.total(self.posts, "sent"),
            "posts_failed": self.total(self.posts, "failed"),
            "share_plays": sum(n for _t, n in self.shares),
            "printed_notices": len(self.prints),
            "prints": sum(n for _t, n in self.prints),
            "articles": len(self.articles),
            "breakins": len(self.breakins),
            "boxes_full": self.total(self.boxes, "full"),
        }

    def check(self) -> list[str]:
        """Totals that do not add up (none, unless the ledger was built wrongly)."""
        t = self.totals
        problems = []
        if sum(n for _t, n in self.by_topic) != t["notices"]:
            problems.append("by_topic")
        if t["prints"] != self.printed:
            problems.append("prints")
        for name in ("planned", "built", "confirmed"):
            if self.total(self.weeks, name) != t[name]:
                problems.append(f"weeks.{name}")
        if self.townships:
            for name in ("notices", "planned", "built", "fetched", "confirmed", "posts_sent"):
                if self.total(self.townships, name) != t[name]:
                    problems.append(f"townships.{name}")
            if self.total(self.townships, "breakins") != t["breakins"]:
                problems.append("townships.breakins")
        return problems


def month_of(text: str | None, today: date) -> tuple[date, date]:
    """The first and last day of ``YYYY-MM`` (this month when empty or invalid)."""
    year, month = today.year, today.month
    found = _MONTH.fullmatch(text or "")
    if found and 2000 <= int(found[1]) <= 2100 and 1 <= int(found[2]) <= 12:
        year, month = int(found[1]), int(found[2])
    return date(year, month, 1), date(year, month, calendar.monthrange(year, month)[1])


def offices(session: Session, scope: Scope) -> list[Area]:
    """The areas a user may take a ledger of: the county and townships in scope."""
    return [
        a
        for a in session.scalars(
            select(Area)
            .where(Area.kind.in_([AreaKind.COUNTY, AreaKind.TOWNSHIP]))
            .order_by(Area.path)
        )
        if scope.contains(a)
    ]


def _village_of(area: Area, by_id: dict[int, Area]) -> Area:
    node = area
    while node.kind is AreaKind.GROUP and node.parent_id in by_id:
        node = by_id[node.parent_id]
    return node


def build(
    session: Session, scope: Scope, area_id: int, first: date, last: date, tz: tzinfo
) -> Ledger:
    """The ledger of the township or county ``area_id`` for ``first``–``last``."""
    area = session.get(Area, area_id)
    if (
        area is None
        or not scope.contains(area)
        or area.kind
        not in (
            AreaKind.COUNTY,
            AreaKind.TOWNSHIP,
        )
    ):
        raise NotFound(N_("区域 {id} 不存在"), id=area_id)
    ledger = Ledger(area, first, last)
    by_id = {a.id: a for a in session.scalars(select(Area))}
    inside = [a for a in by_id.values() if a.path.startswith(area.path)]
    villages = sorted(
        (a for a in inside if a.kind is AreaKind.VILLAGE), key=lambda a: (a.path, a.sort)
    )
    start_utc = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    end_utc = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    area_ids = [a.id for a in inside]

    def town_name(a: Area | None) -> str:
        town = township_of(a)
        return town.name if town else area.name

    # -- notices ------------------------------------------------------------------------
    anns = list(
        session.scalars(
            select(Announcement)
            .join(Revision, Revision.id == Announcement.approved_revision_id)
            .where(
                Announcement.campaign.is_(False),
                Announcement.area_id.in_(area_ids),
                Announcement.status.in_([Status.APPROVED, Status.WITHDRAWN]),
                Revision.start_date <= last,
                Revision.end_date >= first,
                or_(Announcement.withdrawn_at.is_(None), Announcement.withdrawn_at >= start_utc),
            )
            .options(
                selectinload(Announcement.approved_revision).selectinload(Revision.areas),
                selectinload(Announcement.approved_revision).selectinload(Revision.topic),
            )
            .order_by(Revision.start_date, Announcement.id)
        )
    )
    topics: Counter[str | None] = Counter()
    for ann in anns:
        rev = ann.approved
        topic = rev.topic.name if rev.topic else None
        topics[topic] += 1
        ledger.notices.append((rev.title, topic, f"{rev.start_date:%m-%d}–{rev.end_date:%m-%d}"))
    ledger.by_topic = sorted(topics.items(), key=lambda kv: (-kv[1], kv[0] or ""))
    ledger.by_village = [
        (town_name(v), v.name, sum(reaches(a.approved, v) for a in anns)) for v in villages
    ]

    # -- broadcasts per outlet, per week, per box ------------------------------------------
    outlets = list(
        session.scalars(
            select(Outlet)
            .where(Outlet.area_id.in_(area_ids))
            .options(selectinload(Outlet.area))
            .order_by(Outlet.area_id, Outlet.id)
        )
    )
    outlet_ids = [o.id for o in outlets]
    programs = list(
        session.scalars(
            select(Program)
            .where(
                Program.outlet_id.in_(outlet_ids),
                Program.day >= first,
                Program.day <= last,
                Program.state != JobState.CANCELLED,
            )
            .options(selectinload(Program.slot))
        )
    )
    program_ids = [p.id for p in programs]
    confirmed = set(
        session.scalars(select(Receipt.program_id).where(Receipt.program_id.in_(program_ids)))
    )
    fetched = set(
        session.scalars(
            select(DownloadEvent.program_id).where(
                DownloadEvent.program_id.in_(program_ids), DownloadEvent.kind.in_(AUDIO_KINDS)
            )
        )
    )
    fetches: dict[tuple[int, int], list[TerminalFetch]] = defaultdict(list)
    for f in session.scalars(
        select(TerminalFetch).where(TerminalFetch.program_id.in_(program_ids))
    ):
        assert f.program_id is not None
        fetches[(f.terminal_id, f.program_id)].append(f)
    whole_by_box = {
        pid for (_t, pid), rows in fetches.items() if covered(_spans_of(rows)) >= _size(rows)
    }
    fetched |= whole_by_box
    rows_by_outlet: dict[int, OutletRow] = {}
    for o in outlets:
        village = _village_of(o.area, by_id)
        rows_by_outlet[o.id] = OutletRow(o.name, village.name, town_name(o.area))
    weeks: dict[date, WeekRow] = {}
    day = first - timedelta(days=first.weekday())
    while day <= last:
        lo, hi = max(day, first), min(day + timedelta(days=6), last)
        weeks[day] = WeekRow(f"{lo:%m-%d}–{hi:%m-%d}", lo, hi)
        day += timedelta(days=7)
    for p in programs:
        row = rows_by_outlet[p.outlet_id]
        week = weeks[p.day - timedelta(days=p.day.weekday())]
        is_built = p.state is JobState.DONE and bool(p.path)
        row.planned += 1
        week.planned += 1
        row.built += is_built
        week.built += is_built
        row.fetched += p.id in fetched
        is_confirmed = p.id in confirmed
        row.confirmed += is_confirmed
        week.confirmed += is_confirmed
    ledger.outlets = list(rows_by_outlet.values())
    ledger.weeks = list(weeks.values())
    by_outlet_programs: dict[int, list[Program]] = defaultdict(list)
    for p in programs:
        by_outlet_programs[p.outlet_id].append(p)
    for terminal in session.scalars(
        select(Terminal).where(Terminal.outlet_id.in_(outlet_ids)).order_by(Terminal.id)
    ):
        box = BoxRow(rows_by_outlet[terminal.outlet_id].outlet, terminal.name, terminal.kind.value)
        for p in by_outlet_programs[terminal.outlet_id]:
            start = datetime.combine(p.day, p.slot.at, tzinfo=tz).astimezone(UTC)
            status = status_of(fetches.get((terminal.id, p.id), []), start)
            setattr(box, status, getattr(box, status) + 1)
        ledger.boxes.append(box)

    # -- group posts per platform ------------------------------------------------------------
    posts: dict[str, PostRow] = {}
    for platform, state, count in session.execute(
        select(ChatGroup.platform, Delivery.state, func.count(Delivery.id))
        .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
        .where(
            ChatGroup.area_id.in_(area_ids),
            Delivery.due_at >= start_utc,
            Delivery.due_at < end_utc,
            Delivery.state.in_([DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.UNCERTAIN]),
        )
        .group_by(ChatGroup.platform, Delivery.state)
    ):
        post = posts.setdefault(platform, PostRow(platform))
        if state is DeliveryState.SENT:
            post.sent += count
        else:
            post.failed += count
    ledger.posts = sorted(posts.values(), key=lambda r: r.platform)

    # -- share-page plays, Official Account articles, break-ins -----------------------------
    ledger.shares = [
        (title, int(plays))
        for title, plays in session.execute(
            select(Revision.title, func.sum(ShareDownload.count))
            .join(Announcement, Announcement.id == ShareDownload.announcement_id)
            .join(Revision, Revision.id == Announcement.approved_revision_id)
            .where(
                Announcement.area_id.in_(area_ids),
                ShareDownload.day >= first,
                ShareDownload.day <= last,
            )
            .group_by(Revision.title, Announcement.id)
            .order_by(func.sum(ShareDownload.count).desc(), Revision.title)
        )
    ]
    printed = (
        select(AuditLog.object_id)
        .join(Announcement, Announcement.id == AuditLog.object_id)
        .where(
            AuditLog.action == PRINT_ACTION,
            AuditLog.object_type == "announcement",
            AuditLog.at >= start_utc,
            AuditLog.at < end_utc,
            Announcement.area_id.in_(area_ids),
        )
    )
    ledger.printed = session.scalar(select(func.count()).select_from(printed.subquery())) or 0
    ledger.prints = [
        (title, int(times))
        for title, times in session.execute(
            select(Revision.title, func.count(AuditLog.id))
            .join(Announcement, Announcement.id == AuditLog.object_id)
            .join(Revision, Revision.id == Announcement.approved_revision_id)
            .where(AuditLog.id.in_(printed.with_only_columns(AuditLog.id)))
            .group_by(Revision.title, Announcement.id)
            .order_by(func.count(AuditLog.id).desc(), Revision.title)
        )
    ]
    published_articles = session.execute(
        select(
            Revision.title,
            PublisherArticle.article_url,
            PublisherArticle.published_at,
            PublisherAccount.platform,
        )
        .join(Revision, Revision.id == PublisherArticle.revision_id)
        .join(PublisherAccount, PublisherAccount.id == PublisherArticle.account_id)
        .where(
            PublisherAccount.area_id.in_(area_ids),
            PublisherArticle.state == ArticleState.PUBLISHED,
            PublisherArticle.published_at >= start_utc,
            PublisherArticle.published_at < end_utc,
        )
        .order_by(PublisherArticle.published_at)
    ).all()
    ledger.articles = [
        (title, url or "", published) for title, url, published, _ in published_articles
    ]
    by_platform: dict[str, list[tuple[str, str, datetime | None]]] = {
        platform: []
        for platform in session.scalars(
            select(PublisherAccount.platform)
            .distinct()
            .where(PublisherAccount.area_id.in_(area_ids))
        )
    }
    for title, url, published, platform in published_articles:
        by_platform.setdefault(platform, []).append((title, url or "", published))
    ledger.publishers = sorted(by_platform.items())
    played = dict(
        session.execute(
            select(BreakInOutlet.break_in_id, func.count(BreakInOutlet.played_at)).group_by(
                BreakInOutlet.break_in_id
            )
        ).all()
    )
    breakins = list(
        session.scalars(
            select(BreakIn)
            .where(and_(BreakIn.area_id.in_(area_ids), BreakIn.day >= first, BreakIn.day <= last))
            .options(selectinload(BreakIn.revision))
            .order_by(BreakIn.started_at)
        )
    )
    ledger.breakins = [
        BreakInRow(
            b.revision.title, b.started_at, b.rule, b.outlet_count, played.get(b.id, 0), b.ended_at
        )
        for b in breakins
    ]

    # -- a county: one row per township (and one for the county's own office) -------------
    if area.kind is AreaKind.COUNTY:
        towns = {area.id: TownshipRow(area.name)}
        towns |= {
            a.id: TownshipRow(a.name)
            for a in sorted(inside, key=lambda a: a.path)
            if a.kind is AreaKind.TOWNSHIP
        }

        def row_of(area_id: int | None) -> TownshipRow:
            owner = by_id.get(area_id) if area_id is not None else None
            town = township_of(owner)
            return towns[town.id] if town is not None and town.id in towns else towns[area.id]

        for ann in anns:
            row_of(ann.area_id).notices += 1
        for o in outlets:
            target, row = row_of(o.area_id), rows_by_outlet[o.id]
            for name in ("planned", "built", "fetched", "confirmed"):
                setattr(target, name, getattr(target, name) + getattr(row, name))
        for chat_area, count in session.execute(
            select(ChatGroup.area_id, func.count(Delivery.id))
            .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
            .where(
                ChatGroup.area_id.in_(area_ids),
                Delivery.due_at >= start_utc,
                Delivery.due_at < end_utc,
                Delivery.state == DeliveryState.SENT,
            )
            .group_by(ChatGroup.area_id)
        ):
            row_of(chat_area).posts_sent += count
        for b in breakins:
            row_of(b.area_id).breakins += 1
        ledger.townships = list(towns.values())
    return ledger


def _spans_of(rows: list[TerminalFetch]) -> list[tuple[int, int]]:
    return [span for r in rows for span in spans(r.ranges)]


def _size(rows: list[TerminalFetch]) -> int:
    return max((r.size for r in rows), default=0) or 1
