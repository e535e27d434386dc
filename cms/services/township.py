"""Per-township settings: each township may set its own value, or inherit the county's.

A value is looked up from the area at hand upwards: the nearest township (or county) that
set it, then the install's global value (``setting.area_id`` NULL), then the environment's
default (:class:`cms.settings.Settings`). The lexicon works the same way per written form:
the county's entries, overridden by the township's own entries with the same written form.

Which area answers for what:

- programs and the build time: the outlet's area;
- an announcement's lexicon, voice and engine: the lowest common area of its targets (so an
  announcement of one township uses that township's values, a county campaign across
  several townships the county's; see :func:`revision_area`);
- the office name on a share page: the same area as the lexicon; in a chat post: the
  chat's own area; on an operator's link card: the outlet's area.

Functions take the area explicitly, so that scoping users to their area stays the caller's
business.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Area, AreaKind, LexiconEntry, Revision, Setting, User
from cms.services import audit
from cms.services.errors import N_, Errors, Message, NotFound, ValidationError
from cms.services.text import parse_id
from cms.settings import Settings

BUILD_TIME = "build_time"
DEFAULT_SLOTS = "default_slots"
DEFAULT_VOICE = "default_voice"
TTS_ENGINE = "tts_engine"
OFFICE_NAME = "office_name"

FALLBACK_SLOTS = "07:30 10, 12:00 10, 19:30 15"
"""New outlets' slots when neither a township nor the install has set any."""
OFFICE = N_("{area}宣传办")
OFFICE_ALONE = N_("宣传办")
OFFICE_OWN = "{office}"  # a configured name is shown as typed, in every language
MAX_OFFICE = 16  # the Official Account's author line takes 16 characters
ENGINES = ("auto", "edge", "offline", "neural")
ENGINE_LABELS = {
    "auto": N_("自动（在线优先，失败时离线）"),
    "edge": N_("仅在线语音"),
    "offline": N_("仅离线语音（eSpeak NG）"),
    "neural": N_("仅离线神经语音"),
}
_HHMM = re.compile(r"([01]?[0-9]|2[0-3])[:：]([0-5][0-9])")
# Areas below a township never carry settings: a village follows its township.
_LEAF_KINDS = (AreaKind.VILLAGE, AreaKind.GROUP)


# -- the tree ------------------------------------------------------------------------------


def ancestor_ids(area: Area) -> list[int]:
    """The ids on ``area``'s path, the area itself last (from its materialised path)."""
    return [int(part) for part in area.path.strip("/").split("/") if part]


def township_of(session: Session, area: Area | None) -> Area | None:
    """The nearest area of kind township at or above ``area`` (None above any township)."""
    if area is None:
        return None
    for area_id in reversed(ancestor_ids(area) or [area.id]):
        node = session.get(Area, area_id)
        if node is not None and node.kind is AreaKind.TOWNSHIP:
            return node
    return None


def area_of_user(session: Session, user: User | None) -> Area | None:
    """The area a user works in, once users belong to one (issue 13 point 1 adds
    ``user.area_id``); until then None, i.e. the install's values."""
    area_id = getattr(user, "area_id", None)
    return session.get(Area, area_id) if isinstance(area_id, int) else None


def townships(session: Session) -> list[Area]:
    """Every township, in tree order: the choices of the settings and lexicon pages."""
    rows = session.scalars(select(Area).where(Area.kind == AreaKind.TOWNSHIP))
    return sorted(rows, key=lambda a: (a.path.count("/"), a.sort, a.id))


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


def common_area_id(areas: Iterable[Area]) -> int | None:
    """The lowest area that contains every one of ``areas`` (None: none, or no common root)."""
    paths = [ancestor_ids(a) for a in areas]
    if not paths:
        return None
    common: int | None = None
    for ids in zip(*paths, strict=False):
        if len(set(ids)) != 1:
            break
        common = ids[0]
    return common


def common_area(session: Session, area_ids: Iterable[int]) -> Area | None:
    """The lowest area containing all the areas with these ids (unknown ids are ignored)."""
    ids = list(area_ids)
    if not ids:
        return None
    found = session.scalars(select(Area).where(Area.id.in_(ids)))
    area_id = common_area_id(found)
    return session.get(Area, area_id) if area_id is not None else None


def revision_area(session: Session, rev: Revision) -> Area | None:
    """The area whose lexicon, voice, engine and office name an announcement revision uses."""
    area_id = common_area_id(rev.areas)
    return session.get(Area, area_id) if area_id is not None else None


# -- values ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Resolved:
    """An effective value and where it comes from.

    ``source`` is the area whose own value it is (None: the global value or the default);
    ``stored`` is False when no one set it and the environment's default applies.
    """

    value: Any
    source: Area | None
    stored: bool

    def inherited_by(self, area: Area | None) -> bool:
        """Whether ``area`` shows this value without having set it itself."""
        if not self.stored:
            return True
        return (self.source.id if self.source else None) != (area.id if area else None)


