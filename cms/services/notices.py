"""The printed notice (公告) of an approved announcement: for the village notice board
(村务公开栏, A4 portrait) and as a handout at household-heads' meetings (户长会, A5).

A page shows the issuing office, the title, the text in paragraphs, the date, room for the
seal (盖章处) and the QR code of the share page, so that a villager who reads the board can
also listen. "Print for every village" repeats the notice once per village in its reach, each
copy naming its village.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Announcement, Area, AreaKind, User
from cms.services import audit, share
from cms.services.errors import N_, NotFound
from cms.settings import Settings

__all__ = ["SIZES", "PrintedNotice", "notice", "paragraphs", "villages_in_reach"]

# Paper sizes the page offers: A4 portrait for the notice board, A5 for a handout.
SIZES = ("a4", "a5")


@dataclass(frozen=True)
class PrintedNotice:
    """What a printed notice shows (the approved revision only)."""

    announcement_id: int
    title: str
    paragraphs: list[str]
    day: date
    office: tuple[str, dict[str, str]]
    url: str
    qr_svg: str
    villages: list[str]


def paragraphs(body: str) -> list[str]:
    """The text's paragraphs (one per non-empty line), for page breaks between them."""
    return [line.strip() for line in body.replace("\r\n", "\n").split("\n") if line.strip()]


def villages_in_reach(session: Session, areas: list[Area]) -> list[Area]:
    """The villages a notice targeting ``areas`` reaches, in tree order.

    A village target is itself; a group target belongs to its village; a township or county
    target reaches every village below it.
    """
    found: dict[int, Area] = {}
    below = [a.path for a in areas if a.kind in (AreaKind.COUNTY, AreaKind.TOWNSHIP)]
    if below:
        rows = session.scalars(
            select(Area).where(
                Area.kind == AreaKind.VILLAGE, or_(*(Area.path.startswith(p) for p in below))
            )
        )
        found.update((a.id, a) for a in rows)
    for area in areas:
        if area.kind is AreaKind.VILLAGE:
            found[area.id] = area
        elif area.kind is AreaKind.GROUP:
            for area_id in reversed(tree.ancestor_ids(area)):
                node = session.get(Area, area_id)
                if node is not None and node.kind is AreaKind.VILLAGE:
                    found[node.id] = node
                    break

    def order(area: Area) -> list[tuple[int, int]]:
        return [
            (node.sort, node.id)
            for node in (session.get(Area, i) for i in tree.ancestor_ids(area))
            if node is not None
        ]

    return sorted(found.values(), key=order)


def notice(session: Session, settings: Settings, ann: Announcement, tz: tzinfo) -> PrintedNotice:
    """The printed notice of ``ann``.

    Raises:
        NotFound: the announcement has no approved revision that still goes out.
    """
    url = share.share_url(settings, ann)
    rev = ann.approved_revision
    if url is None or rev is None:
        raise NotFound(N_("只有审核通过且未撤回的公告可以打印"))
    issued = ann.reviewed_at
    return PrintedNotice(
        announcement_id=ann.id,
        title=rev.title,
        paragraphs=paragraphs(rev.body),
        day=issued.astimezone(tz).date() if issued else rev.start_date,
        office=share.office_name(session, tree.revision_area(session, rev)),
        url=url,
        qr_svg=share.qr_svg(url),
        villages=[v.name for v in villages_in_reach(session, list(rev.areas))],
    )


# --- Prints (counted in the ledger) ------------------------------------------------------------

PRINT_ACTION = "notice.print"
# An officer opening the print page again (another size, a reload) within this counts once.
PRINT_DEDUPE = timedelta(minutes=10)


@dataclass(frozen=True)
class Print:
    """An officer opened a notice's print page (as the web's download log takes it)."""

    announcement_id: int
    user_id: int
    size: str
    copies: int
    at: datetime


def record_prints(session: Session, prints: Sequence[Print]) -> int:
    """Write prints as audit entries (from the download log's writer thread); returns how many."""
    written = 0
    for p in prints:
        ann = session.get(Announcement, p.announcement_id)
        if ann is None:
            continue
        entry = audit.record(
            session, session.get(User, p.user_id), "notice.print", ann, size=p.size, copies=p.copies
        )
        entry.at = p.at
        written += 1
    return written
