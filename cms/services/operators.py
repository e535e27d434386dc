"""Operators: private outlet links, downloads, playback receipts, escalation and compliance."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, contains_eager, selectinload

from cms.clock import clock_of
from cms.db import rowcount
from cms.models import (
    Alert,
    Area,
    AreaKind,
    DownloadEvent,
    JobState,
    Outlet,
    OutletToken,
    Program,
    Receipt,
    Role,
    Slot,
    User,
    get_setting,
)
from cms.services import audit
from cms.services import days as days_svc
from cms.services.days import Outcome
from cms.services.errors import (
    N_,
    DomainError,
    Message,
    NotFound,
    PermissionDenied,
    WorkflowError,
)
from cms.services.scope import Scope
from cms.settings import Settings

VIAS = ("web", "bot", "link")
DOWNLOAD_KINDS = ("mp3", "zip", "loop", "m3u", "rss", "now")  # now: a break-in (立即插播)
# Kinds that put a program's audio on the operator's device (feeds and playlists only list it).
AUDIO_KINDS = ("mp3", "zip", "loop")
UNCONFIRMED_ALERT = "program_unconfirmed"
# Admin-editable (Setting table) first, then DALABA_* extras, then these defaults.
LATE_GRACE_SETTING = "operators.late_grace_minutes"
ESCALATE_SETTING = "operators.escalate_after_minutes"
DEFAULT_LATE_GRACE_MINUTES = 60
DEFAULT_ESCALATE_AFTER_MINUTES = 120
# How far back escalation looks; older gaps belong to reconciliation, not to a reminder.
ESCALATE_LOOKBACK_DAYS = 3
# A box polling today.mp3 every few minutes is one download, not hundreds.
DOWNLOAD_DEDUPE = timedelta(minutes=10)
# Loops of past days are pruned when a new loop is built.
LOOP_KEEP = timedelta(days=14)
TOKEN_BYTES = 32
PREFIX_LEN = 6


class InvalidVia(DomainError):
    pass


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


# --- Links -------------------------------------------------------------------------------------


def issue_outlet_token(session: Session, actor: User | None, outlet: Outlet) -> str:
    """Issue a new private link token for ``outlet``; earlier links of the outlet stop working.

    Only the SHA-256 is stored, so the token is returned once, to be shown once.
    """
    now = clock_of(session).now()
    session.execute(
        update(OutletToken)
        .where(OutletToken.outlet_id == outlet.id, OutletToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = OutletToken(
        outlet_id=outlet.id, token_hash=hash_token(token), prefix=token[:PREFIX_LEN], created_at=now
    )
    session.add(row)
    session.flush()
    audit.record(session, actor, "outlet_token.issue", outlet, prefix=row.prefix)
    return token


def revoke_outlet_tokens(session: Session, actor: User | None, outlet: Outlet) -> int:
    """Revoke every active link of ``outlet``; returns how many were active."""
    result = session.execute(
        update(OutletToken)
        .where(OutletToken.outlet_id == outlet.id, OutletToken.revoked_at.is_(None))
        .values(revoked_at=clock_of(session).now())
    )
    count = rowcount(result) or 0
    audit.record(session, actor, "outlet_token.revoke", outlet, count=count)
    return count


def active_token(session: Session, outlet: Outlet) -> OutletToken | None:
    return session.scalar(
        select(OutletToken)
        .where(OutletToken.outlet_id == outlet.id, OutletToken.revoked_at.is_(None))
        .order_by(OutletToken.id.desc())
    )


def outlet_for_token(session: Session, token: str) -> Outlet | None:
    """The active outlet behind a link token, or None (unknown, revoked, or outlet retired).

    The lookup is an equality on the token's SHA-256 in a unique index: an attacker controls
    no prefix of what is compared, so response timing says nothing about near misses.
    """
    if not token or len(token) > 128:
        return None
    # One query per request: every download goes through here.
    return session.scalar(
        select(Outlet)
        .join(OutletToken, OutletToken.outlet_id == Outlet.id)
        .where(
            OutletToken.token_hash == hash_token(token),
            OutletToken.revoked_at.is_(None),
            Outlet.active,
        )
    )


# --- Programs as operators see them -----------------------------------------------------------


def slot_window(program: Program, tz: tzinfo) -> tuple[datetime, datetime]:
    """When the program's slot starts and ends, as aware UTC datetimes."""
    start = datetime.combine(program.day, program.slot.at, tzinfo=tz)
    end = start + timedelta(minutes=program.slot.minutes)
    return start.astimezone(UTC), end.astimezone(UTC)


