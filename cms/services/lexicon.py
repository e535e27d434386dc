"""The pronunciation lexicon officers edit: written form → spoken form.

Adding or changing an entry changes the cache key of every clip whose text contains the
written form (see :mod:`cms.jobs.renders`); the scheduler re-renders exactly those
clips at its next tick and rebuilds the programs made from them.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Announcement, Area, LexiconEntry, Revision, Status, User
from cms.services import audit
from cms.services.announcements import live_filter
from cms.services.errors import N_, Errors, NotFound
from cms.services.text import clean_text

MAX_WRITTEN = 40
MAX_SPOKEN = 80


def _of(area: Area | None) -> ColumnElement[bool]:
    return LexiconEntry.area_id.is_(None) if area is None else LexiconEntry.area_id == area.id


def all_entries(session: Session, area: Area | None = None) -> list[LexiconEntry]:
    """The entries ``area`` set itself (None: the county's lexicon)."""
    return list(
        session.scalars(select(LexiconEntry).where(_of(area)).order_by(LexiconEntry.written))
    )


def save_entry(
    session: Session,
    actor: User | None,
    *,
    written: object,
    spoken: object,
    note: object = "",
    area: Area | None = None,
) -> LexiconEntry:
    """Add an entry, or change the spoken form of an existing written form, in the county's
    lexicon (``area`` None) or a township's own (it wins there over the county's)."""
    errors = Errors()
    w = clean_text(errors, "written", written, label=N_("写法"), max_len=MAX_WRITTEN)
    s = clean_text(errors, "spoken", spoken, label=N_("读法"), max_len=MAX_SPOKEN)
    n = clean_text(errors, "note", note, label=N_("说明"), max_len=200, required=False)
    if w and s and w == s:
        errors.add("spoken", N_("读法与写法相同，不需要添加"))
    if "=" in w or "#" in w:
        errors.add("written", N_("写法中不能有“=”或“#”"))
    errors.raise_if_any()
    entry = session.scalar(select(LexiconEntry).where(LexiconEntry.written == w, _of(area)))
    if entry is None:
        entry = LexiconEntry(area_id=area.id if area else None, written=w, spoken=s, note=n)
        session.add(entry)
    else:
        entry.spoken, entry.note = s, n
    session.flush()
    # The re-render it causes happens in the scheduler; the audit names what it reaches.
    reaches = [rev.id for rev in affected_revisions(session, w, area)]
    audit.record(
        session,
        actor,
        "lexicon.save",
        entry,
        written=w,
        spoken=s,
        area_id=entry.area_id,
        revisions=reaches,
    )
    return entry


def delete_entry(session: Session, actor: User | None, entry_id: int) -> None:
    entry = session.get(LexiconEntry, entry_id)
    if entry is None:
        raise NotFound(N_("读音条目 {id} 不存在"), id=entry_id)
    reaches = [rev.id for rev in affected_revisions(session, entry.written, entry.area)]
    audit.record(
        session,
        actor,
        "lexicon.delete",
        entry,
        written=entry.written,
        area_id=entry.area_id,
        revisions=reaches,
    )
    session.delete(entry)
    session.flush()


def affected_revisions(session: Session, written: str, area: Area | None = None) -> list[Revision]:
    """Revisions in review or going out whose spoken text contains ``written`` (for a
    township's entry: only those whose lexicon is that township's)."""
    revs = session.scalars(
        select(Revision)
        .join(Announcement, Announcement.approved_revision_id == Revision.id)
        .where(live_filter())
    ).all()
    reviewing = session.scalars(
        select(Revision)
        .join(Announcement, Announcement.latest_revision_id == Revision.id)
        .where(Announcement.status == Status.IN_REVIEW)
    ).all()
    seen: dict[int, Revision] = {}
    for rev in [*revs, *reviewing]:
        if written not in rev.speech:
            continue
        if area is not None:
            own = tree.revision_area(session, rev)
            if own is None or area.id not in tree.ancestor_ids(own):
                continue
        seen[rev.id] = rev
    return list(seen.values())
