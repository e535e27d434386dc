"""An announcement's content, described once.

Every field of :class:`Content` carries a :class:`Spec` (in its dataclass metadata): its
kind, its label (a msgid), its limits, whether it is required, its default and the messages
its checks give. Everything else derives from it:

- the service parses raw form or JSON input with :func:`parse` and turns content into the
  columns of a revision with :func:`revision_values` (and back with :meth:`Content.of`);
- the web form reads and refills itself from it (``cms/web/forms.py``);
- the API builds its request and response schemas in the OpenAPI document, and its
  representation of a revision, from it (``cms/web/api/``).

Adding an announcement field
----------------------------
1. a dataclass field with its :func:`spec` on :class:`Content` (here): kind, label, limits;
2. its column on ``Revision`` (``cms/models.py``) and an Alembic migration;
3. its input in ``templates/announcements/form.html`` (and its line in ``show.html``).

The form reader, the parser, the API schemas (``AnnouncementInput``, ``AnnouncementPatch``,
``Revision``), the API representation and the revision diff pick it up from the model;
``tests/cms/test_content_model.py`` checks that they do. Only rules that tie several fields
together (a channel is chosen, the window's dates, the chat time when posting to chats) are
written out, in :func:`parse`.

Why a dataclass and not pydantic: the services already speak frozen dataclasses and collect
every bad field as a localized :class:`~cms.services.errors.Message`; pydantic's English
error texts would need mapping back, and the API's schemas come from the OpenAPI document,
which is generated from these specs (see ``cms/web/api/openapi.py``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date, time
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.voices import DEFAULT_VOICE
from cms.models import Airtime, Area, Priority, Revision, Topic
from cms.services.errors import N_, Errors
from cms.services.scope import Scope
from cms.services.text import (
    MAX_DATE,
    MIN_DATE,
    clean_text,
    in_date_range,
    parse_date,
    parse_id,
    parse_int,
)

MAX_TITLE = 200
MAX_BODY = 10_000
MAX_SPOKEN = 10_000
MAX_WINDOW_DAYS = 366
MAX_REPEATS = 5
MAX_AREA_IDS = 500
RATE_RANGE = (-50, 50)


def voice_names() -> list[str]:
    from audio.voices import VOICES

    return list(VOICES)


class Kind(enum.Enum):
    """How a field is read, checked, stored and shown."""

    LINE = "line"  # one line of text
    TEXT = "text"  # text with newlines
    REF = "ref"  # the id of one row of ``model``
    IDS = "ids"  # ids of rows of ``model``, held by the revision's ``relation``
    CHOICE = "choice"  # one of ``choices``
    SWITCH = "switch"  # on or off; the API lists the switches that are on as ``channels``
    DATE = "date"  # YYYY-MM-DD
    INT = "int"  # a whole number from ``lo`` to ``hi``
    TIME = "time"  # HH:MM


@dataclass(frozen=True)
class Spec:
    """What one content field is: the single description the service, form and API use."""

    kind: Kind
    label: str  # msgid, shown in the form and in every message about the field
    required: bool = True
    default: Any = None  # the value when the input leaves the field out
    max_len: int = 0  # LINE, TEXT
    lo: int | None = None  # INT
    hi: int | None = None  # INT
    max_items: int | None = None  # IDS: at most this many in one API request
    choices: type[enum.Enum] | Callable[[], Sequence[str]] | None = None  # CHOICE
    model: type[Any] | None = None  # REF, IDS: the table the ids point into
    relation: str = ""  # IDS: the Revision relationship that holds the rows
    channel: str = ""  # SWITCH: the channel's name in the API's ``channels``
    invalid: str = ""  # msgid: the value cannot be read (params: label, v)
    missing: str = ""  # msgid: REF/IDS name rows that do not exist (params: id, ids)
    empty: str = ""  # msgid: a required REF/IDS is empty
    doc: str = ""  # English description in the API document
    name: str = ""  # filled in from the dataclass field

    def choice_values(self) -> list[str]:
        if isinstance(self.choices, enum.EnumMeta):
            return [str(member.value) for member in self.choices]
        return list(self.choices()) if self.choices else []

    @property
    def stable_choices(self) -> bool:
        """Whether the choices are fixed (an enum), not a list that may change (voices)."""
        return isinstance(self.choices, enum.EnumMeta)


def spec(kind: Kind, label: str, **options: Any) -> Any:
    """A dataclass field described by a :class:`Spec` (typed ``Any`` so it fits any field)."""
    return field(metadata={"spec": Spec(kind, label, **options)})


@dataclass(frozen=True)
class Content:
    """Validated content of one revision. Field order is the order of the form and the API."""

    title: str = spec(
        Kind.LINE,
        N_("标题"),
        max_len=MAX_TITLE,
        doc="One line; surrounding space is trimmed; no control characters.",
    )
    body: str = spec(
        Kind.TEXT,
        N_("正文"),
        max_len=MAX_BODY,
        doc="What is posted to group chats; newlines allowed.",
    )
    spoken_text: str | None = spec(
        Kind.TEXT,
        N_("播音稿"),
        required=False,
        max_len=MAX_SPOKEN,
        doc="What the loudspeaker says; empty or null means the body.",
    )
    topic_id: int | None = spec(
        Kind.REF,
        N_("主题"),
        required=False,
        model=Topic,
        invalid=N_("主题无效"),
        missing=N_("主题 {id} 不存在"),
        doc="An existing topic (GET /topics).",
    )
    priority: Priority = spec(
        Kind.CHOICE,
        N_("优先级"),
        default=Priority.NORMAL.value,
        choices=Priority,
        invalid=N_("优先级应为 normal（普通）或 urgent（紧急）"),
    )
    area_ids: tuple[int, ...] = spec(
        Kind.IDS,
        N_("目标区域"),
        model=Area,
        relation="areas",
        max_items=MAX_AREA_IDS,
        empty=N_("请至少选择一个目标区域"),
        invalid=N_("区域编号“{v}”无效"),
        missing=N_("区域不存在：{ids}"),
        doc="Target areas (GET /areas); each includes everything below it.",
    )
    to_loudspeaker: bool = spec(
        Kind.SWITCH, N_("大喇叭 / 移动音箱"), default=False, channel="loudspeaker"
    )
    to_chats: bool = spec(Kind.SWITCH, N_("群聊"), default=False, channel="chats")
    start_date: date = spec(Kind.DATE, N_("开始日期"), doc="First day on the loudspeakers.")
    end_date: date = spec(
        Kind.DATE,
        N_("结束日期"),
        doc="Last day; not before start_date, not in the past, window at most "
        f"{MAX_WINDOW_DAYS} days.",
    )
    end_time: time | None = spec(
        Kind.TIME,
        N_("最后一天播到"),
        required=False,
        invalid=N_("最后一天的结束时间应为 HH:MM"),
        doc="HH:MM (Asia/Shanghai): on end_date only slots beginning before it play, and no "
        "chat post goes out at or after it (an event that ends that morning). Empty: all day.",
    )
    airtime: Airtime = spec(
        Kind.CHOICE,
        N_("播出时段"),
        default=Airtime.ALL.value,
        choices=Airtime,
        invalid=N_("播出时段无效"),
        doc="Parts of the day it plays in: morning (before 11:00), noon (11:00-15:59), "
        "evening (from 16:00), or all.",
    )
    repeats: int = spec(Kind.INT, N_("重复次数"), default=1, lo=1, hi=MAX_REPEATS)
    chat_post_time: time | None = spec(
        Kind.TIME,
        N_("群聊发送时间"),
        required=False,
        invalid=N_("群聊发送时间应为 HH:MM"),
        doc="HH:MM (Asia/Shanghai); required when channels include chats.",
    )
    voice: str = spec(
        Kind.CHOICE,
        N_("声音"),
        default=DEFAULT_VOICE,
        choices=voice_names,
        invalid=N_("不支持的声音“{v}”"),
    )
    rate: int = spec(
        Kind.INT,
        N_("语速"),
        default=0,
        lo=RATE_RANGE[0],
        hi=RATE_RANGE[1],
        doc="Speaking rate in percent.",
    )

    @classmethod
    def of(cls, rev: Revision) -> Content:
        """The content a revision holds."""
        values: dict[str, Any] = {}
        for s in SPECS:
            if s.kind is Kind.IDS:
                values[s.name] = tuple(sorted(row.id for row in getattr(rev, s.relation)))
            else:
                values[s.name] = getattr(rev, s.name)
        return cls(**values)


SPECS: tuple[Spec, ...] = tuple(replace(f.metadata["spec"], name=f.name) for f in fields(Content))
SPEC = {s.name: s for s in SPECS}
CHANNELS = tuple(s.channel for s in SPECS if s.kind is Kind.SWITCH)

_HHMM = re.compile(r"([0-9]{1,2}):([0-9]{2})")


def _as_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in {"1", "true", "on", "yes", "y"}


def _as_date(errors: Errors, name: str, value: object, label: str) -> date | None:
    text = value if isinstance(value, date) else str(value or "").strip()
    if not text:
        errors.add(name, N_("请填写{label}"), label=label)
        return None
    day = parse_date(text)
    if day is None:
        errors.add(name, N_("{label}应为 YYYY-MM-DD 格式的日期"), label=label)
        return None
    if not in_date_range(day):
        errors.add(
            name,
            N_("{label}应在 {lo} 到 {hi} 之间"),
            label=label,
            lo=MIN_DATE.isoformat(),
            hi=MAX_DATE.isoformat(),
        )
        return None
    return day


def _as_int(errors: Errors, name: str, value: object, label: str, lo: int, hi: int) -> int:
    number = None if isinstance(value, float) else parse_int(value)
    if number is None:
        errors.add(name, N_("{label}应为整数"), label=label)
        return lo
    if not lo <= number <= hi:
        errors.add(name, N_("{label}应在 {lo} 到 {hi} 之间"), label=label, lo=lo, hi=hi)
    return number


def _as_ids(errors: Errors, session: Session, s: Spec, raw: object) -> tuple[int, ...]:
    if isinstance(raw, str):
        raw = [p for p in raw.replace("，", ",").split(",") if p.strip()]
    if not isinstance(raw, list | tuple) or not raw:
        errors.add(s.name, s.empty or N_("请填写{label}"), label=s.label)
        return ()
    ids: list[int] = []
    for item in raw:
        row_id = parse_id(item)
        if row_id is None:
            errors.add(s.name, s.invalid, label=s.label, v=str(item)[:20])
            return ()
        ids.append(row_id)
    assert s.model is not None
    found = set(session.scalars(select(s.model.id).where(s.model.id.in_(ids))))
    missing = [i for i in ids if i not in found]
    if missing:
        errors.add(s.name, s.missing, ids="、".join(map(str, missing[:10])))
    return tuple(sorted(set(ids)))


def _as_ref(errors: Errors, session: Session, s: Spec, raw: object) -> int | None:
    if raw is None or raw == "":
        if s.required:
            errors.add(s.name, s.empty or N_("请填写{label}"), label=s.label)
        return None
    row_id = parse_id(raw)
    if row_id is None:
        errors.add(s.name, s.invalid, label=s.label, v=str(raw)[:20])
    elif session.get(s.model, row_id) is None:  # type: ignore[arg-type]
        errors.add(s.name, s.missing, id=row_id)
    return row_id


def _as_choice(errors: Errors, s: Spec, raw: object) -> Any:
    value = str(raw or s.default)
    if value not in s.choice_values():
        errors.add(s.name, s.invalid, label=s.label, v=value[:60])
        value = s.default
    return s.choices(value) if isinstance(s.choices, enum.EnumMeta) else value


def _as_time(errors: Errors, s: Spec, raw: object) -> time | None:
    text = str(raw or "").strip()
    if not text:
        return None
    match = _HHMM.fullmatch(text)
    if match and int(match[1]) < 24 and int(match[2]) < 60:
        return time(int(match[1]), int(match[2]))
    errors.add(s.name, s.invalid, label=s.label)
    return None


def _field(errors: Errors, session: Session, s: Spec, data: Mapping[str, Any]) -> Any:
    raw = data.get(s.name, s.default)
    match s.kind:
        case Kind.LINE | Kind.TEXT:
            text = clean_text(
                errors,
                s.name,
                raw,
                label=s.label,
                max_len=s.max_len,
                required=s.required,
                multiline=s.kind is Kind.TEXT,
            )
            return text if s.required else text or None
        case Kind.REF:
            return _as_ref(errors, session, s, raw)
        case Kind.IDS:
            return _as_ids(errors, session, s, raw)
        case Kind.CHOICE:
            return _as_choice(errors, s, raw)
        case Kind.SWITCH:
            return _as_bool(raw)
        case Kind.DATE:
            return _as_date(errors, s.name, raw, s.label)
        case Kind.INT:
            assert s.lo is not None and s.hi is not None
            return _as_int(errors, s.name, raw, s.label, s.lo, s.hi)
        case Kind.TIME:
            return _as_time(errors, s, raw)


def parse(
    session: Session, data: Mapping[str, Any], *, today: date, scope: Scope | None = None
) -> Content:
    """Validate raw form or JSON input; raises ValidationError naming every bad field.

    With ``scope``, target areas outside it are refused as if they did not exist.
    """
    errors = Errors()
    values = {s.name: _field(errors, session, s, data) for s in SPECS}
    if scope is not None and "area_ids" not in errors:
        scope.check_areas(session, errors, "area_ids", values["area_ids"] or ())
    # Rules that tie fields together.
    if not any(values[s.name] for s in SPECS if s.kind is Kind.SWITCH):
        errors.add("channels", N_("请至少选择一个发布渠道（大喇叭或群聊）"))
    start, end = values["start_date"], values["end_date"]
    if start and end:
        if end < start:
            errors.add("end_date", N_("结束日期不能早于开始日期"))
        elif (end - start).days + 1 > MAX_WINDOW_DAYS:
            errors.add("end_date", N_("播出期最长 {n} 天"), n=MAX_WINDOW_DAYS)
        elif end < today:
            errors.add("end_date", N_("结束日期已经过去"))
    if values["to_chats"] and values["chat_post_time"] is None and "chat_post_time" not in errors:
        errors.add("chat_post_time", N_("发到群聊时请填写发送时间"))
    post, stop = values["chat_post_time"], values["end_time"]
    if values["to_chats"] and post and stop and start and start == end and post >= stop:
        errors.add(
            "chat_post_time", N_("群聊发送时间应早于活动结束时间 {t}"), t=stop.strftime("%H:%M")
        )
    errors.raise_if_any()
    return Content(**values)


def revision_values(session: Session, content: Content) -> dict[str, Any]:
    """Keyword arguments for a new ``Revision`` holding ``content`` (rows for id lists)."""
    values: dict[str, Any] = {}
    for s in SPECS:
        value = getattr(content, s.name)
        if s.kind is Kind.IDS:
            assert s.model is not None
            values[s.relation] = list(session.scalars(select(s.model).where(s.model.id.in_(value))))
        else:
            values[s.name] = value
    return values