def is_ready(program: Program) -> bool:
    return program.state is JobState.DONE and bool(program.path)


def program_file(settings: Settings, program: Program) -> Path | None:
    """The program's MP3 under the data folder, or None when unbuilt or outside it."""
    if not is_ready(program):
        return None
    assert program.path is not None
    root = settings.data_dir.resolve()
    path = Path(program.path)
    path = (path if path.is_absolute() else root / path).resolve()
    # A path from the database is still checked: nothing outside the data folder is served.
    if not path.is_relative_to(root):
        return None
    return path


def programs_for(
    session: Session, outlet: Outlet, first: date, last: date | None = None
) -> list[Program]:
    """The outlet's programs from ``first`` to ``last`` (inclusive), by day and slot time."""
    stmt = (
        select(Program)
        .join(Slot, Program.slot_id == Slot.id)
        .options(contains_eager(Program.slot))
        .where(Program.outlet_id == outlet.id, Program.day >= first)
        .order_by(Program.day, Slot.at)
    )
    if last is not None:
        stmt = stmt.where(Program.day <= last)
    return list(session.scalars(stmt))


def current_of(programs: Iterable[Program], now: datetime, tz: tzinfo) -> Program | None:
    """What ``today.mp3`` means among one day's ``programs``: the current or next, else the last.

    That is the built program whose slot has not yet ended, else the day's last one. A box
    that fetches at 07:25 gets the 07:30 program; after the day's last slot it keeps
    getting that one rather than a 404.
    """
    ready = [p for p in programs if is_ready(p)]
    for program in ready:
        if slot_window(program, tz)[1] > now:
            return program
    return ready[-1] if ready else None


def _link_programs_statement(by_slot: bool) -> Select[Program]:
    stmt = (
        select(Program)
        .join(Slot, Program.slot_id == Slot.id)
        .join(Outlet, Program.outlet_id == Outlet.id)
        .join(OutletToken, OutletToken.outlet_id == Outlet.id)
        .options(contains_eager(Program.slot), contains_eager(Program.outlet))
        .where(
            OutletToken.token_hash == bindparam("token_hash"),
            OutletToken.revoked_at.is_(None),
            Outlet.active,
            Program.day == bindparam("day"),
        )
        .order_by(Slot.at)
    )
    return stmt.where(Slot.at == bindparam("at")) if by_slot else stmt


# Built once: every download runs one of these, and building a statement costs more than
# running it on SQLite.
_LINK_PROGRAMS = {False: _link_programs_statement(False), True: _link_programs_statement(True)}


def link_programs(session: Session, token: str, day: date, at: time | None = None) -> list[Program]:
    """The programs of ``day`` (at slot time ``at`` if given) behind a link token, by slot time.

    One query for a download, with each program's slot and outlet loaded: empty for an
    unknown or revoked token, a retired outlet, or no such program alike (all a plain 404).
    """
    if not token or len(token) > 128:
        return []
    params: dict[str, object] = {"token_hash": hash_token(token), "day": day}
    if at is not None:
        params["at"] = at
    return list(session.scalars(_LINK_PROGRAMS[at is not None], params))


def receipts_for(session: Session, programs: Iterable[Program]) -> dict[int, Receipt]:
    ids = [p.id for p in programs]
    if not ids:
        return {}
    return {
        r.program_id: r for r in session.scalars(select(Receipt).where(Receipt.program_id.in_(ids)))
    }


# --- Downloads and receipts -------------------------------------------------------------------


def record_download(
    session: Session,
    outlet_id: int,
    day: date,
    kind: str,
    program_id: int | None = None,
    now: datetime | None = None,
) -> DownloadEvent | None:
    """Record a fetch through an outlet link; a repeat of the same fetch within minutes is not.

    Takes ids, not objects, so a caller can end its read transaction first (see the views).
    """
    if kind not in DOWNLOAD_KINDS:
        raise ValueError(f"unknown download kind {kind!r}")
    now = now or clock_of(session).now()
    recent = (
        select(DownloadEvent.id)
        .where(
            DownloadEvent.outlet_id == outlet_id,
            DownloadEvent.day == day,
            DownloadEvent.kind == kind,
            DownloadEvent.at > now - DOWNLOAD_DEDUPE,
        )
        .limit(1)
    )
    recent = recent.where(
        DownloadEvent.program_id == program_id
        if program_id is not None
        else DownloadEvent.program_id.is_(None)
    )
    if session.scalar(recent) is not None:
        return None
    event = DownloadEvent(program_id=program_id, outlet_id=outlet_id, day=day, kind=kind, at=now)
    session.add(event)
    return event


