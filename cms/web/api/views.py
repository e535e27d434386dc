"""The JSON API's views under /api/v1: announcements and their workflow, areas, topics.

Bearer tokens carry the owner's role. Every request is first checked against the OpenAPI
document (:mod:`.validation`); the services then check meaning (lengths, required fields,
existing ids, date order), and one answer names every bad field.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from flask import Blueprint, current_app, g, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException

from cms.models import Announcement, Area, Revision, Role, Topic
from cms.roles import ANY_USER, EDITORS, REVIEWERS, STAFF
from cms.services import announcements, areas, reach, topics
from cms.services.announcements import Content
from cms.services.errors import N_, Errors, NotFound, ValidationError
from cms.services.scope import Scope
from cms.services.text import MAX_ID, clean_text
from cms.web.api import errors as api_errors
from cms.web.api.errors import MAX_REQUEST_BYTES
from cms.web.api.openapi import DEFAULT_PER_PAGE, MAX_QUERY, openapi_document
from cms.web.api.representations import (
    area,
    area_names,
    content_json,
    detail,
    revision,
    service_input,
    summary,
)
from cms.web.api.validation import body_problems, checked_body, checked_query, json_body, resolve
from cms.web.auth import PUBLIC, Route, add_routes, rule
from cms.web.db import commits, db, settings

bp = Blueprint("api", __name__, url_prefix="/api/v1")
api_errors.register(bp)
# Ids are INTEGER columns: larger numbers would overflow the database driver, not match.
ID = f"int(min=1, max={MAX_ID})"


@bp.before_request
def _limit_body() -> None:
    request.max_content_length = MAX_REQUEST_BYTES


def _today() -> date:
    from cms.web import today

    return today(settings())


def _announcement(announcement_id: int) -> Announcement:
    return announcements.get(db(), announcement_id, g.user)


def _detail(ann: Announcement) -> dict[str, Any]:
    return detail(db(), ann, _today())


def _created(body: dict[str, Any], location: str):  # type: ignore[no-untyped-def]
    return body, 201, {"Location": location}


def _content_input(base: Content | None = None, ann: Announcement | None = None) -> dict[str, Any]:
    """The request's content merged onto ``base``, as the services' input.

    Fields the schema refuses are left out and the rest still go through the services'
    checks, so one answer names every bad field.
    """
    data, pointer = json_body()
    problems = body_problems(pointer, data)
    properties = resolve(pointer)["properties"]
    good = {k: v for k, v in data.items() if k in properties and k not in problems}
    merged = service_input({**(content_json(base) if base else {}), **good})
    if problems:
        try:
            announcements.parse_content(
                db(), merged, today=_today(), scope=announcements.target_scope(g.user, ann)
            )
        except ValidationError as exc:
            for name, message in exc.errors.items():
                problems.setdefault(name, message)
        raise ValidationError(problems)
    return merged


def missing_resource(exc: HTTPException) -> bool:
    """For a 405: whether the resource the URL names does not exist (then it is a 404).

    The URL is matched again with a method its route has; an id the route's converter
    refuses, or an announcement, revision or area that is not there (or not the caller's),
    is a missing resource.
    """
    methods = sorted(getattr(exc, "valid_methods", None) or ["GET"])
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        _endpoint, args = adapter.match(method=methods[0])
    except HTTPException:
        return True
    if g.get("user") is None:
        return False  # 401 comes first for an anonymous caller
    try:
        if "announcement_id" in args:
            ann = _announcement(args["announcement_id"])
            if "number" in args:
                announcements.revision(db(), ann, args["number"])
        if "area_id" in args:
            Scope.of(g.user).get_area(db(), args["area_id"])
    except NotFound:
        return True
    return False


@bp.get("/openapi.json")
@rule(PUBLIC)
def openapi() -> Any:
    """The OpenAPI document of this API."""
    return openapi_document()


@bp.get("/announcements")
@rule(*STAFF)
def list_announcements() -> Any:
    """Announcements, filtered and paginated."""
    session = db()
    args = checked_query()
    errors = Errors()
    status: str | None = args.get("status")
    topic_id: int | None = args.get("topic_id")
    area_id: int | None = args.get("area_id")
    page: int = args.get("page", 1)
    per_page: int = args.get("per_page", DEFAULT_PER_PAGE)
    q = args.get("q")
    if q is not None:
        q = clean_text(errors, "q", q, label=N_("搜索词"), max_len=MAX_QUERY) or None
    if topic_id is not None and session.get(Topic, topic_id) is None:
        errors.add("topic_id", N_("主题 {id} 不存在"), id=topic_id)
    scope = Scope.of(g.user)
    wanted = session.get(Area, area_id) if area_id is not None else None
    if area_id is not None and (wanted is None or not scope.contains(wanted)):
        errors.add("area_id", N_("区域 {id} 不存在"), id=area_id)
    errors.raise_if_any()
    today = _today()
    stmt = announcements.search(
        session, today=today, status=status, topic_id=topic_id, area_id=area_id, q=q, scope=scope
    )
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.scalars(
        stmt.options(
            selectinload(Announcement.latest_revision).selectinload(Revision.areas),
            selectinload(Announcement.approved_revision),
        )
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return {
        "items": [summary(a, today) for a in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": (total + per_page - 1) // per_page,
    }


@bp.post("/announcements")
@rule(*EDITORS)
@commits
def create_announcement() -> Any:
    """Create a draft."""
    data = _content_input()
    ann = announcements.create(db(), g.user, data, today=_today())
    return _created(_detail(ann), url_for("api.get_announcement", announcement_id=ann.id))


@bp.get(f"/announcements/<{ID}:announcement_id>")
@rule(*STAFF)
def get_announcement(announcement_id: int) -> Any:
    """One announcement."""
    return _detail(_announcement(announcement_id))


def _edit(announcement_id: int, *, merge: bool) -> Any:
    ann = _announcement(announcement_id)
    data = _content_input(Content.of(ann.current) if merge else None, ann)
    announcements.update(db(), g.user, ann, data, today=_today())
    return _detail(ann)


@bp.put(f"/announcements/<{ID}:announcement_id>")
@rule(*EDITORS)
@commits
def replace_announcement(announcement_id: int) -> Any:
    """Edit with the whole new content."""
    return _edit(announcement_id, merge=False)


@bp.patch(f"/announcements/<{ID}:announcement_id>")
@rule(*EDITORS)
@commits
def patch_announcement(announcement_id: int) -> Any:
    """Edit the given fields."""
    return _edit(announcement_id, merge=True)


@bp.post(f"/announcements/<{ID}:announcement_id>/submit")
@rule(*EDITORS)
@commits
def submit_announcement(announcement_id: int) -> Any:
    """Submit for review."""
    ann = _announcement(announcement_id)
    checked_body()
    announcements.submit(db(), g.user, ann)
    # A notice whose channels reach nothing is refused (400, a field error on area_ids).
    reach.require_reach(db(), ann, settings().now(), settings().tz)
    return _detail(ann)


def _step(change: Callable[..., object], text_field: str) -> Callable[[int], Any]:
    """One workflow step, with the body's ``text_field`` (a comment or a reason) as its text."""

    @commits
    def view(announcement_id: int) -> Any:
        ann = _announcement(announcement_id)
        data = checked_body()
        change(db(), g.user, ann, data.get(text_field) or "")
        return _detail(ann)

    return view


# The steps that take a text: action (the URL's last part), who may, the change, its text field.
_STEPS = (
    ("approve", REVIEWERS, announcements.approve, "comment", "Approve the latest revision."),
    ("reject", REVIEWERS, announcements.reject, "comment", "Send back to draft with a comment."),
    ("withdraw", STAFF, announcements.withdraw, "reason", "Stop it everywhere."),
)
add_routes(
    bp,
    (
        Route(
            f"/announcements/<{ID}:announcement_id>/{action}",
            f"{action}_announcement",
            roles,
            _step(change, text_field),
            doc,
        )
        for action, roles, change, text_field, doc in _STEPS
    ),
    method="POST",
)


@bp.get(f"/announcements/<{ID}:announcement_id>/revisions")
@rule(*STAFF)
def list_revisions(announcement_id: int) -> Any:
    """Every revision."""
    ann = _announcement(announcement_id)
    return {"items": [revision(r) for r in ann.revisions]}


@bp.get(f"/announcements/<{ID}:announcement_id>/revisions/<{ID}:number>")
@rule(*STAFF)
def get_revision(announcement_id: int, number: int) -> Any:
    """One revision."""
    ann = _announcement(announcement_id)
    return revision(announcements.revision(db(), ann, number))


@bp.get("/areas")
@rule(*ANY_USER)
def list_areas() -> Any:
    """The grid, parents first."""
    session = db()
    names = area_names(session)
    return {"items": [area(a, names) for a in Scope.of(g.user).areas(session)]}


@bp.get(f"/areas/<{ID}:area_id>")
@rule(*ANY_USER)
def get_area(area_id: int) -> Any:
    """One area with its children."""
    session = db()
    row = Scope.of(g.user).get_area(session, area_id)
    names = area_names(session, [row, *row.children])
    return {**area(row, names), "children": [area(c, names) for c in row.children]}


@bp.post("/areas")
@rule(Role.ADMIN)
@commits
def create_area() -> Any:
    """Add an area."""
    session = db()
    data = checked_body()
    row = areas.create_area(
        session,
        g.user,
        name=data.get("name"),
        kind=data.get("kind"),
        parent_id=data.get("parent_id"),
    )
    names = area_names(session, [row])
    return _created(area(row, names), url_for("api.get_area", area_id=row.id))


@bp.get("/topics")
@rule(*STAFF)
def list_topics() -> Any:
    """Announcement topics."""
    return {
        "items": [{"id": t.id, "name": t.name, "active": t.active} for t in topics.all_topics(db())]
    }
