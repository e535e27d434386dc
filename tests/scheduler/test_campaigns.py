"""County campaigns through the real scheduler: one township adopts, one adapts, one waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cms.models import (
    Announcement,
    Delivery,
    DeliveryState,
    JobState,
    OutboxMessage,
    Program,
    Revision,
    Role,
    Status,
)
from cms.services import announcements, campaigns, operators
from cms.services.errors import NotFound, PermissionDenied, WorkflowError
from cms.services.scope import Scope
from tests.helpers import make_county
from tests.scheduler.helpers import local

COUNTY_TITLE = "县委宣传部：森林防火宣传月"
COUNTY_BODY = "进入森林防火期，严禁野外用火，发现火情请拨打12119。"
COUNTY_SPOKEN = "进入森林防火期，严禁野外用火，发现火情请拨打幺二幺幺九。"
B_TITLE = "幸福镇：森林防火，人人有责"
B_BODY = "幸福镇各村：清明祭扫请文明祭祀，严禁上山烧纸。"


@pytest.fixture
def county(session, make_user):  # type: ignore[no-untyped-def]
    return make_county(session, make_user)


def _campaign(session, county, content, today, area_ids):  # type: ignore[no-untyped-def]
    editor = county.users[("county", Role.EDITOR)]
    camp = announcements.create(
        session,
        editor,
        content(
            title=COUNTY_TITLE,
            body=COUNTY_BODY,
            spoken_text=COUNTY_SPOKEN,
            area_ids=area_ids,
            repeats=1,
            chat_post_time="09:00",
        ),
        today=today,
        campaign=True,
    )
    announcements.submit(session, editor, camp)
    session.commit()
    return camp


def _listed(program: Program) -> list[int]:
    return [i["announcement_id"] for i in (program.manifest or {}).get("announcements", [])]


def test_adopted_and_adapted_go_out_with_their_own_texts(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, session, county, content, today, make_outlet, make_chat,
    fresh_session,
):  # fmt: skip
    """A adopts as is, B adapts, C does nothing: the scheduler builds and posts accordingly."""
    outlets = {
        k: make_outlet(v, "07:30 10", name=f"{v.name}喇叭") for k, v in county.villages.items()
    }
    chats = {
        k: make_chat(v, platform="outbox", title=f"{v.name}群") for k, v in county.villages.items()
    }
    camp = _campaign(
        session, county, content, today,
        [county.towns["a"].id, county.villages["b"].id, county.towns["c"].id],
    )  # fmt: skip

    # County review gates the campaign: not offered to townships before approval.
    a_editor = county.users[("a", Role.EDITOR)]
    assert campaigns.offered_to(session, county.towns["a"]) == []
    with pytest.raises(WorkflowError):
        campaigns.adopt(session, a_editor, camp, county.towns["a"])
    # A township reviewer cannot approve the county's campaign (not even find it).
    with pytest.raises(NotFound):
        announcements.approve(session, county.users[("a", Role.REVIEWER)], camp)
    announcements.approve(session, county.users[("county", Role.REVIEWER)], camp)
    session.commit()
    assert camp.status is Status.APPROVED
    assert [t.name for t in campaigns.townships(session, camp.approved)] == [
        "后箐乡", "幸福镇", "茂兰镇",
    ]  # fmt: skip
    assert campaigns.offered_to(session, county.towns["b"]) == [camp]

    # Approved but adopted by nobody: nothing goes out anywhere.
    session.commit()  # end the read transaction before the scheduler writes
    clock.set(local(settings, today, "03:00"))
    scheduler.run_once()
    s = fresh_session()
    progs = s.scalars(select(Program).where(Program.day == today)).all()
    assert len(progs) == 3 and all(p.state is JobState.DONE and _listed(p) == [] for p in progs)

    # A adopts as is; B adapts (its editor rewrites, its reviewer approves).
    adopted = campaigns.adopt(session, a_editor, camp, county.towns["a"])
    assert adopted.status is Status.APPROVED and adopted.origin_id == camp.id
    assert [t.id for t in adopted.approved.areas] == [county.towns["a"].id]
    b_editor = county.users[("b", Role.EDITOR)]
    adapted = campaigns.adapt(session, b_editor, camp, county.towns["b"])
    assert adapted.status is Status.DRAFT and adapted.current.title == COUNTY_TITLE
    assert [t.id for t in adapted.current.areas] == [county.villages["b"].id]
    announcements.update(
        session, b_editor, adapted,
        content(title=B_TITLE, body=B_BODY, spoken_text="", area_ids=[county.villages["b"].id],
                repeats=1, chat_post_time="10:00"),
        today=today,
    )  # fmt: skip
    announcements.submit(session, b_editor, adapted)
    announcements.approve(session, county.users[("b", Role.REVIEWER)], adapted)
    session.commit()
    assert adapted.adoption == campaigns.ADAPTED and adapted.approved.title == B_TITLE
    session.commit()

    # The next pass rebuilds A's and B's programs, each with its own township's copy.
    clock.set(local(settings, today, "04:00"))
    scheduler.run_once()
    s = fresh_session()
    progs = {p.outlet_id: p for p in s.scalars(select(Program).where(Program.day == today))}
    assert _listed(progs[outlets["a"].id]) == [adopted.id]
    assert _listed(progs[outlets["b"].id]) == [adapted.id]
    assert _listed(progs[outlets["c"].id]) == []
    by_rev = {
        i["revision_id"]: i
        for p in progs.values()
        for i in (p.manifest or {}).get("announcements", [])
    }
    a_rev = s.get(Revision, progs[outlets["a"].id].manifest["announcements"][0]["revision_id"])
    b_rev = s.get(Revision, progs[outlets["b"].id].manifest["announcements"][0]["revision_id"])
    assert (a_rev.title, a_rev.speech) == (COUNTY_TITLE, COUNTY_SPOKEN)
    assert (b_rev.title, b_rev.speech) == (B_TITLE, B_BODY)
    assert len(by_rev) == 2

    # Chats: A's at the county's 09:00 with the county's text, B's at its own 10:00.
    clock.set(local(settings, today, "09:01"))
    scheduler.run_once()
    s = fresh_session()
    texts = {
        m.chat_group_id: m.text
        for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "text"))
    }
    assert COUNTY_BODY in texts[chats["a"].id] and chats["b"].id not in texts
    clock.set(local(settings, today, "10:01"))
    scheduler.run_once()
    s = fresh_session()
    texts = {
        m.chat_group_id: m.text
        for m in s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "text"))
    }
    assert B_BODY in texts[chats["b"].id] and COUNTY_BODY not in texts[chats["b"].id]
    assert chats["c"].id not in texts
    sent = s.scalars(select(Delivery).where(Delivery.state == DeliveryState.SENT)).all()
    assert {d.chat_group_id for d in sent} == {chats["a"].id, chats["b"].id}

    # The county's report: built, downloaded, confirmed, posted, per township and village.
    s = fresh_session()
    a_prog = s.get(Program, progs[outlets["a"].id].id)
    operators.record_download(s, outlets["a"].id, today, "mp3", program_id=a_prog.id)
    operators.confirm_playback(
        s, a_prog, None, "link", local(settings, today, "07:35"), tz=settings.tz
    )
    operators.record_download(s, outlets["b"].id, today, "zip")  # the whole day, no program
    s.commit()
    county_user = s.merge(county.users[("county", Role.REVIEWER)])
    rows = campaigns.report(s, Scope.of(county_user))
    got = {
        r.area.name: (r.adoption, r.built, r.downloaded, r.confirmed, r.posted)
        for r in rows
        if r.campaign.id == camp.id
    }
    # Built: today's program and tomorrow's (made a day early); today's was fetched.
    assert got["后箐乡"] == ("adopted", 2, 1, 1, 1)
    assert got["后箐村"] == ("adopted", 2, 1, 1, 1)
    assert got["幸福镇"] == ("adapted", 2, 1, 0, 1)
    assert got["茂兰镇"] == (None, 0, 0, 0, 0)
    # A township sees only its own rows (the county's campaigns are not its own to report).
    a_user = s.merge(a_editor)
    assert all(r.area.path.startswith(county.towns["a"].path) for r in
               campaigns.report(s, Scope.of(a_user), [s.get(Announcement, camp.id)]))  # fmt: skip

    # The county withdraws the campaign: A's copy (the county's words) stops; B's stays.
    camp2 = s.get(Announcement, camp.id)
    announcements.withdraw(s, s.merge(county.users[("county", Role.EDITOR)]), camp2, "改期")
    s.commit()
    assert s.get(Announcement, adopted.id).status is Status.WITHDRAWN
    assert s.get(Announcement, adapted.id).status is Status.APPROVED
    tomorrow = today + timedelta(days=1)
    plan = dict((o.id, [a.id for a in anns]) for o, anns in announcements.plan_for_day(s, tomorrow))
    assert plan[outlets["a"].id] == [] and plan[outlets["b"].id] == [adapted.id]


def test_scoping_of_adoption(session, county, content, today):  # type: ignore[no-untyped-def]
    """B cannot adopt for A; townships cannot edit the county's original; no double copies."""
    camp = _campaign(session, county, content, today, [county.towns["a"].id, county.towns["b"].id])
    announcements.approve(session, county.users[("county", Role.REVIEWER)], camp)
    session.commit()
    b_editor = county.users[("b", Role.EDITOR)]
    with pytest.raises(NotFound):
        campaigns.adopt(session, b_editor, camp, county.towns["a"])
    with pytest.raises(NotFound):
        campaigns.adapt(session, b_editor, camp, county.towns["a"])
    # A township editor cannot edit, submit or withdraw the county original.
    with pytest.raises(NotFound):
        announcements.update(session, b_editor, camp, content(title="改掉"), today=today)
    with pytest.raises(NotFound):
        announcements.withdraw(session, b_editor, camp)
    # Only county editors draft campaigns.
    with pytest.raises(PermissionDenied):
        announcements.create(
            session, b_editor, content(area_ids=[county.villages["b"].id]), today=today,
            campaign=True,
        )  # fmt: skip
    # A campaign not aimed at C is not found for C.
    c_editor = county.users[("c", Role.EDITOR)]
    with pytest.raises(NotFound):
        campaigns.adopt(session, c_editor, camp, county.towns["c"])
    with pytest.raises(NotFound):
        campaigns.get_offered(session, c_editor, camp.id)
    assert campaigns.get_offered(session, b_editor, camp.id) is camp
    # Reviewers may adopt as is, not adapt; one copy per township.
    b_reviewer = county.users[("b", Role.REVIEWER)]
    with pytest.raises(PermissionDenied):
        campaigns.adapt(session, b_reviewer, camp, county.towns["b"])
    copy = campaigns.adopt(session, b_reviewer, camp, county.towns["b"])
    with pytest.raises(WorkflowError):
        campaigns.adapt(session, b_editor, camp, county.towns["b"])
    session.commit()
    # The database holds the line too (two officers at the same moment).
    session.add(
        Announcement(created_by_id=b_editor.id, area_id=county.towns["b"].id, origin_id=camp.id)
    )
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    # A's editor does not see B's copy.
    a_editor = county.users[("a", Role.EDITOR)]
    with pytest.raises(NotFound):
        announcements.get(session, copy.id, a_editor)


