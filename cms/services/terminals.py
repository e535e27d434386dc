"""Terminals: the boxes at an outlet that fetch their audio by URL themselves, and the proof
of what each fetched.

An outlet registers its IP speakers, 4G speaker columns (智能音柱) and PC players; each gets
its own token (only its SHA-256 is stored) and URL, ``/t/<token>/…``, with the operator
link's feeds, and can be revoked alone. Every fetch through it is recorded per terminal
(when the last byte went, the program or break-in, bytes sent of how many, the ranges,
complete or partial), written in batches by the web's download log, never on the request.

A terminal's status for a slot, from its fetches of that slot's program:

* ``full``: every byte fetched before the slot began (over one or several ranged requests);
* ``late``: every byte, but the last of them only after the slot began;
* ``partial``: some bytes, never all (a cut download the box did not resume);
* ``none``: nothing.

A terminal that fetched nothing for a day (:data:`SILENT_AFTER`) raises an alert; a box that
only polls ``now.mp3`` while nothing plays is alive (its idle polls are recorded, kind
:data:`IDLE_KIND`, with no program, so no slot's status changes).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from cms.clock import clock_of
from cms.models import (
    Outlet,
    Program,
    Receipt,
    Slot,
    Terminal,
    TerminalFetch,
    TerminalKind,
    User,
)
from cms.services import audit
from cms.services.days import SlotTimes
from cms.services.errors import N_, Errors, NotFound, PermissionDenied
from cms.services.scope import Scope
from cms.services.text import clean_text

KIND_LABELS = {
    TerminalKind.IP_SPEAKER: N_("IP 网络音箱"),
    TerminalKind.COLUMN_4G: N_("4G 智能音柱"),
    TerminalKind.PC_PLAYER: N_("电脑播放器"),
}
STATUS_LABELS = {
    "full": N_("播前已完整下载"),
    "late": N_("开播后才下载完"),
    "partial": N_("只下载了一部分"),
    "none": N_("没有下载"),
}
STATUSES = tuple(STATUS_LABELS)
SILENT_AFTER = timedelta(days=1)
# An idle poll of now.mp3 (no break-in playing) is recorded as a sign of life, at most once in
# this long per terminal: it keeps a polling box from being called silent, fetches no program.
IDLE_KIND = "idle"
IDLE_EVERY = timedelta(minutes=10)
TOKEN_BYTES = 24
PREFIX_LEN = 6
MAX_RANGES_TEXT = 200


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def _may_manage(user: User, outlet: Outlet) -> None:
    from cms.models import Role

    if user.role is not Role.ADMIN:
        raise PermissionDenied(N_("只有管理员可以登记或停用终端"))
    if not Scope.of(user).has_outlet(outlet):
        raise NotFound(N_("广播点不存在"))


def register(
    session: Session, user: User, outlet: Outlet, *, kind: str, name: str
) -> tuple[Terminal, str]:
    """Register a terminal at ``outlet``; returns it and its token (shown once)."""
    _may_manage(user, outlet)
    errors = Errors()
    clean = clean_text(errors, "name", name, label=N_("终端名称"), max_len=80)
    try:
        the_kind = TerminalKind(kind)
    except ValueError:
        errors.add("kind", N_("请选择终端类型"))
        the_kind = TerminalKind.IP_SPEAKER
    errors.raise_if_any()
    token = secrets.token_urlsafe(TOKEN_BYTES)
    row = Terminal(
        outlet_id=outlet.id,
        kind=the_kind,
        name=clean,
        token_hash=_hash(token),
        prefix=token[:PREFIX_LEN],
    )
    session.add(row)
    session.flush()
    audit.record(
        session, user, "terminal.register", row, outlet=outlet.id, kind=the_kind.value, name=clean
    )
    return row, token


def revoke(session: Session, user: User, terminal: Terminal, now: datetime | None = None) -> None:
    """Stop a terminal's link (its history stays)."""
    _may_manage(user, terminal.outlet)
    if terminal.revoked_at is None:
        terminal.revoked_at = now or clock_of(session).now()
        audit.record(session, user, "terminal.revoke", terminal, outlet=terminal.outlet_id)


def for_token(session: Session, token: str) -> Terminal | None:
    """The active terminal behind a token (of an active outlet), with its outlet; or None."""
    if not token or len(token) > 128:
        return None
    return session.scalar(
        select(Terminal)
        .join(Outlet, Outlet.id == Terminal.outlet_id)
        .where(Terminal.token_hash == _hash(token), Terminal.revoked_at.is_(None), Outlet.active)
        .options(selectinload(Terminal.outlet).selectinload(Outlet.area))
    )


def of_outlets(
    session: Session, outlet_ids: Iterable[int], *, active: bool = True
) -> list[Terminal]:
    stmt = select(Terminal).where(Terminal.outlet_id.in_(list(outlet_ids)))
    if active:
        stmt = stmt.where(Terminal.revoked_at.is_(None))
    return list(session.scalars(stmt.order_by(Terminal.outlet_id, Terminal.id)))


# --- Fetches -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetch:
    """One fetch as the web saw it (what :func:`record` writes)."""

    terminal_id: int
    outlet_id: int
    day: date
    kind: str
    program_id: int | None
    break_in_id: int | None
    at: datetime
    size: int
    start: int
    sent: int

    @property
    def complete(self) -> bool:
        return self.start == 0 and self.sent >= self.size > 0


