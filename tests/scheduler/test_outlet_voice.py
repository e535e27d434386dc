"""A voice per outlet: set on the outlet, inherited when unset, followed by its programs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cms.models import Clip, ClipProfile, JobState, Program
from cms.services import outlets as outlet_svc
from cms.services.errors import ValidationError
from tests.scheduler.helpers import local


def _built(fresh_session: Any, today: Any) -> dict[str, Program]:
    s = fresh_session()
    rows = s.scalars(select(Program).where(Program.day == today)).all()
    return {p.outlet.name: p for p in rows if p.slot.label == "07:30"}


def _set_voice(session: Any, admin: Any, outlet: Any, voice: str, engine: str = "") -> None:
    outlet_svc.save_outlet(
        session,
        admin,
        outlet,
        name=outlet.name,
        kind=outlet.kind.value,
        area_id=outlet.area_id,
        slots="07:30 10",
        voice=voice,
        tts_engine=engine,
    )
    session.commit()


def test_an_outlet_speaks_with_its_own_voice(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, session, grid, today, make_outlet, make_announcement, admin,
    fresh_session,
):  # fmt: skip
    plain = make_outlet(grid["v1"], "07:30 10", name="石桥大喇叭")
    male = make_outlet(grid["v1"], "07:30 10", name="石桥男声喇叭")
    assert plain.voice is None and plain.tts_engine is None  # inherited by default
    _set_voice(session, admin, male, "zh-CN-YunjianNeural")
    ann = make_announcement(
        "approved", title="清扫通知", body="周六上午九点清扫村道。", repeats=1,
        area_ids=[grid["v1"].id], voice="zh-CN-XiaoxiaoNeural",
    )  # fmt: skip
    clock.set(local(settings, today, "04:30"))
    scheduler.run_once()
    built = _built(fresh_session, today)
    default, own = built["石桥大喇叭"], built["石桥男声喇叭"]
    assert default.state is JobState.DONE and own.state is JobState.DONE
    clip = fresh_session().scalar(
        select(Clip).where(Clip.revision_id == ann.approved_revision_id,
                           Clip.profile == ClipProfile.LOUDSPEAKER)
    )  # fmt: skip
    (default_item,) = default.manifest["items"]
    (own_item,) = own.manifest["items"]
    # The inherited outlet plays the announcement's clip; the other its own rendering.
    assert default_item["clip"] == Path(clip.path).stem
    assert own_item["clip"] != default_item["clip"]
    assert scheduler.ctx.renderer.get_clip(default_item["clip"]).voice == "zh-CN-XiaoxiaoNeural"
    assert scheduler.ctx.renderer.get_clip(own_item["clip"]).voice == "zh-CN-YunjianNeural"
    assert default.input_hash != own.input_hash
    assert Path(default.path).read_bytes() != Path(own.path).read_bytes()
    # A change of the outlet's voice rebuilds its program, and only its.
    _set_voice(session, admin, male, "zh-CN-YunyangNeural")
    clock.set(local(settings, today, "04:40"))
    scheduler.run_once()
    again = _built(fresh_session, today)
    assert again["石桥男声喇叭"].input_hash != own.input_hash
    assert again["石桥大喇叭"].input_hash == default.input_hash


def test_a_recording_only_outlet_skips_synthesis(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, session, grid, today, make_outlet, make_announcement, admin,
    fresh_session,
):  # fmt: skip
    dialect = make_outlet(grid["v1"], "07:30 10", name="方言喇叭")
    _set_voice(session, admin, dialect, "", "recording")
    make_announcement(
        "approved", title="清扫通知", body="周六上午九点清扫村道。", repeats=1,
        area_ids=[grid["v1"].id],
    )  # fmt: skip
    clock.set(local(settings, today, "04:30"))
    scheduler.run_once()
    program = _built(fresh_session, today)["方言喇叭"]
    assert program.manifest["items"] == []
    (skipped,) = program.manifest["skipped"]
    assert "只播放录音" in skipped["reason"]


def test_outlet_voice_is_validated(session: Any, grid: Any, make_outlet: Any, admin: Any) -> None:
    outlet = make_outlet(grid["v1"], "07:30 10")
    with pytest.raises(ValidationError):
        _set_voice(session, admin, outlet, "<script>")
    session.rollback()
    with pytest.raises(ValidationError):
        _set_voice(session, admin, outlet, "", "espeak")
