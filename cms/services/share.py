"""The public share page of an approved announcement, for forwarding into WeChat groups by hand.

Every approved announcement has an unguessable token; ``/s/<token>`` shows the approved
revision (never a pending edit) with the loudspeaker clip and its subtitles. A withdrawn
announcement's page says so; a token that was replaced is unknown. Fetches of the page's
audio are counted per announcement and day, nothing about who fetched it.
"""

from __future__ import annotations

import io
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from html import escape
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import (
    Announcement,
    Area,
    Clip,
    ClipProfile,
    JobState,
    Revision,
    ShareDownload,
    Status,
    User,
    revision_area,
)
from cms.roles import STAFF
from cms.services import audit, township
from cms.services.errors import N_, PermissionDenied, WorkflowError
from cms.settings import Settings

__all__ = [
    "TOKEN_BYTES",
    "SharePage",
    "download_counts",
    "ensure_token",
    "for_area",
    "issue_new_token",
    "office_name",
    "page",
    "qr_png",
    "qr_svg",
    "record_downloads",
    "share_text",
    "share_url",
    "srt_to_vtt",
]

# 32 random bytes: 43 URL-safe characters, 256 bits; nobody finds a page by guessing.
TOKEN_BYTES = 32
# The token's alphabet (token_urlsafe); anything else in a URL is not a token.
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{20,64}")
# The office: each township's configured name, else "<township>宣传办" (cms.services.township).
OFFICE = township.OFFICE
OFFICE_ALONE = township.OFFICE_ALONE


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def shareable(ann: Announcement) -> bool:
    """Whether the announcement has an approved revision that still goes out."""
    return ann.approved_revision_id is not None and ann.status is not Status.WITHDRAWN


def ensure_token(ann: Announcement) -> str:
    """The announcement's share token, made now if it has none (on first approval)."""
    if ann.share_token is None:
        ann.share_token = new_token()
    return ann.share_token


def issue_new_token(session: Session, user: User, ann: Announcement) -> str:
    """Replace the share link (换一个链接): the old link stops working at once."""
    if user.role not in STAFF:
        raise PermissionDenied(N_("没有更换分享链接的权限"))
    if not shareable(ann):
        raise WorkflowError(N_("只有审核通过且未撤回的公告可以分享"))
    old = ann.share_token
    ann.share_token = new_token()
    # Only the first characters go into the log: enough to tell links apart, not to open one.
    audit.record(
        session,
        user,
        "announcement.share_token",
        ann,
        old_prefix=(old or "")[:6],
        new_prefix=ann.share_token[:6],
    )
    return ann.share_token


def share_url(settings: Settings, announcement: Announcement) -> str | None:
    """The public address of the share page, or None while there is nothing to share."""
    if not shareable(announcement) or announcement.share_token is None:
        return None
    return f"{settings.base_url}/s/{announcement.share_token}"


def by_token(session: Session, token: str) -> Announcement | None:
    """The announcement a share token belongs to (the current token only)."""
    if not TOKEN_SHAPE.fullmatch(token):
        return None
    ann = session.scalar(select(Announcement).where(Announcement.share_token == token))
    if ann is None or ann.approved_revision_id is None:
        return None
    return ann


def office_name(session: Session, area: Area | None = None) -> tuple[str, dict[str, str]]:
    """The issuing office of ``area``'s township as a message id and its parameters
    (translated where shown); None: the install's own office."""
    return township.office_name(session, area)


def loudspeaker_clip(session: Session, revision_id: int) -> Clip | None:
    """The finished loudspeaker clip of a revision, if it has been rendered."""
    return session.scalar(
        select(Clip).where(
            Clip.revision_id == revision_id,
            Clip.profile == ClipProfile.LOUDSPEAKER,
            Clip.state == JobState.DONE,
            Clip.path.is_not(None),
        )
    )


@dataclass(frozen=True)
class SharePage:
    """What the share page shows: the approved revision only."""

    announcement_id: int
    token: str
    withdrawn: bool
    title: str
    body: str
    day: date
    office: tuple[str, dict[str, str]]
    audio: Path | None
    subtitles: Path | None
    duration: float | None
    # A notice for chats only has no loudspeaker clip, and none is coming.
    audio_pending: bool


