"""Outlets (loudspeakers and mobile speakers) and their daily broadcast slots."""

from __future__ import annotations

import re
from datetime import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.models import Area, Outlet, OutletKind, Slot, User
from cms.services import audit
from cms.services.errors import N_, Errors, NotFound
from cms.services.labels import ENGINE_MODE_LABELS
from cms.services.scope import Scope
from cms.services.text import clean_text, parse_choice, parse_id, parse_int

_HHMM = re.compile(r"([0-9]{1,2}):([0-9]{2})")
OUTLET_KIND_LABELS = {OutletKind.LOUDSPEAKER: N_("固定大喇叭"), OutletKind.MOBILE: N_("移动音箱")}
RECORDING_ONLY = "recording"
OUTLET_ENGINES = {**ENGINE_MODE_LABELS, RECORDING_ONLY: N_("只播录音（没有录音的公告不播）")}
"""Engine modes an outlet may choose: the township's, or recordings only."""


def parse_slots(errors: Errors, raw: object) -> list[tuple[time, int]]:
    """Parse "07:30 10, 12:00, 19:30 15" (time and optional minutes, comma or newline separated)."""
    if isinstance(raw, list):
        items = [str(x) for x in raw]
    else:
        items = [p for p in str(raw or "").replace("，", ",").replace("\n", ",").split(",")]
    slots: dict[time, int] = {}
    for item in (i.strip() for i in items):
        if not item:
            continue
        parts = item.split()
        match = _HHMM.fullmatch(parts[0].replace("：", ":"))
        minutes = parse_int(parts[1]) if len(parts) == 2 else 10 if len(parts) == 1 else None
        try:
            if match is None or minutes is None or not 1 <= minutes <= 120:
                raise ValueError
            at = time(int(match[1]), int(match[2]))
        except ValueError:
            errors.add(
                "slots",
                N_("播出时段“{item}”格式不对，应为 HH:MM 或 HH:MM 分钟数（1–120）"),
                item=item,
            )
            continue
        if at in slots:
            errors.add("slots", N_("播出时段 {t} 重复"), t=at.strftime("%H:%M"))
        slots[at] = minutes
    return sorted(slots.items())


def save_outlet(
    session: Session,
    actor: User,
    outlet: Outlet | None,
    *,
    name: object,
    kind: object,
    area_id: object,
    slots: object,
    loop_minutes: object = 30,
    note: object = "",
    active: bool = True,
    voice: object = None,
    tts_engine: object = None,
) -> Outlet:
    """Create (outlet is None) or update an outlet with its slots."""
    errors = Errors()
    clean = clean_text(errors, "name", name, label=N_("名称"), max_len=80)
    parsed_kind = parse_choice(
        errors, "kind", kind, OutletKind, OutletKind.LOUDSPEAKER, N_("广播点类型无效")
    )
    parsed_area = parse_id(area_id)
    area = session.get(Area, parsed_area) if parsed_area is not None else None
    if area is None or not Scope.of(actor).contains(area):
        errors.add("area_id", N_("请选择存在的区域"))
    if outlet is None and area is not None and not str(slots or "").strip():
        # A new outlet left without slots gets its township's default slots.
        slots = tree.default_slots(session, area)
    parsed_slots = parse_slots(errors, slots)
    if not parsed_slots and "slots" not in errors:
        errors.add("slots", N_("至少设置一个播出时段"))
    loop = parse_int(loop_minutes)
    if loop is None or not 1 <= loop <= 240:
        errors.add("loop_minutes", N_("循环时长应为 1–240 分钟"))
        loop = 30
    clean_note = clean_text(
        errors, "note", note, label=N_("备注"), max_len=500, required=False, multiline=True
    )
    parsed_voice = str(voice or "").strip() or None
    parsed_engine = str(tts_engine or "").strip() or None
    from audio.voices import VOICES

    if parsed_voice is not None and parsed_voice not in VOICES:
        errors.add("voice", N_("请选择列表中的声音"))
    if parsed_engine is not None and parsed_engine not in OUTLET_ENGINES:
        errors.add("tts_engine", N_("语音引擎无效"))
    errors.raise_if_any()
    assert area is not None
    creating = outlet is None
    if outlet is None:
        outlet = Outlet(name=clean, kind=parsed_kind, area=area)
        session.add(outlet)
    outlet.name, outlet.kind, outlet.area, outlet.loop_minutes = clean, parsed_kind, area, loop
    outlet.note, outlet.active = clean_note, active
    outlet.voice, outlet.tts_engine = parsed_voice, parsed_engine
    existing = {s.at: s for s in outlet.slots}
    wanted = dict(parsed_slots)
    outlet.slots = [existing.get(at) or Slot(at=at) for at in sorted(wanted)]
    for slot in outlet.slots:
        slot.minutes = wanted[slot.at]
    session.flush()
    audit.record(
        session,
        actor,
        "outlet.create" if creating else "outlet.update",
        outlet,
        name=clean,
        slots=[f"{t:%H:%M} {m}" for t, m in parsed_slots],
        voice=parsed_voice,
        tts_engine=parsed_engine,
    )
    return outlet


def get_outlet(session: Session, outlet_id: int) -> Outlet:
    outlet = session.get(Outlet, outlet_id)
    if outlet is None:
        raise NotFound(N_("广播点 {id} 不存在"), id=outlet_id)
    return outlet


def all_outlets(session: Session, scope: Scope | None = None) -> list[Outlet]:
    stmt = select(Outlet).order_by(Outlet.area_id, Outlet.name)
    if scope is not None:
        stmt = stmt.where(scope.outlets())
    return list(session.scalars(stmt))
