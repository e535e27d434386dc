"""Per-township settings in the scheduler: build times, lexicons and the office in chat posts."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import tree
from cms.jobs import renders
from cms.models import Area, AreaKind, Clip, ClipProfile, LexiconEntry, OutboxMessage, Program
from cms.services import areas, township
from tests.scheduler.helpers import local


@pytest.fixture
def towns(session: Session) -> dict[str, Area]:
    """Two sibling townships with a village each (an install of several townships)."""
    a = areas.create_area(session, None, name="后箐乡", kind=AreaKind.TOWNSHIP, parent_id=None)
    b = areas.create_area(session, None, name="幸福镇", kind=AreaKind.TOWNSHIP, parent_id=None)
    va = areas.create_area(session, None, name="大箐村", kind=AreaKind.VILLAGE, parent_id=a.id)
    vb = areas.create_area(session, None, name="新寨村", kind=AreaKind.VILLAGE, parent_id=b.id)
    session.commit()
    return {"a": a, "b": b, "va": va, "vb": vb}


def _tomorrow_outlets(s: Session, day) -> set[int]:  # type: ignore[no-untyped-def]
    return set(s.scalars(select(Program.outlet_id).where(Program.day == day)))


def test_two_townships_build_tomorrow_at_their_own_times(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, towns, make_outlet, session, fresh_session
):
    early = make_outlet(towns["va"], "07:30 10")
    late = make_outlet(towns["vb"], "07:30 10")
    township.save(session, None, towns["a"], {tree.BUILD_TIME: "02:30"})
    township.save(session, None, towns["b"], {tree.BUILD_TIME: "06:00"})
    session.commit()
    tomorrow = today + timedelta(days=1)

    clock.set(local(settings, today, "02:00"))  # before both
    scheduler.plan()
    assert _tomorrow_outlets(fresh_session(), tomorrow) == set()
    assert _tomorrow_outlets(fresh_session(), today) == {early.id, late.id}  # today: always

    clock.set(local(settings, today, "05:00"))  # after 后箐乡's 02:30 and the global 04:00
    scheduler.plan()
    assert _tomorrow_outlets(fresh_session(), tomorrow) == {early.id}

    clock.set(local(settings, today, "06:01"))
    scheduler.plan()
    assert _tomorrow_outlets(fresh_session(), tomorrow) == {early.id, late.id}


def test_a_township_without_its_own_time_follows_the_global_then_the_environment(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, towns, make_outlet, session, fresh_session
):
    outlet = make_outlet(towns["vb"], "07:30 10")
    tomorrow = today + timedelta(days=1)
    assert settings.build_time == "04:00"
    clock.set(local(settings, today, "04:01"))  # the environment's 04:00 has passed …
    township.save(session, None, None, {tree.BUILD_TIME: "05:00"})  # … the global not
    session.commit()
    scheduler.plan()
    assert _tomorrow_outlets(fresh_session(), tomorrow) == set()
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()
    assert _tomorrow_outlets(fresh_session(), tomorrow) == {outlet.id}


def test_a_township_entry_overrides_the_county_one_in_that_townships_clips_only(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, towns, make_announcement, session, fresh_session
):
    body = "长街今晚停水。"
    in_a = make_announcement(
        "approved", body=body, area_ids=[towns["va"].id], to_chats=False, repeats=1
    )
    in_b = make_announcement(
        "approved", body=body, area_ids=[towns["vb"].id], to_chats=False, repeats=1
    )
    session.add(LexiconEntry(written="长街", spoken="常街"))  # the county's
    session.commit()
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()

    def clips() -> dict[int, Clip]:
        return {
            c.revision_id: c
            for c in fresh_session().scalars(
                select(Clip).where(Clip.profile == ClipProfile.LOUDSPEAKER)
            )
        }

    before = clips()
    session.add(LexiconEntry(area_id=towns["a"].id, written="长街", spoken="场街"))
    session.commit()
    assert scheduler.plan().planned_clips == 1  # only 后箐乡's clip is re-rendered
    after = clips()
    rev_a, rev_b = in_a.approved_revision_id, in_b.approved_revision_id
    assert after[rev_a].cache_key != before[rev_a].cache_key
    assert after[rev_b].cache_key == before[rev_b].cache_key
    s = fresh_session()
    job_a = renders._load(s, after[rev_a].id, settings.tts_engine)
    job_b = renders._load(s, after[rev_b].id, settings.tts_engine)
    assert job_a is not None and job_a.lexicon == [("长街", "场街")]
    assert job_b is not None and job_b.lexicon == [("长街", "常街")]


def test_a_township_engine_mode_changes_its_clips_key_and_renderer(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, towns, make_announcement, session, fresh_session
):
    ann = make_announcement("approved", area_ids=[towns["va"].id], to_chats=False, repeats=1)
    clock.set(local(settings, today, "05:00"))
    scheduler.plan()
    key = fresh_session().scalar(select(Clip.cache_key))
    township.save(session, None, towns["a"], {tree.TTS_ENGINE: "edge"})
    session.commit()
    assert scheduler.plan().planned_clips == 1
    clip = fresh_session().scalar(select(Clip).where(Clip.revision_id == ann.approved_revision_id))
    assert clip.cache_key != key
    job = renders._load(fresh_session(), clip.id, settings.tts_engine)
    assert job is not None and job.engine == "edge"
    assert scheduler.ctx.renderer_for("edge") is not scheduler.ctx.renderer
    # A mode this install cannot run (no neural model) falls back to the install's renderer.
    assert scheduler.ctx.renderer_for("neural") is scheduler.ctx.renderer


def test_chat_posts_are_signed_by_the_chats_own_township(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, towns, make_announcement, make_chat, session,
    fresh_session,
):  # fmt: skip
    chat_a = make_chat(towns["va"])
    chat_b = make_chat(towns["vb"])
    township.save(session, None, towns["a"], {tree.OFFICE_NAME: "后箐乡人民政府"})
    session.commit()
    make_announcement(
        "approved",
        body="明天上午停电。",
        area_ids=[towns["va"].id, towns["vb"].id],
        to_loudspeaker=False,
        chat_post_time="05:00",
    )
    clock.set(local(settings, today, "05:30"))
    for _ in range(3):
        scheduler.run_once()
    texts = {
        m.chat_group_id: m.text
        for m in fresh_session().scalars(select(OutboxMessage).where(OutboxMessage.kind == "text"))
    }
    assert texts[chat_a.id].endswith("明天上午停电。\n\n后箐乡人民政府")
    assert texts[chat_b.id].endswith("明天上午停电。\n\n幸福镇宣传办")