def test_adopted_copies_follow_the_county_and_editing_makes_them_adapted(  # type: ignore[no-untyped-def]
    session, county, content, today,
):  # fmt: skip
    camp = _campaign(session, county, content, today, [county.top.id])
    county_reviewer = county.users[("county", Role.REVIEWER)]
    announcements.approve(session, county_reviewer, camp)
    a_copy = campaigns.adopt(session, county.users[("a", Role.EDITOR)], camp, county.towns["a"])
    b_copy = campaigns.adopt(session, county.users[("b", Role.EDITOR)], camp, county.towns["b"])
    announcements.update(
        session, county.users[("county", Role.EDITOR)], camp,
        content(title="县委宣传部：修改中", area_ids=[county.top.id]), today=today,
    )  # fmt: skip
    # While the county revises, the approved revision stays pinned and offered.
    assert camp.status is Status.DRAFT and campaigns.offered_to(session, county.towns["c"]) == [
        camp
    ]
    c_copy = campaigns.adopt(session, county.users[("c", Role.REVIEWER)], camp, county.towns["c"])
    assert c_copy.approved.title == COUNTY_TITLE
    session.commit()
    assert [t.id for t in a_copy.approved.areas] == [county.towns["a"].id]
    # The words are the county's: the copy's revision names the county's author.
    assert a_copy.approved.author_id == county.users[("county", Role.EDITOR)].id
    # B edits its copy: it becomes B's adaptation, back to B's review.
    b_editor = county.users[("b", Role.EDITOR)]
    announcements.update(
        session, b_editor, b_copy, content(title="幸福镇版本", area_ids=[county.towns["b"].id]),
        today=today,
    )  # fmt: skip
    assert b_copy.adoption == campaigns.ADAPTED and b_copy.status is Status.DRAFT
    # The county revises and approves again, now for A and B only: A's adopted copy follows,
    # B's adaptation does not, C's adopted copy stops (the campaign no longer reaches C).
    county_editor = county.users[("county", Role.EDITOR)]
    announcements.update(
        session, county_editor, camp,
        content(title="县委宣传部：第二版",
                area_ids=[county.towns["a"].id, county.towns["b"].id]),
        today=today,
    )  # fmt: skip
    announcements.submit(session, county_editor, camp)
    announcements.approve(session, county_reviewer, camp)
    session.commit()
    assert a_copy.approved.title == "县委宣传部：第二版" and a_copy.status is Status.APPROVED
    assert b_copy.current.title == "幸福镇版本"
    assert c_copy.status is Status.WITHDRAWN