def page(session: Session, token: str, tz: tzinfo) -> SharePage | None:
    """The share page behind ``token``; None for an unknown or replaced token."""
    ann = by_token(session, token)
    if ann is None:
        return None
    rev = ann.approved_revision
    assert rev is not None
    clip = loudspeaker_clip(session, rev.id)
    issued: datetime | None = ann.reviewed_at
    return SharePage(
        announcement_id=ann.id,
        token=token,
        withdrawn=ann.status is Status.WITHDRAWN,
        title=rev.title,
        body=rev.body,
        day=issued.astimezone(tz).date() if issued else rev.start_date,
        office=office_name(session, tree.revision_area(session, rev)),
        audio=Path(clip.path) if clip and clip.path else None,
        subtitles=Path(clip.subtitles_path) if clip and clip.subtitles_path else None,
        duration=clip.duration if clip else None,
        audio_pending=clip is None and rev.to_loudspeaker,
    )


HEADING = N_("【{title}】")


def share_text(title: str, body: str, url: str, heading: str = HEADING) -> str:
    """The text an officer pastes into a WeChat group: title, text and link.

    ``heading`` is the (translated) form of the title line, with ``{title}``.
    """
    return f"{heading.format(title=title.strip())}\n{body.strip()}\n{url}"


def for_area(session: Session, area: Area, today: date) -> list[Announcement]:
    """Shareable announcements that reach ``area`` (a target overlaps it in the tree) and
    have not ended, newest first: what an operator of that area may forward."""
    stmt = (
        select(Announcement)
        .join(Revision, Revision.id == Announcement.approved_revision_id)
        .join(revision_area, revision_area.c.revision_id == Revision.id)
        .where(
            Announcement.status != Status.WITHDRAWN,
            Announcement.share_token.is_not(None),
            Revision.end_date >= today,
            revision_area.c.area_id.in_(tree.overlapping_ids(area)),
        )
        .order_by(Revision.start_date.desc(), Announcement.id.desc())
        .distinct()
    )
    return list(session.scalars(stmt))


# --- Download counts -----------------------------------------------------------------------


def record_downloads(session: Session, counts: Mapping[tuple[int, date], int]) -> int:
    """Add ``counts`` (announcement id, day → fetches); returns how many fetches were added.

    Announcements deleted meanwhile are skipped. Two processes adding the same new day at
    once: one insert fails on the primary key, and the caller retries the batch.
    """
    added = 0
    for (announcement_id, day), count in sorted(counts.items()):
        if count <= 0 or session.get(Announcement, announcement_id) is None:
            continue
        row = session.get(ShareDownload, (announcement_id, day))
        if row is None:
            session.add(ShareDownload(announcement_id=announcement_id, day=day, count=count))
            session.flush()
        else:
            row.count += count
        added += count
    return added


def download_counts(session: Session, announcement_id: int) -> list[tuple[date, int]]:
    """Fetches of the share page's audio per day, newest first."""
    rows = session.execute(
        select(ShareDownload.day, ShareDownload.count)
        .where(ShareDownload.announcement_id == announcement_id)
        .order_by(ShareDownload.day.desc())
    )
    return [(day, count) for day, count in rows]


# --- Subtitles and QR codes -----------------------------------------------------------------

_SRT_TIME = re.compile(r"(\d{1,2}:\d{2}:\d{2}),(\d{3})")


def srt_to_vtt(srt: str) -> str:
    """SubRip to WebVTT: a header, dots for commas in the timings, cue numbers dropped.

    Cue text is escaped: in WebVTT ``<`` and ``&`` start markup, and an announcement's text
    is not markup.
    """
    out = ["WEBVTT", ""]
    for block in re.split(r"\r?\n\s*\r?\n", srt.replace("\ufeff", "").strip()):
        lines = [line.rstrip("\r") for line in block.splitlines() if line.strip()]
        if lines and lines[0].strip().isdigit():
            lines = lines[1:]
        if not lines or "-->" not in lines[0]:
            continue
        timing = _SRT_TIME.sub(r"\1.\2", lines[0].strip())
        text = [escape(line, quote=False).replace("-->", "--&gt;") for line in lines[1:]]
        if text:
            out += [timing, *text, ""]
    return "\n".join(out) + "\n"


def _qr(url: str):  # type: ignore[no-untyped-def]
    import segno

    return segno.make_qr(url, error="m")


def qr_svg(url: str) -> str:
    """The QR code of ``url`` as an inline SVG element (scales with CSS, no script)."""
    svg = _qr(url).svg_inline(
        scale=4, border=2, title=url, svgclass="qr", lineclass=None, omitsize=True
    )
    return str(svg)


def qr_png(url: str) -> bytes:
    """The QR code of ``url`` as a PNG large enough to print on a notice board."""
    buffer = io.BytesIO()
    _qr(url).save(buffer, kind="png", scale=10, border=4)
    return buffer.getvalue()
