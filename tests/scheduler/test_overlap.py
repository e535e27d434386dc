"""The one reach rule: an outlet or a chat reaches a notice when their areas overlap in the tree."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from cms.models import Area, ChatGroup, Delivery, JobState, Outlet, Program, Role, User
from cms.services import announcements, budget, chats, share
from cms.services import programs as programs_svc
from cms.tree import overlap
from tests.scheduler.helpers import local


def _demo_area(session, *names: str) -> Area:  # type: ignore[no-untyped-def]
    area = None
    for name in names:
        stmt = select(Area).where(Area.name == name)
        stmt = (
            stmt.where(Area.parent_id == area.id) if area else stmt.where(Area.parent_id.is_(None))
        )
        area = session.scalars(stmt).one()
    assert area is not None
    return area


def test_overlap_is_ancestor_or_equal_either_way(session, grid) -> None:  # type: ignore[no-untyped-def]
    town, v1, v2, g1, g2 = (grid[k] for k in ("town", "v1", "v2", "g1", "g2"))
    assert overlap(v1, g1) and overlap(g1, v1)  # a village and its 组, either way
    assert overlap(g1, town) and overlap(town, g1)
    assert overlap(v1, v1)
    assert not overlap(v1, v2) and not overlap(g1, v2) and not overlap(g1, g2)


def test_a_group_notice_plays_on_its_village_loudspeaker_and_posts_in_its_chat(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, session, today, fresh_session
):
    """Demo seed, 石桥村 → 三组: the village's loudspeaker plays it, named （三组）; the
    village chat gets it; 柳林村 gets nothing; a 组's own outlet hears the township's notices."""
    from cms.demo import seed

    clock.set(local(settings, today, "03:00"))
    seed(session, settings, today=today, now=clock.now() - timedelta(days=1))
    session.commit()
    group = _demo_area(session, "清水镇", "石桥村", "三组")
    village = group.parent
    editor = session.scalars(select(User).where(User.username == "wangli")).one()
    reviewer = session.scalars(select(User).where(User.username == "lishuji")).one()
    ann = announcements.create(
        session,
        editor,
        {
            "title": "三组户长会通知",
            "body": "三组各户户长今晚七点到组活动室开会。",
            "spoken_text": "",
            "priority": "normal",
            "area_ids": [group.id],
            "to_loudspeaker": True,
            "to_chats": True,
            "start_date": today.isoformat(),
            "end_date": today.isoformat(),
            "repeats": 1,
            "chat_post_time": "09:30",
            "voice": "zh-CN-XiaoxiaoNeural",
            "rate": 0,
        },
        today=today,
    )
    announcements.submit(session, editor, ann)
    announcements.approve(session, reviewer, ann, "同意")
    session.commit()

    speaker = session.scalars(select(Outlet).where(Outlet.name == "石桥村村委会大喇叭")).one()
    other = session.scalars(select(Outlet).where(Outlet.name == "柳林村村委会大喇叭")).one()
    assert ann in programs_svc.outlet_announcements(session, speaker, today)
    assert ann not in programs_svc.outlet_announcements(session, other, today)
    village_chat = session.scalars(select(ChatGroup).where(ChatGroup.area_id == village.id)).one()
    assert any(
        n.revision.id == ann.approved_revision_id
        for n in chats.notices_for_chat(session, village_chat, today)
    )
    # The dashboard's plan and the editor's budget read the same rule.
    plan = dict((o.id, anns) for o, anns in announcements.plan_for_day(session, today))
    assert ann in plan[speaker.id] and ann not in plan[other.id]
    spent = budget.budget(
        session, text="测试", rate=0, repeats=1, area_ids=[group.id], start=today, end=today
    )
    assert {s.outlet for s in spent.slots} == {"石桥村村委会大喇叭", "石桥村流动宣传音箱"}
    assert ann in share.for_area(session, village, today)

    scheduler.run_once()
    clock.set(local(settings, today, "07:00"))
    scheduler.run_once()
    s = fresh_session()
    morning = s.scalars(
        select(Program).where(Program.outlet_id == speaker.id, Program.day == today)
    ).all()
    built = next(p for p in morning if p.slot.label == "07:30")
    assert built.state is JobState.DONE
    titles = [i["title"] for i in built.manifest["announcements"]]
    assert "三组户长会通知（三组）" in titles
    assert all(
        "三组户长会通知" not in i["title"]
        for p in s.scalars(select(Program).where(Program.outlet_id == other.id))
        for i in (p.manifest or {}).get("announcements", [])
    )
    deliveries = s.scalars(
        select(Delivery).where(Delivery.revision_id == ann.approved_revision_id)
    ).all()
    assert [d.chat_group_id for d in deliveries] == [village_chat.id]


def test_a_group_outlet_plays_its_village_and_township_notices(  # type: ignore[no-untyped-def]
    session, grid, today, make_announcement, make_user
):
    from cms.services import outlets

    admin = make_user(Role.ADMIN)
    mobile = outlets.save_outlet(
        session,
        admin,
        None,
        name="一组流动音箱",
        kind="mobile",
        area_id=grid["g1"].id,
        slots="09:00 30",
    )
    session.commit()
    town = make_announcement("approved", area_ids=[grid["town"].id], title="全镇通知")
    village = make_announcement("approved", area_ids=[grid["v1"].id], title="石桥村通知")
    other = make_announcement("approved", area_ids=[grid["v2"].id], title="柳林村通知")
    heard = programs_svc.outlet_announcements(session, mobile, today)
    assert town in heard and village in heard and other not in heard
    # Aimed above the outlet: nothing narrower to name.
    assert announcements.narrower_targets(town.approved, grid["g1"]) == []
    assert announcements.narrower_targets(village.approved, grid["town"]) == [grid["v1"]]