def _minutes_setting(session: Session, key: str, settings: Settings | None, default: int) -> int:
    raw = get_setting(session, key)
    if raw is None and settings is not None:
        raw = getattr(settings, key.split(".", 1)[1])
    try:
        value = int(raw) if raw is not None else default
    except (TypeError, ValueError):
        return default
    return value if 0 <= value <= 24 * 60 else default


def late_grace(session: Session, settings: Settings | None = None) -> timedelta:
    minutes = _minutes_setting(session, LATE_GRACE_SETTING, settings, DEFAULT_LATE_GRACE_MINUTES)
    return timedelta(minutes=minutes)


def escalate_after(session: Session, settings: Settings | None = None) -> timedelta:
    minutes = _minutes_setting(session, ESCALATE_SETTING, settings, DEFAULT_ESCALATE_AFTER_MINUTES)
    return timedelta(minutes=minutes)


def may_confirm(user: User | None, program: Program) -> bool:
    if user is None:
        return True
    if user.role is Role.ADMIN:
        return True
    return user.role is Role.OPERATOR and any(o.id == program.outlet_id for o in user.outlets)


def confirm_playback(
    session: Session,
    program: Program,
    user: User | None,
    via: str,
    now: datetime,
    *,
    tz: tzinfo | str = "Asia/Shanghai",
    settings: Settings | None = None,
) -> tuple[Receipt, bool]:
    """Record that ``program`` was played: the one entry point for the page, the bot and links.

    Returns the receipt and whether this call created it (a second confirmation returns the
    first receipt unchanged). ``user`` is None for a confirmation through an outlet link.

    Raises:
        InvalidVia: ``via`` is not web, bot or link.
        PermissionDenied: the user does not operate the program's outlet.
        WorkflowError: the program is not built or its slot has not started yet.
    """
    if via not in VIAS:
        raise InvalidVia(N_("确认方式无效：{via}"), via=via)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    if not may_confirm(user, program):
        raise PermissionDenied(N_("您不是该广播点的广播员，不能确认播放"))
    existing = session.scalar(select(Receipt).where(Receipt.program_id == program.id))
    if existing is not None:
        return existing, False
    if not is_ready(program):
        raise WorkflowError(N_("节目尚未生成，不能确认播放"))
    start, end = slot_window(program, zone)
    if now < start:
        raise WorkflowError(
            N_("该节目 {time} 才开始播出，播出后再确认"),
            time=start.astimezone(zone).strftime("%m-%d %H:%M"),
        )
    receipt = Receipt(
        program_id=program.id,
        user_id=user.id if user else None,
        via=via,
        confirmed_at=now,
        late=now > end + late_grace(session, settings),
    )
    # Two confirmations racing (a double tap, the bot and the page at once): the unique
    # constraint on program_id decides, and the loser gets the winner's receipt.
    try:
        with session.begin_nested():
            session.add(receipt)
            session.flush()
    except IntegrityError:
        winner = session.scalar(select(Receipt).where(Receipt.program_id == program.id))
        if winner is None:
            raise
        return winner, False
    session.execute(
        update(Alert)
        .where(
            Alert.kind == UNCONFIRMED_ALERT,
            Alert.object_type == "program",
            Alert.object_id == program.id,
            Alert.resolved_at.is_(None),
        )
        .values(resolved_at=now)
    )
    audit.record(session, user, "program.confirm", program, via=via, late=receipt.late)
    return receipt, True


def awaiting_confirmation(
    session: Session, user: User, now: datetime, tz: tzinfo, days: int = 2
) -> list[Program]:
    """Built programs of the user's outlets whose slot has started and that nobody confirmed
    yet, from the last ``days`` days, oldest first (what the bot offers under "已播放")."""
    outlet_ids = [o.id for o in user.outlets] if user.role is not Role.ADMIN else None
    if outlet_ids == []:
        return []
    today = now.astimezone(tz).date()
    stmt = (
        select(Program)
        .join(Slot, Program.slot_id == Slot.id)
        .outerjoin(Receipt, Receipt.program_id == Program.id)
        .options(selectinload(Program.slot), selectinload(Program.outlet))
        .where(
            Receipt.id.is_(None),
            Program.state == JobState.DONE,
            Program.path.is_not(None),
            Program.day > today - timedelta(days=days),
            Program.day <= today,
        )
        .order_by(Program.day, Slot.at, Program.outlet_id)
    )
    if outlet_ids is not None:
        stmt = stmt.where(Program.outlet_id.in_(outlet_ids))
    return [p for p in session.scalars(stmt) if slot_window(p, tz)[0] <= now]


