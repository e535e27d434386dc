"""How the API shows announcements, revisions and areas (the shapes its OpenAPI document declares).

A revision's content is written out field by field from the content model
(:mod:`cms.services.content`), so a new field appears in the API without an edit here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Announcement, Area, Revision, User
from cms.services import content as model
from cms.services.announcements import STATUS_LABELS
from cms.services.areas import AREA_KIND_LABELS
from cms.services.content import Content, Kind


def content_json(content: Content) -> dict[str, Any]:
    """Content as the API carries it: ISO dates, HH:MM times, the switches as ``channels``."""
    out: dict[str, Any] = {}
    for s in model.SPECS:
        value = getattr(content, s.name)
        match s.kind:
            case Kind.SWITCH:
                out.setdefault("channels", [])
                if value:
                    out["channels"].append(s.channel)
            case Kind.IDS:
                out[s.name] = list(value)
            case Kind.DATE:
                out[s.name] = value.isoformat()
            case Kind.TIME:
                out[s.name] = value.strftime("%H:%M") if value else None
            case Kind.CHOICE:
                out[s.name] = value.value if isinstance(value, enum.Enum) else value
            case _:
                out[s.name] = value
    return out


def service_input(data: Mapping[str, Any]) -> dict[str, Any]:
    """API content fields → the services' input (``channels`` become the model's switches)."""
    out = {k: v for k, v in data.items() if k != "channels"}
    if "channels" in data:
        for s in model.SPECS:
            if s.kind is Kind.SWITCH:
                out[s.name] = s.channel in data["channels"]
    return out


def dt(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def user_ref(user: User | None) -> dict[str, Any] | None:
    if user is None:
        return None
    return {"id": user.id, "username": user.username, "display_name": user.display_name}


def _area_refs(rev: Revision) -> list[dict[str, Any]]:
    return [{"id": a.id, "name": a.name} for a in rev.areas]


def revision(rev: Revision) -> dict[str, Any]:
    return {
        "number": rev.number,
        **content_json(Content.of(rev)),
        "topic_name": rev.topic.name if rev.topic else None,
        "areas": _area_refs(rev),
        "author": user_ref(rev.author),
        "created_at": dt(rev.created_at),
    }


def summary(ann: Announcement, today: date) -> dict[str, Any]:
    rev = ann.current
    phase = ann.phase(today)
    return {
        "id": ann.id,
        "status": ann.status.value,
        "phase": phase,
        "phase_label": _(STATUS_LABELS[phase]),
        "title": rev.title,
        "topic_id": rev.topic_id,
        "priority": rev.priority.value,
        "areas": _area_refs(rev),
        "channels": rev.channels,
        "start_date": rev.start_date.isoformat(),
        "end_date": rev.end_date.isoformat(),
        "latest_revision_number": rev.number,
        "approved_revision_number": ann.approved_revision.number if ann.approved_revision else None,
        "campaign": ann.campaign,
        "origin_id": ann.origin_id,
        "adoption": ann.adoption,
        "created_at": dt(ann.created_at),
        "updated_at": dt(ann.updated_at),
    }


def detail(session: Session, ann: Announcement, today: date) -> dict[str, Any]:
    session.flush()
    session.refresh(ann)
    approved = ann.approved_revision
    return {
        **summary(ann, today),
        "created_by": user_ref(ann.created_by),
        "submitted_by": user_ref(session.get(User, ann.submitted_by_id))
        if ann.submitted_by_id
        else None,
        "reviewed_by": user_ref(ann.reviewed_by),
        "reviewed_at": dt(ann.reviewed_at),
        "review_comment": ann.review_comment,
        "withdrawn_at": dt(ann.withdrawn_at),
        "revision_count": len(ann.revisions),
        "latest_revision": revision(ann.current),
        "approved_revision": revision(approved) if approved else None,
    }


def area(row: Area, names: Mapping[int, str]) -> dict[str, Any]:
    path = tree.ancestor_ids(row)
    return {
        "id": row.id,
        "name": row.name,
        "kind": row.kind.value,
        "kind_label": _(AREA_KIND_LABELS[row.kind]),
        "parent_id": row.parent_id,
        "path": path,
        "depth": len(path) - 1,
        "full_name": " / ".join(names[i] for i in path if i in names),
    }


def area_names(session: Session, among: list[Area] | None = None) -> dict[int, str]:
    """Area names by id: all of them, or those on the paths of ``among``."""
    if among is None:
        return {i: n for i, n in session.execute(select(Area.id, Area.name))}
    ids = {i for a in among for i in tree.ancestor_ids(a)}
    return {i: n for i, n in session.execute(select(Area.id, Area.name).where(Area.id.in_(ids)))}
