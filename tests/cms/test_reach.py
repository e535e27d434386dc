"""Reach you can see: the editor's preview, the refusal of a notice that reaches nothing,
the notice's page after approval and its honest status line."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cms.models import Announcement, Area, ChatGroup, Delivery, DeliveryState, Role, Status
from cms.services import announcements, outlets, reach
from cms.services.errors import Message, ValidationError
from tests.conftest import login


def _form(data: dict[str, Any]) -> dict[str, Any]:
    form = {k: v for k, v in data.items() if k not in {"to_loudspeaker", "to_chats"}}
    for key in ("to_loudspeaker", "to_chats"):
        if data.get(key):
            form[key] = "on"
    return form


def _local_today(settings: Any) -> date:
    return datetime.now(settings.tz).date()


@pytest.fixture
def reached(session: Session, grid: dict[str, Area], make_user: Any) -> dict[str, Any]:
    """石桥村 (v1) has a loudspeaker and a village chat; 柳林村 (v2) has neither."""
    admin = make_user(Role.ADMIN)
    speaker = outlets.save_outlet(
        session,
        admin,
        None,
        name="石桥村村委会大喇叭",
        kind="loudspeaker",
        area_id=grid["v1"].id,
        slots="07:30 10, 19:30 15",
    )
    chat = ChatGroup(
        platform="wecom", chat_id="wecom:abc", title="石桥村民群", area_id=grid["v1"].id
    )
    session.add(chat)
    session.commit()
    return {"speaker": speaker, "chat": chat}


def _at(settings: Any, day: date, hhmm: str) -> datetime:
    return datetime.combine(day, time.fromisoformat(hhmm), tzinfo=settings.tz)


def test_status_line_is_honest_about_the_first_and_last_play(
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_announcement: Any,
    settings: Any,
    today: date,
) -> None:
    ann = make_announcement(
        "approved",
        area_ids=[grid["g1"].id],
        start_date=today.isoformat(),
        end_date=(today + timedelta(days=1)).isoformat(),
    )
    tz = settings.tz

    def line(day: date, hhmm: str) -> str:
        s = reach.status_line(session, ann, _at(settings, day, hhmm), tz)
        return Message(s.label, s.params).render()

    # Approved at 02:59: nothing has played yet.
    assert line(today, "02:59") == "已批准 · 首播 07:30 石桥村村委会大喇叭"
    assert line(today, "07:31") == "播出中"
    assert line(today + timedelta(days=1), "19:29") == "播出中"
    assert line(today + timedelta(days=1), "19:31") == "已结束"
    # Before its first day: the date is named.
    later = make_announcement(
        "approved",
        area_ids=[grid["v1"].id],
        start_date=(today + timedelta(days=2)).isoformat(),
        end_date=(today + timedelta(days=3)).isoformat(),
    )
    s = reach.status_line(session, later, _at(settings, today, "08:00"), tz)
    assert Message(s.label, s.params).render() == (
        f"已批准 · 首播 {(today + timedelta(days=2)):%m-%d} 07:30 石桥村村委会大喇叭"
    )


def test_a_county_campaign_waits_for_its_townships(
    session: Session, make_user: Any, settings: Any
) -> None:
    from tests.helpers import make_county

    county = make_county(session, make_user)
    editor = county.users[("county", Role.EDITOR)]
    reviewer = county.users[("county", Role.REVIEWER)]
    day = _local_today(settings)
    data = {
        "title": "县级森林防火宣传",
        "body": "进入防火期，严禁野外用火。",
        "spoken_text": "",
        "priority": "normal",
        "area_ids": [county.top.id],
        "to_loudspeaker": True,
        "to_chats": True,
        "start_date": day.isoformat(),
        "end_date": day.isoformat(),
        "repeats": 1,
        "chat_post_time": "09:00",
        "voice": "zh-CN-XiaoxiaoNeural",
        "rate": 0,
    }
    camp = announcements.create(session, editor, data, today=day, campaign=True)
    announcements.submit(session, editor, camp)
    # A campaign plays nowhere itself: it is never refused for reaching nothing.
    reach.require_reach(session, camp, datetime.now(settings.tz), settings.tz)
    announcements.approve(session, reviewer, camp, "同意")
    session.commit()
    s = reach.status_line(session, camp, datetime.now(settings.tz), settings.tz)
    assert (s.key, Message(s.label, s.params).render()) == ("campaign", "县级活动 · 待乡镇采用")


def test_the_editor_sees_where_a_group_notice_goes(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_user: Any,
    content: Any,
    settings: Any,
) -> None:
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    empty = client.get("/announcements/new").get_data(as_text=True)
    assert 'data-testid="reach-empty"' in empty
    day = _local_today(settings) + timedelta(days=1)
    data = _form(
        content(
            area_ids=[grid["g1"].id],
            start_date=day.isoformat(),
            end_date=day.isoformat(),
            chat_post_time="09:30",
        )
    )
    fragment = client.post("/announcements/reach", data=data, headers={"X-Requested-With": "fetch"})
    html = fragment.get_data(as_text=True)
    assert fragment.status_code == 200 and "<html" not in html
    assert "石桥村村委会大喇叭" in html and "（一组）" in html
    assert (
        "07:30、19:30" in html and f'首播 <span data-testid="first-play">{day:%m-%d} 07:30' in html
    )
    assert "石桥村民群" in html and "企业微信" in html and f"发送 {day:%m-%d} 09:30" in html
    # Only the chats: the loudspeaker drops out of the list.
    chats_only = {k: v for k, v in data.items() if k != "to_loudspeaker"}
    html = client.post(
        "/announcements/reach", data=chats_only, headers={"X-Requested-With": "fetch"}
    ).get_data(as_text=True)
    assert "石桥村村委会大喇叭" not in html and "石桥村民群" in html
    # Aimed where nothing plays: said at once.
    html = client.post(
        "/announcements/reach",
        data={**data, "area_ids": [grid["v2"].id]},
        headers={"X-Requested-With": "fetch"},
    ).get_data(as_text=True)
    assert 'data-testid="reach-nothing"' in html
    # Without scripts the button brings the whole editor back with the list filled in.
    page = client.post("/announcements/reach", data=data).get_data(as_text=True)
    assert 'id="announcement-form"' in page and "石桥村村委会大喇叭" in page and "（一组）" in page
    assert 'value="垃圾分类从我做起"' in page  # what was typed is kept


def test_a_notice_that_reaches_nothing_is_refused_at_submission(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_user: Any,
    content: Any,
    make_announcement: Any,
    settings: Any,
) -> None:
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    data = _form(content(area_ids=[grid["v2"].id]))
    response = client.post("/announcements/new", data={**data, "action": "submit"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'data-field="area_ids"' in html and "所选区域没有可用于所选渠道的大喇叭或群聊" in html
    assert 'value="垃圾分类从我做起"' in html
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Announcement)) == 0
    # A saved draft's 提交审核 button says the same, and the draft stays a draft.
    draft = make_announcement("draft", author=editor, area_ids=[grid["v2"].id])
    response = client.post(f"/announcements/{draft.id}/submit", follow_redirects=True)
    assert "所选区域没有可用于所选渠道的大喇叭或群聊" in response.get_data(as_text=True)
    session.refresh(draft)
    assert draft.status is Status.DRAFT
    # The service says it too, on the targets field.
    with pytest.raises(ValidationError) as refused:
        reach.require_reach(session, draft, datetime.now(settings.tz), settings.tz)
    assert set(refused.value.errors) == {"area_ids"}
    # Aimed at 石桥村's 一组: its village loudspeaker plays it, so it goes to review.
    ok = client.post(
        "/announcements/new", data={**_form(content(area_ids=[grid["g1"].id])), "action": "submit"}
    )
    assert ok.status_code == 302


def test_the_notice_page_shows_plays_posts_and_honest_status(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_user: Any,
    make_announcement: Any,
    settings: Any,
) -> None:
    day = _local_today(settings) + timedelta(days=1)
    ann = make_announcement(
        "approved", area_ids=[grid["g1"].id], start_date=day.isoformat(), end_date=day.isoformat()
    )
    reviewer = make_user(Role.REVIEWER)
    client = app.test_client()
    login(client, reviewer)
    html = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert f"已批准 · 首播 {day:%m-%d} 07:30 石桥村村委会大喇叭" in html
    assert "播出中" not in html
    assert 'data-testid="play"' in html and "（一组）" in html
    assert "石桥村民群" in html and "待发送" in html
    # The outlet's day and its run sheet name the part of the village it is for.
    speaker = reached["speaker"].id
    assert "垃圾分类从我做起（一组）" in client.get(f"/schedule/outlets/{speaker}/{day}").get_data(
        as_text=True
    )
    sheet = client.get(f"/schedule/outlets/{speaker}/{day}/runsheet").get_data(as_text=True)
    assert "垃圾分类从我做起（一组）" in sheet
    # A failed post shows its human reason.
    session.add(
        Delivery(
            revision_id=ann.approved_revision_id,
            chat_group_id=reached["chat"].id,
            due_at=datetime.now(settings.tz),
            state=DeliveryState.FAILED,
            last_error=Message("平台拒收：{reason}", {"reason": "webhook 地址已失效"}).dumps(),
        )
    )
    session.commit()
    html = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert "发送失败" in html and "平台拒收：webhook 地址已失效" in html
    # Between the first and the last play: 播出中.
    running = make_announcement(
        "approved",
        area_ids=[grid["v1"].id],
        start_date=(day - timedelta(days=2)).isoformat(),
        end_date=day.isoformat(),
    )
    html = client.get(f"/announcements/{running.id}").get_data(as_text=True)
    assert 'data-testid="status">播出中<' in html


def test_the_dashboard_lists_failed_and_uncertain_posts_and_articles_in_time_order(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_user: Any,
    make_announcement: Any,
    settings: Any,
) -> None:
    from cms.models import ArticleState, PublisherAccount, PublisherArticle

    ann = make_announcement("approved", area_ids=[grid["v1"].id], title="停水通知")
    now = datetime.now(settings.tz)
    second_chat = ChatGroup(
        platform="dingtalk", chat_id="dingtalk:x", title="石桥干部群", area_id=grid["v1"].id
    )
    account = PublisherAccount(
        area_id=grid["town"].id,
        platform="wechat",
        credentials={"app_id": "wx0123456789abcdef", "app_secret": "s" * 32},
    )
    session.add_all([second_chat, account])
    session.flush()
    session.add_all(
        [
            Delivery(
                revision_id=ann.approved_revision_id,
                chat_group_id=reached["chat"].id,
                due_at=now,
                state=DeliveryState.FAILED,
                last_error=Message("平台拒收：{reason}", {"reason": "机器人已被移出群"}).dumps(),
                updated_at=now - timedelta(minutes=30),
            ),
            Delivery(
                revision_id=ann.approved_revision_id,
                chat_group_id=second_chat.id,
                due_at=now,
                state=DeliveryState.PENDING,
                attempts=2,
                last_error=Message("没能连上平台：{reason}", {"reason": "连接超时"}).dumps(),
                updated_at=now - timedelta(minutes=10),
            ),
            PublisherArticle(
                account_id=account.id,
                announcement_id=ann.id,
                revision_id=ann.approved_revision_id,
                state=ArticleState.UNCERTAIN,
                last_error=Message("请求已发出但没有收到回答").dumps(),
                updated_at=now - timedelta(minutes=20),
            ),
        ]
    )
    session.commit()
    client = app.test_client()
    login(client, make_user(Role.EDITOR, area=grid["town"]))
    html = client.get("/").get_data(as_text=True)
    alerts = html[html.index('data-testid="alerts"') :]
    retry, article, failed = (
        alerts.index("正在重试"),
        alerts.index("公众号结果不确定"),
        alerts.index("发送失败"),
    )
    assert retry < article < failed  # newest first
    assert "没能连上平台：连接超时" in alerts and "平台拒收：机器人已被移出群" in alerts
    assert "石桥干部群（钉钉）" in alerts and "清水镇公众号" in alerts
    # The chat card says the same next to the line.
    assert 'class="state-failed">发送失败' in html
    # Another township's officer sees none of it.
    from cms.services import areas as area_svc

    other = area_svc.create_area(session, None, name="茂兰镇", kind="township", parent_id=None)
    session.commit()
    client2 = app.test_client()
    login(client2, make_user(Role.EDITOR, area=other))
    assert "机器人已被移出群" not in client2.get("/").get_data(as_text=True)


def test_a_chats_only_notice_says_what_became_of_its_posts(
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_announcement: Any,
    settings: Any,
    today: date,
) -> None:
    ann = make_announcement(
        "approved",
        area_ids=[grid["v1"].id],
        to_loudspeaker=False,
        start_date=today.isoformat(),
        end_date=today.isoformat(),
        chat_post_time="09:30",
    )

    def line(hhmm: str) -> str:
        s = reach.status_line(session, ann, _at(settings, today, hhmm), settings.tz)
        return Message(s.label, s.params).render()

    assert line("08:00") == "已批准 · 09:30 发到群聊"
    assert line("10:00") == "已批准 · 正在发到群聊"
    delivery = Delivery(
        revision_id=ann.approved_revision_id,
        chat_group_id=reached["chat"].id,
        due_at=_at(settings, today, "09:30"),
        state=DeliveryState.SENT,
    )
    session.add(delivery)
    session.commit()
    assert line("10:00") == "已批准 · 已发到群聊"
    delivery.state = DeliveryState.FAILED
    session.commit()
    assert line("10:00") == "已批准 · 群聊发送有问题"


def test_the_reviewer_sees_where_it_goes(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_user: Any,
    make_announcement: Any,
) -> None:
    ann = make_announcement("in_review", area_ids=[grid["g1"].id], title="一组修路通知")
    client = app.test_client()
    login(client, make_user(Role.REVIEWER))
    queue = client.get("/announcements/review").get_data(as_text=True)
    card = queue[queue.index("一组修路通知") :]
    assert 'data-testid="review-reach"' in card
    assert "大喇叭 1 个、群聊 1 个、公众号 0 个" in card and "石桥村村委会大喇叭" in card
    page = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert 'data-testid="reach"' in page and "（一组）" in page and "石桥村民群" in page


@pytest.mark.any_hour
def test_reach_follows_the_airtime_and_the_last_days_end(
    app: Any,
    session: Session,
    grid: dict[str, Area],
    reached: dict[str, Any],
    make_user: Any,
    make_announcement: Any,
    content: Any,
    settings: Any,
    today: date,
) -> None:
    """An event notice that ends at 11:30 plays at 07:30 only and is over by noon; an
    evening-only notice first plays at 19:30 (the speaker has slots at 07:30 and 19:30)."""
    tz = settings.tz
    morning_event = make_announcement(
        "approved",
        area_ids=[grid["v1"].id],
        start_date=today.isoformat(),
        end_date=today.isoformat(),
        end_time="11:30",
        to_chats=False,
    )

    def line(ann: Announcement, hhmm: str) -> str:
        s = reach.status_line(session, ann, _at(settings, today, hhmm), tz)
        return Message(s.label, s.params).render()

    assert line(morning_event, "06:00") == "已批准 · 首播 07:30 石桥村村委会大喇叭"
    assert line(morning_event, "07:30") == "播出中"
    assert line(morning_event, "12:00") == "已结束"  # 19:30 is after the event's end
    plays = reach.outcome(session, morning_event, _at(settings, today, "06:00"), tz)
    assert plays is not None
    assert [p.at.astimezone(tz).strftime("%H:%M") for p in plays.plays] == ["07:30"]
    evening = make_announcement(
        "approved",
        area_ids=[grid["v1"].id],
        start_date=today.isoformat(),
        end_date=today.isoformat(),
        airtime="evening",
        to_chats=False,
    )
    assert line(evening, "06:00") == "已批准 · 首播 19:30 石桥村村委会大喇叭"
    # The editor's preview follows the same rule as the fields change.
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    day = today + timedelta(days=1)
    data = _form(
        content(
            area_ids=[grid["v1"].id],
            start_date=day.isoformat(),
            end_date=day.isoformat(),
            airtime="evening",
            to_chats=False,
        )
    )
    html = client.post(
        "/announcements/reach", data=data, headers={"X-Requested-With": "fetch"}
    ).get_data(as_text=True)
    assert f'首播 <span data-testid="first-play">{day:%m-%d} 19:30' in html
    assert "07:30" not in html
    html = client.post(
        "/announcements/reach",
        data={**data, "airtime": "morning", "end_time": "07:00"},
        headers={"X-Requested-With": "fetch"},
    ).get_data(as_text=True)
    assert 'data-testid="first-play"' not in html  # nothing left to play in its window