# --- Escalation ---------------------------------------------------------------------------------


def escalate_unconfirmed(session: Session, now: datetime, settings: Settings) -> list[Alert]:
    """Raise one alert per built program still unconfirmed a configurable time after its slot.

    Meant to be ticked by the scheduler (idempotent: a program is escalated once). The bot
    sends alerts whose ``notified_at`` is empty to the officers' chat and sets it.
    """
    tz = settings.tz
    wait = escalate_after(session, settings)
    today = now.astimezone(tz).date()
    candidates = session.scalars(
        select(Program)
        .options(selectinload(Program.slot), selectinload(Program.outlet).selectinload(Outlet.area))
        .outerjoin(Receipt, Receipt.program_id == Program.id)
        .where(
            Receipt.id.is_(None),
            Program.state == JobState.DONE,
            Program.missed.is_(False),
            Program.day >= today - timedelta(days=ESCALATE_LOOKBACK_DAYS),
            Program.day <= today,
        )
    )
    already = set(
        session.scalars(
            select(Alert.object_id).where(
                Alert.kind == UNCONFIRMED_ALERT,
                Alert.object_type == "program",
                Alert.day >= today - timedelta(days=ESCALATE_LOOKBACK_DAYS),
            )
        )
    )
    alerts = []
    for program in candidates:
        if program.id in already or not program.outlet.active:
            continue
        if slot_window(program, tz)[1] + wait > now:
            continue
        times = days_svc.SlotTimes.of_program(program, tz)
        if not days_svc.applies(times, program.outlet.created_at):
            continue
        alert = Alert(
            kind=UNCONFIRMED_ALERT,
            message=Message(
                N_("{area} · {outlet}：{day} {slot} 的节目尚未确认播放"),
                {
                    "area": program.outlet.area.name,
                    "outlet": program.outlet.name,
                    "day": f"{program.day:%m-%d}",
                    "slot": program.slot.label,
                },
            ).dumps(),
            day=program.day,
            object_type="program",
            object_id=program.id,
            created_at=now,
        )
        session.add(alert)
        alerts.append(alert)
    session.flush()
    return alerts


def open_unconfirmed_alerts(session: Session) -> list[Alert]:
    """Unresolved unconfirmed-program alerts, newest first (for the dashboard and the bot)."""
    return list(
        session.scalars(
            select(Alert)
            .where(Alert.kind == UNCONFIRMED_ALERT, Alert.resolved_at.is_(None))
            .order_by(Alert.created_at.desc())
        )
    )


# --- Compliance ---------------------------------------------------------------------------------


class _Column:
    """One outcome column of a row's tally, read as an attribute (``row.late``)."""

    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome

    def __get__(self, row: ComplianceRow, owner: object = None) -> int:
        return row.tally[self.outcome]


@dataclass
class ComplianceRow:
    """One village on one day: its applicable programs counted by outcome (each in exactly one
    column, see :mod:`cms.services.days`), and how many were downloaded."""

    day: date
    village_id: int
    village: str
    tally: days_svc.Tally = field(default_factory=days_svc.Tally)
    downloaded: int = 0

    @property
    def planned(self) -> int:
        """Applicable programs: the sum of every outcome column."""
        return self.tally.applicable

    pending = _Column(Outcome.PENDING)
    awaiting = _Column(Outcome.BUILT)  # built on time, slot begun, not confirmed yet (on time)
    on_time = _Column(Outcome.CONFIRMED)
    late = _Column(Outcome.CONFIRMED_LATE)
    unconfirmed = _Column(Outcome.NOT_CONFIRMED)
    built_late = _Column(Outcome.BUILT_LATE)
    missed = _Column(Outcome.MISSED)

    @property
    def built(self) -> int:
        return self.tally.built

    @property
    def confirmed(self) -> int:
        """Confirmed, on time or late."""
        return self.tally.confirmed

    @property
    def rate(self) -> float:
        """Share of due programs (slot no longer ahead) confirmed as played."""
        return self.tally.rate


def village_of(area: Area, by_id: dict[int, Area]) -> Area:
    """The village an area belongs to (itself, or its nearest village ancestor)."""
    node: Area | None = area
    while node is not None:
        if node.kind is AreaKind.VILLAGE:
            return node
        node = by_id.get(node.parent_id) if node.parent_id else None
    return area


