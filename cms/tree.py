"""The area tree: where an area lies, what it reaches, and what it inherits.

The grid is a tree of areas (县 → 乡镇 → 村 → 组; an install may start at a township), each
row carrying its materialised path ("/1/4/9/"). Every question about the tree is answered
here, once:

- its shape: an area's ancestors, the township above it, the lowest area common to
  several, every area in tree order;
- reach: an outlet or a bound chat reaches a notice when its area and one of the notice's
  targets overlap (:func:`overlap`); the preview of reach, the scheduler and the pages use
  this one rule;
- inheritance: a setting's value for an area is its own, else the nearest township's (or
  county's) above it, else the install's global value (``setting.area_id`` NULL), else the
  environment's default (:class:`cms.settings.Settings`); the lexicon is the county's
  entries overridden by those of the areas on the path; the default voice and the engine
  mode are such settings, checked against what exists.

Which area answers for what: programs and the build time, the outlet's area; an
announcement's lexicon, voice and engine, the lowest common area of its targets
(:func:`revision_area`: an announcement of one township uses that township's values, a
county campaign across several townships the county's).

Part of the core: it reads models through a session, never writes, and imports no service,
job, scheduler or web module (an import-linter contract holds this). Scoping users to their
area, and editing the values, stay with the services.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, or_, select
from sqlalchemy.orm import Session

from cms.models import Area, AreaKind, LexiconEntry, Revision, Setting, User
from cms.settings import TTS_ENGINES, Settings

BUILD_TIME = "build_time"
DEFAULT_SLOTS = "default_slots"
DEFAULT_VOICE = "default_voice"
TTS_ENGINE = "tts_engine"
OFFICE_NAME = "office_name"

FALLBACK_SLOTS = "07:30 10, 12:00 10, 19:30 15"
"""New outlets' slots when neither a township nor the install has set any."""


# -- the shape of the tree -------------------------------------------------------------------


def ancestor_ids(area: Area) -> list[int]:
    """The ids on ``area``'s path from the root, the area itself last."""
    return [int(part) for part in area.path.strip("/").split("/") if part]


def all_areas(session: Session) -> list[Area]:
    """Every area in tree order (parents before children, siblings by sort then id)."""
    areas = list(session.scalars(select(Area)))
    by_parent: dict[int | None, list[Area]] = {}
    for area in areas:
        by_parent.setdefault(area.parent_id, []).append(area)
    ordered: list[Area] = []

    def walk(parent: int | None) -> None:
        for child in sorted(by_parent.get(parent, []), key=lambda a: (a.sort, a.id)):
            ordered.append(child)
            walk(child.id)

    walk(None)
    return ordered


def townships(session: Session) -> list[Area]:
    """Every township, in tree order: the choices of the settings and lexicon pages."""
    rows = session.scalars(select(Area).where(Area.kind == AreaKind.TOWNSHIP))
    return sorted(rows, key=lambda a: (a.path.count("/"), a.sort, a.id))


def township_of(area: Area | None) -> Area | None:
    """The township ``area`` lies in (itself for a township; None above any township)."""
    node = area
    while node is not None and node.kind is not AreaKind.TOWNSHIP:
        node = node.parent
    return node


def area_of_user(session: Session, user: User | None) -> Area | None:
    """The area a user works in (None: the whole install, i.e. the install's values)."""
    area_id = getattr(user, "area_id", None)
    return session.get(Area, area_id) if isinstance(area_id, int) else None


def common_area_id(areas: Iterable[Area]) -> int | None:
    """The id of the lowest area containing every one of ``areas`` (None: no areas, or they
    share no root)."""
    paths = [ancestor_ids(a) for a in areas]
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
    area_id = common_area_id(session.scalars(select(Area).where(Area.id.in_(ids))))
    return session.get(Area, area_id) if area_id is not None else None


def revision_area(session: Session, rev: Revision) -> Area | None:
    """The area whose lexicon, voice, engine and office name an announcement revision uses."""
    area_id = common_area_id(rev.areas)
    return session.get(Area, area_id) if area_id is not None else None


# -- reach: the overlap rule -----------------------------------------------------------------


def within(area: Area, other: Area) -> bool:
    """Whether ``area`` is ``other`` or lies below it."""
    return area.path.startswith(other.path)


def overlap(a: Area, b: Area) -> bool:
    """The one reach rule: two areas overlap when one is an ancestor of, or equal to, the other.

    A village loudspeaker plays notices for any of its 组; a 组's mobile speaker plays
    notices for its village and township; a chat bound to an area follows the same rule.
    """
    return paths_overlap(a.path, (b.path,))


def paths_overlap(path: str, targets: Iterable[str]) -> bool:
    """:func:`overlap` on tree paths: whether the area at ``path`` overlaps any of ``targets``.

    For the pages that ask it of every outlet or chat against every notice: plain strings,
    read once from the rows, not attribute loads each time.
    """
    return any(path.startswith(t) or t.startswith(path) for t in targets)


def overlaps(area: Area) -> ColumnElement[bool]:
    """SQL condition on :class:`Area`: the row overlaps ``area`` (:func:`overlap`): an
    ancestor of it, the area itself, or anything below it."""
    return or_(Area.id.in_(ancestor_ids(area) or [area.id]), Area.path.startswith(area.path))


def overlapping_ids(area: Area) -> Select[int]:
    """SQL: ids of the areas that overlap ``area`` (:func:`overlap`, as a subquery)."""
    return select(Area.id).where(overlaps(area))


def narrower(targets: Iterable[Area], area: Area) -> list[Area]:
    """The targets inside ``area`` when none covers all of it (what part of it they are for)."""
    targets = list(targets)
    if any(within(area, t) for t in targets):
        return []
    return [t for t in targets if within(t, area)]


# -- inherited settings ----------------------------------------------------------------------


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

    def engine_mode(self, area: Area | None, install: str) -> str:
        """The engine mode in ``area`` (``install``: the install's ``DALABA_TTS_ENGINE``,
        also what applies when the stored mode is not one this version knows)."""
        mode = self.get(TTS_ENGINE, area, install)
        return str(mode) if mode in TTS_ENGINES else install


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
    """The voice a new announcement in ``area`` starts with (a voice this install knows)."""
    from audio.voices import DEFAULT_VOICE as VOICE
    from audio.voices import VOICES

    voice = str(effective(session, DEFAULT_VOICE, area, VOICE))
    return voice if voice in VOICES else VOICE


def engine_mode(session: Session, area: Area | None, install: str) -> str:
    """The engine mode that speaks in ``area`` (see :meth:`Values.engine_mode`)."""
    return Values(session, [TTS_ENGINE]).engine_mode(area, install)


# -- the lexicon -----------------------------------------------------------------------------


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
    """The lexicon as it applies in ``area`` (None: the county's own entries only)."""
    return Lexicons(session).pairs(area)
