"""Per-township settings and lexicon pages: what an office may edit, and for which area.

What a value is for an area (inherited down the tree), and the lexicon that applies there,
are answered by :mod:`cms.tree`; this module validates and stores an area's own values,
names the issuing office, and picks the area a user edits (scoped to their office).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Area, AreaKind, Setting, User
from cms.services import audit
from cms.services.errors import N_, Errors, Message, NotFound, ValidationError
from cms.services.outlets import parse_slots
from cms.services.scope import Scope
from cms.services.text import parse_id
from cms.settings import TTS_ENGINES
from cms.tree import (
    BUILD_TIME,
    DEFAULT_SLOTS,
    DEFAULT_VOICE,
    OFFICE_NAME,
    TTS_ENGINE,
    area_of_user,
    effective,
    township_of,
    townships,
)

OFFICE = N_("{area}宣传办")
OFFICE_ALONE = N_("宣传办")
OFFICE_OWN = "{office}"  # a configured name is shown as typed, in every language
MAX_OFFICE = 16  # the Official Account's author line takes 16 characters
_HHMM = re.compile(r"([01]?[0-9]|2[0-3])[:：]([0-5][0-9])")
# Areas below a township never carry settings: a village follows its township.
_LEAF_KINDS = (AreaKind.VILLAGE, AreaKind.GROUP)


# -- the office's name ------------------------------------------------------------------------


def office_name(session: Session, area: Area | None) -> tuple[str, dict[str, str]]:
    """The issuing office for ``area`` as a message id and its parameters.

    A configured name wins; otherwise "<township>宣传办" after the area's township (or, above
    any township, the top of the tree, as a one-township install always did).
    """
    own = str(effective(session, OFFICE_NAME, area, "") or "").strip()
    if own:
        return OFFICE_OWN, {"office": own}
    named = township_of(area)
    if named is None:
        named = session.scalar(
            select(Area).where(Area.parent_id.is_(None)).order_by(Area.sort, Area.id).limit(1)
        )
    return (OFFICE, {"area": named.name}) if named is not None else (OFFICE_ALONE, {})


# -- editing --------------------------------------------------------------------------------


def _time(errors: Errors, raw: str) -> str | None:
    match = _HHMM.fullmatch(raw)
    if match is None:
        errors.add(BUILD_TIME, N_("生成时间应为 HH:MM（如 04:00）"))
        return None
    return f"{int(match[1]):02d}:{match[2]}"


def _slots(errors: Errors, raw: str) -> str | None:
    slot_errors = Errors()
    slots = parse_slots(slot_errors, raw)
    problem = slot_errors.items.get("slots")
    if problem is not None:
        errors.add(DEFAULT_SLOTS, problem.msgid, **problem.params)
        return None
    return ", ".join(f"{at.strftime('%H:%M')} {minutes}" for at, minutes in slots)


def _voice(errors: Errors, raw: str) -> str | None:
    from audio.voices import VOICES

    if raw not in VOICES:
        errors.add(DEFAULT_VOICE, N_("不支持的声音“{v}”"), v=raw)
        return None
    return raw


def _engine(errors: Errors, raw: str) -> str | None:
    if raw not in TTS_ENGINES:
        errors.add(TTS_ENGINE, N_("语音引擎应为 auto、edge、offline 或 neural"))
        return None
    return raw


def _office(errors: Errors, raw: str) -> str | None:
    if len(raw) > MAX_OFFICE:
        errors.add(OFFICE_NAME, N_("单位名称最多 {n} 个字"), n=MAX_OFFICE)
        return None
    return raw


PARSERS: dict[str, Callable[[Errors, str], str | None]] = {
    BUILD_TIME: _time,
    DEFAULT_SLOTS: _slots,
    DEFAULT_VOICE: _voice,
    TTS_ENGINE: _engine,
    OFFICE_NAME: _office,
}
KEYS = tuple(PARSERS)
LABELS = {
    BUILD_TIME: N_("每日生成时间"),
    DEFAULT_SLOTS: N_("新播放点的默认播出时段"),
    DEFAULT_VOICE: N_("默认声音"),
    TTS_ENGINE: N_("语音引擎"),
    OFFICE_NAME: N_("单位名称（群聊和分享页落款）"),
}


def save(
    session: Session,
    actor: User | None,
    area: Area | None,
    values: Mapping[str, object],
    *,
    engines: Collection[str] = TTS_ENGINES,
) -> dict[str, str | None]:
    """Set ``area``'s own values (None: the global ones). An empty value means "inherit"
    (the stored value is removed). Returns what changed, by key.

    Raises:
        ValidationError: a malformed value, by key; nothing is saved then.
    """
    errors = Errors()
    wanted: dict[str, str | None] = {}
    for key in KEYS:
        if key not in values:
            continue
        raw = str(values[key] or "").strip()
        wanted[key] = PARSERS[key](errors, raw) if raw else None
    if wanted.get(TTS_ENGINE) and wanted[TTS_ENGINE] not in engines:
        errors.add(TTS_ENGINE, N_("本机没有配置离线神经语音模型，不能选择它"))
    errors.raise_if_any()
    area_id = area.id if area is not None else None
    stored = {
        row.key: row
        for row in session.scalars(
            select(Setting).where(
                Setting.key.in_(list(wanted)),
                Setting.area_id.is_(None) if area_id is None else Setting.area_id == area_id,
            )
        )
    }
    changed: dict[str, str | None] = {}
    for key, value in wanted.items():
        row = stored.get(key)
        if value is None:
            if row is not None:
                session.delete(row)
                changed[key] = None
        elif row is None:
            session.add(Setting(area_id=area_id, key=key, value=value))
            changed[key] = value
        elif row.value != value:
            row.value = value
            changed[key] = value
    session.flush()
    if changed:
        audit.record(session, actor, "setting.update", area, area_id=area_id, values=changed)
    return changed


# -- the area an office edits ------------------------------------------------------------


def settable_area(session: Session, area_id: int | None) -> Area | None:
    """The area whose own values an admin edits (None: the global values).

    Raises:
        NotFound: no such area, or it is a village or group (they follow their township).
    """
    if area_id is None:
        return None
    area = session.get(Area, area_id)
    if area is None or area.kind in _LEAF_KINDS:
        raise NotFound(N_("乡镇 {id} 不存在"), id=area_id)
    return area


def scoped_townships(session: Session, user: User | None) -> list[Area]:
    """The townships ``user``'s office may choose on the settings and lexicon pages."""
    scope = Scope.of(user)
    return [area for area in townships(session) if scope.contains(area)]