def record(session: Session, fetches: Sequence[Fetch]) -> int:
    """Write fetches (from the download log's writer thread); returns how many."""
    for f in fetches:
        session.add(
            TerminalFetch(
                terminal_id=f.terminal_id,
                outlet_id=f.outlet_id,
                program_id=f.program_id,
                break_in_id=f.break_in_id,
                day=f.day,
                kind=f.kind,
                at=f.at,
                size=f.size,
                bytes_sent=f.sent,
                complete=f.complete,
                ranges=f"{f.start}-{f.start + f.sent - 1}" if f.sent else "",
            )
        )
    return len(fetches)


def spans(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        lo, sep, hi = part.partition("-")
        if sep and lo.isdigit() and hi.isdigit():
            out.append((int(lo), int(hi) + 1))
    return out


def covered(spans: Iterable[tuple[int, int]]) -> int:
    """Bytes covered by half-open spans, overlaps counted once."""
    total, reach = 0, 0
    for lo, hi in sorted(spans):
        lo = max(lo, reach)
        if hi > lo:
            total += hi - lo
            reach = hi
    return total


def status_of(fetches: Iterable[TerminalFetch], start: datetime) -> str:
    """A terminal's status for one slot from its fetches of the slot's program (see above)."""
    before: list[tuple[int, int]] = []
    every: list[tuple[int, int]] = []
    size = 0
    for f in fetches:
        size = max(size, f.size)
        found = spans(f.ranges)
        every += found
        if f.at < start:
            before += found
    if not every or size == 0:
        return "none"
    if covered(before) >= size:
        return "full"
    if covered(every) >= size:
        return "late"
    return "partial"


@dataclass
class BoxDay:
    """One terminal's day: each slot's program and status, and when it last fetched."""

    terminal: Terminal
    slots: list[tuple[Program, str, Receipt | None]] = field(default_factory=list)
    last_fetch: datetime | None = None

    def count(self, status: str) -> int:
        return sum(s == status for _p, s, _r in self.slots)


def day_statuses(
    session: Session, outlet_ids: Sequence[int], day: date, tz: tzinfo
) -> list[BoxDay]:
    """For every active terminal of ``outlet_ids``: its status per slot on ``day`` (the
    program's operator confirmation beside it), in three queries."""
    terminals = of_outlets(session, outlet_ids)
    if not terminals:
        return []
    programs = list(
        session.scalars(
            select(Program)
            .join(Slot, Slot.id == Program.slot_id)
            .where(Program.outlet_id.in_([t.outlet_id for t in terminals]), Program.day == day)
            .options(selectinload(Program.slot))
            .order_by(Program.outlet_id, Slot.at)
        )
    )
    receipts = {
        r.program_id: r
        for r in session.scalars(
            select(Receipt).where(Receipt.program_id.in_([p.id for p in programs]))
        )
    }
    fetches: dict[tuple[int, int], list[TerminalFetch]] = {}
    for f in session.scalars(
        select(TerminalFetch).where(
            TerminalFetch.terminal_id.in_([t.id for t in terminals]),
            TerminalFetch.program_id.in_([p.id for p in programs]),
        )
    ):
        assert f.program_id is not None
        fetches.setdefault((f.terminal_id, f.program_id), []).append(f)
    last = dict(
        session.execute(
            select(TerminalFetch.terminal_id, func.max(TerminalFetch.at))
            .where(TerminalFetch.terminal_id.in_([t.id for t in terminals]))
            .group_by(TerminalFetch.terminal_id)
        ).all()
    )
    out = []
    for terminal in terminals:
        box = BoxDay(terminal, last_fetch=last.get(terminal.id))
        for program in programs:
            if program.outlet_id != terminal.outlet_id:
                continue
            start = SlotTimes.of(day, program.slot.at, program.slot.minutes, tz).start
            status = status_of(fetches.get((terminal.id, program.id), []), start)
            box.slots.append((program, status, receipts.get(program.id)))
        out.append(box)
    return out


def whole_programs(session: Session, program_ids: Sequence[int]) -> set[int]:
    """Programs among ``program_ids`` that some terminal fetched whole (in one or more ranges)."""
    by_pair: dict[tuple[int, int], list[TerminalFetch]] = {}
    for f in session.scalars(
        select(TerminalFetch).where(TerminalFetch.program_id.in_(list(program_ids)))
    ):
        assert f.program_id is not None
        by_pair.setdefault((f.terminal_id, f.program_id), []).append(f)
    return {
        program_id
        for (_t, program_id), rows in by_pair.items()
        if covered([s for r in rows for s in spans(r.ranges)]) >= max(r.size for r in rows) > 0
    }


def silent(session: Session, now: datetime) -> list[Terminal]:
    """Active terminals (registered over a day ago) that fetched nothing for a day."""
    since = now - SILENT_AFTER
    recent = select(TerminalFetch.terminal_id).where(TerminalFetch.at >= since)
    return list(
        session.scalars(
            select(Terminal)
            .join(Outlet, Outlet.id == Terminal.outlet_id)
            .where(
                Terminal.revoked_at.is_(None),
                Outlet.active,
                Terminal.created_at <= since,
                Terminal.id.not_in(recent),
            )
            .options(selectinload(Terminal.outlet))
        )
    )


def month_counts(
    session: Session, outlet_ids: Sequence[int], first: date, last: date
) -> dict[str, int]:
    """Fetches of programs by terminals of ``outlet_ids`` from ``first`` to ``last``: how many
    fetches, complete ones, and distinct programs fetched complete (for the ledger)."""
    base = select(TerminalFetch).where(
        TerminalFetch.outlet_id.in_(list(outlet_ids)),
        TerminalFetch.day >= first,
        TerminalFetch.day <= last,
        TerminalFetch.program_id.is_not(None),
    )
    rows = list(session.scalars(base))
    return {
        "fetches": len(rows),
        "complete": sum(r.complete for r in rows),
        "programs": len({r.program_id for r in rows if r.complete}),
    }