def compliance(
    session: Session,
    now: datetime,
    tz: tzinfo,
    days: int = 30,
    settings: Settings | None = None,
    scope: Scope | None = None,
) -> list[ComplianceRow]:
    """Per village and day, for the ``days`` days ending today (at ``now`` in ``tz``): the
    applicable programs by outcome, and downloads. Sorted by day, newest first, then village.

    Only programs with a row count; a slot without one (nothing reached the outlet, or it
    ended before the outlet existed) is not applicable.
    """
    if not 1 <= days <= 366:
        raise ValueError("days must be within 1..366")
    today = now.astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    grace = late_grace(session, settings)
    by_id = {a.id: a for a in session.scalars(select(Area))}
    outlet_village = {
        outlet_id: village_of(by_id[area_id], by_id)
        for outlet_id, area_id in session.execute(select(Outlet.id, Outlet.area_id))
    }
    downloaded = (
        select(DownloadEvent.program_id)
        .where(DownloadEvent.kind.in_(AUDIO_KINDS), DownloadEvent.program_id.is_not(None))
        .distinct()
        .subquery()
    )
    rows = session.execute(
        select(Program, Receipt, downloaded.c.program_id.is_not(None))
        .join(Slot, Program.slot_id == Slot.id)
        .join(Outlet, Program.outlet_id == Outlet.id)
        .options(contains_eager(Program.slot), contains_eager(Program.outlet))
        .outerjoin(downloaded, downloaded.c.program_id == Program.id)
        .outerjoin(Receipt, Receipt.program_id == Program.id)
        .where(Program.day >= first, Program.day <= today)
        .where(*([] if scope is None else [scope.outlets()]))
    )
    table: dict[tuple[date, int], ComplianceRow] = {}
    for program, receipt, was_downloaded in rows:
        result = days_svc.of_program(program, receipt, now=now, tz=tz, late_grace=grace)
        if not result.applicable:
            continue
        village = outlet_village[program.outlet_id]
        row = table.setdefault(
            (program.day, village.id),
            ComplianceRow(day=program.day, village_id=village.id, village=village.name),
        )
        row.tally.add(result)
        row.downloaded += bool(was_downloaded)
    return sorted(table.values(), key=lambda r: (-r.day.toordinal(), r.village, r.village_id))


def daily_totals(rows: Iterable[ComplianceRow], today: date, days: int) -> list[ComplianceRow]:
    """Township totals per day (every day present, zeros included), oldest first, for the chart."""
    totals = {
        today - timedelta(days=i): ComplianceRow(
            day=today - timedelta(days=i), village_id=0, village=""
        )
        for i in range(days)
    }
    for row in rows:
        total = totals.get(row.day)
        if total is None:
            continue
        total.tally.merge(row.tally)
        total.downloaded += row.downloaded
    return [totals[d] for d in sorted(totals)]


def get_outlet(session: Session, outlet_id: int) -> Outlet:
    outlet = session.get(Outlet, outlet_id)
    if outlet is None:
        raise NotFound(N_("找不到该广播点"))
    return outlet


# --- Loop files for mobile speakers -------------------------------------------------------------


def loop_file(settings: Settings, program: Program, minutes: int) -> Path:
    """The program repeated to fill ``minutes`` for a mobile speaker, built once per version.

    Cached under ``loops/`` by the program file's identity (inode, mtime, size): a rebuilt
    program gets a new loop; superseded loops of the program are removed (open readers keep
    their inode).

    Raises:
        NotFound: the program has no file.
    """
    source = program_file(settings, program)
    if source is None or not source.exists():
        raise NotFound(N_("节目尚未生成"))
    st = source.stat()
    folder = settings.data_dir / "loops" / str(program.outlet_id)
    stem = f"{program.id}-{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}-{minutes}"
    target = folder / f"{stem}.mp3"
    if not target.exists():
        _build_loop(source, minutes, target)
        cutoff = datetime.now(UTC).timestamp() - LOOP_KEEP.total_seconds()
        for old in folder.iterdir():
            superseded = old.name.startswith(f"{program.id}-") and not old.name.startswith(stem)
            if superseded or old.stat().st_mtime < cutoff:
                old.unlink(missing_ok=True)
    return target


def _build_loop(source: Path, minutes: int, target: Path) -> None:
    from audio.program import build_loop

    build_loop(source, minutes, target)