def scoped_area(session: Session, user: User | None, raw: object) -> Area | None:
    """The area whose own values ``user`` views or edits: the one picked (it must lie in the
    user's scope, else it is reported as not existing), or with no pick the install's values
    for a whole-install user and the user's own township (or county) for an office.

    Raises:
        ValidationError: not a number, no such township or county, or outside the scope.
    """
    scope = Scope.of(user)
    area = require_township(session, raw)
    if area is None and not scope.whole:
        own = area_of_user(session, user)
        area = own if own is not None and own.kind is AreaKind.COUNTY else township_of(own)
    if area is None and not scope.whole or area is not None and not scope.contains(area):
        raise ValidationError({"area_id": Message(N_("请选择存在的乡镇"))})
    return area


def require_township(session: Session, raw: object) -> Area | None:
    """The area an admin picked on a form ("" or absent: the global/county values).

    Raises:
        ValidationError: not a number, or no township or county with that id.
    """
    if not str(raw or "").strip():
        return None
    area_id = parse_id(raw)
    if area_id is None:
        raise ValidationError({"area_id": Message(N_("请选择存在的乡镇"))})
    try:
        return settable_area(session, area_id)
    except NotFound as exc:
        raise ValidationError({"area_id": Message(N_("请选择存在的乡镇"))}) from exc
