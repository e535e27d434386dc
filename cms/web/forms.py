"""Helpers shared by the HTML views: error display, pagination, form parsing."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import abort, g, request
from flask_babel import gettext as _
from sqlalchemy import Select, func, select

from cms.models import Announcement, Area
from cms.services import announcements, township
from cms.services import content as model
from cms.services.content import Content, Kind
from cms.services.errors import DomainError, Message, NotFound, ValidationError, audio_message
from cms.services.text import parse_id, parse_int
from cms.web.db import db

if TYPE_CHECKING:
    from audio.errors import AudioError, Reason


def field_errors(exc: ValidationError) -> dict[str, str]:
    return exc.render(_)


def message(exc: DomainError) -> str:
    return exc.message.render(_)


def audio_text(source: AudioError | Reason) -> str:
    """An audio error's (or reason's) message in the reader's language."""
    return audio_message(source).render(_)


def chosen_area(errors: dict[str, str]) -> Area | None:
    """The township (or county) whose own values the page shows, from ``?area_id=`` or the
    form, within the user's scope; a bad choice is added to ``errors`` and the page shows the
    user's office's own values instead."""
    try:
        return township.scoped_area(db(), g.user, request.values.get("area_id"))
    except ValidationError as exc:
        errors.update(field_errors(exc))
        return township.scoped_area(db(), g.user, None)


def stored_text(stored: str | None) -> str | None:
    """A stored message (``Message.dumps``, e.g. a clip's fallback reason) in the reader's language."""
    return None if stored is None else Message.loads(stored).render(_)


def announcement_or_404(announcement_id: int) -> Announcement:
    """The announcement, when the user may see it; else a 404 that says why."""
    try:
        return announcements.get(db(), announcement_id, g.user)
    except NotFound as exc:
        abort(404, description=message(exc))


def int_arg(name: str, default: int | None = None, *, lo: int = 1, hi: int = 10**9) -> int | None:
    raw = request.args.get(name, "")
    if raw == "":
        return default
    value = parse_int(raw)
    if value is None:
        abort(400, description=_("参数 {name} 应为整数").format(name=name))
    if not lo <= value <= hi:
        abort(400, description=_("参数 {name} 超出范围").format(name=name))
    return value


def form_id(name: str) -> int | None:
    """An id from a form field, or None when it is empty, not ASCII digits or out of range.

    The one way forms read ids: ``str.isdigit()`` admits "²" and ``int()`` admits "١٢",
    and an id the database cannot hold must be "not found", not an OverflowError.
    """
    return parse_id(request.form.get(name, ""))


def form_ids(name: str) -> list[int]:
    """The valid ids of a multi-valued form field (anything else is left out)."""
    return [i for i in map(parse_id, request.form.getlist(name)) if i is not None]


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def paginate(stmt: Select[Any], page: int, per_page: int) -> Page:
    total = db().scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(db().scalars(stmt.limit(per_page).offset((page - 1) * per_page)))
    return Page(items, page, per_page, total)


def announcement_form_data() -> dict[str, Any]:
    """The announcement form as the services expect it, read field by field from the model.

    Checkboxes are present or absent, id lists are multi-selects; a field the form leaves
    out gets the model's default.
    """
    form = request.form
    data: dict[str, Any] = {}
    for s in model.SPECS:
        if s.kind is Kind.IDS:
            data[s.name] = form.getlist(s.name)
        elif s.kind is Kind.SWITCH:
            data[s.name] = s.name in form
        else:
            data[s.name] = form.get(s.name, "" if s.default is None else str(s.default))
    return data


def announcement_form_values(content: Content) -> dict[str, Any]:
    """Saved content as the form shows it (strings for inputs, lists for multi-selects)."""
    values: dict[str, Any] = {}
    for s in model.SPECS:
        value = getattr(content, s.name)
        match s.kind:
            case Kind.IDS:
                values[s.name] = [str(i) for i in value]
            case Kind.SWITCH | Kind.INT:
                values[s.name] = value
            case Kind.CHOICE:
                values[s.name] = value.value if isinstance(value, enum.Enum) else value
            case Kind.DATE:
                values[s.name] = value.isoformat()
            case Kind.TIME:
                values[s.name] = value.strftime("%H:%M") if value else ""
            case _:
                values[s.name] = "" if value is None else value
    return values