class Values:
    """Every stored value of some keys, loaded once; answers for any number of areas.

    The scheduler asks for hundreds of outlets each pass: one query, then dictionary walks.
    """

    def __init__(self, session: Session, keys: Iterable[str]) -> None:
        self.session = session
        self.by_key: dict[str, dict[int | None, Any]] = {key: {} for key in keys}
        rows = session.execute(
            select(Setting.key, Setting.area_id, Setting.value).where(
                Setting.key.in_(list(self.by_key))
            )
        )
        for key, area_id, value in rows:
            self.by_key[key][area_id] = value

    def resolve(self, key: str, area: Area | None, fallback: Any) -> Resolved:
        stored = self.by_key[key]
        if area is not None:
            for area_id in reversed(ancestor_ids(area) or [area.id]):
                if area_id in stored:
                    return Resolved(stored[area_id], self.session.get(Area, area_id), True)
        if None in stored:
            return Resolved(stored[None], None, True)
        return Resolved(fallback, None, False)

    def get(self, key: str, area: Area | None, fallback: Any) -> Any:
        return self.resolve(key, area, fallback).value

    def at_path(self, key: str, path: str, fallback: Any) -> Any:
        """The value for the area with materialised ``path`` (no query: for many areas)."""
        stored = self.by_key[key]
        for part in reversed(path.strip("/").split("/")):
            if part and int(part) in stored:
                return stored[int(part)]
        return stored.get(None, fallback)


def effective(session: Session, key: str, area: Area | None, fallback: Any = None) -> Any:
    """The value of setting ``key`` for ``area``: its own, its township's or county's, the
    global one, else ``fallback``."""
    return Values(session, [key]).get(key, area, fallback)


def env_defaults(config: Settings) -> dict[str, Any]:
    """What applies when nobody set a value (the environment, then built-in defaults)."""
    from audio.voices import DEFAULT_VOICE as VOICE

    return {
        BUILD_TIME: config.build_time,
        DEFAULT_SLOTS: FALLBACK_SLOTS,
        DEFAULT_VOICE: VOICE,
        TTS_ENGINE: config.tts_engine,
        OFFICE_NAME: "",
    }


def build_time(session: Session, area: Area | None, config: Settings) -> str:
    return str(effective(session, BUILD_TIME, area, config.build_time))


def default_slots(session: Session, area: Area | None) -> str:
    return str(effective(session, DEFAULT_SLOTS, area, FALLBACK_SLOTS))


def default_voice(session: Session, area: Area | None) -> str:
    from audio.voices import DEFAULT_VOICE as VOICE
    from audio.voices import VOICES

    voice = str(effective(session, DEFAULT_VOICE, area, VOICE))
    return voice if voice in VOICES else VOICE


def engine_mode(session: Session, area: Area | None, config: Settings) -> str:
    mode = str(effective(session, TTS_ENGINE, area, config.tts_engine))
    return mode if mode in ENGINES else config.tts_engine


def office_name(session: Session, area: Area | None) -> tuple[str, dict[str, str]]:
    """The issuing office for ``area`` as a message id and its parameters.

    A configured name wins; otherwise "<township>宣传办" after the area's township (or, above
    any township, the top of the tree, as a one-township install always did).
    """
    own = str(effective(session, OFFICE_NAME, area, "") or "").strip()
    if own:
        return OFFICE_OWN, {"office": own}
    named = township_of(session, area)
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
    from cms.services.outlets import parse_slots

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
    if raw not in ENGINES:
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
    engines: Collection[str] = ENGINES,
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


# -- the lexicon ------------------------------------------------------------------------------


class Lexicons:
    """Every lexicon entry, loaded once; the effective pairs for any area."""

    def __init__(self, session: Session) -> None:
        self.by_area: dict[int | None, dict[str, str]] = {}
        for entry in session.scalars(select(LexiconEntry)):
            self.by_area.setdefault(entry.area_id, {})[entry.written] = entry.spoken

    def pairs(self, area: Area | None) -> list[tuple[str, str]]:
        """The county's entries, each overridden by the nearest township's own, sorted."""
        merged = dict(self.by_area.get(None, {}))
        if area is not None:
            for area_id in ancestor_ids(area):
                merged.update(self.by_area.get(area_id, {}))
        return sorted(merged.items())


def lexicon_pairs(session: Session, area: Area | None) -> list[tuple[str, str]]:
    return Lexicons(session).pairs(area)


def scoped_townships(session: Session, user: User | None) -> list[Area]:
    """The townships ``user``'s office may choose on the settings and lexicon pages."""
    from cms.services.scope import Scope

    scope = Scope.of(user)
    return [area for area in townships(session) if scope.contains(area)]


def scoped_area(session: Session, user: User | None, raw: object) -> Area | None:
    """The area whose own values ``user`` views or edits: the one picked (it must lie in the
    user's scope, else it is reported as not existing), or with no pick the install's values
    for a whole-install user and the user's own township (or county) for an office.

    Raises:
        ValidationError: not a number, no such township or county, or outside the scope.
    """
    from cms.services.scope import Scope

    scope = Scope.of(user)
    area = require_township(session, raw)
    if area is None and not scope.whole:
        own = area_of_user(session, user)
        area = own if own is not None and own.kind is AreaKind.COUNTY else township_of(session, own)
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
