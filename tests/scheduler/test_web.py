"""The scheduling pages: status, renders, lexicon, outlet day, calendar, run sheet, outbox, budget."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from cms.db import make_session_factory
from cms.jobs.context import Context
from cms.models import (
    Alert,
    AuditLog,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    LexiconEntry,
    Program,
    Role,
    User,
)
from cms.scheduler.core import Scheduler
from cms.services import schedule as schedule_svc
from cms.services.errors import NotFound, WorkflowError
from tests.conftest import login
from tests.helpers import shown
from tests.scheduler.helpers import local


@pytest.fixture
def world(  # type: ignore[no-untyped-def]
    settings, engine, clock, registry, today, grid, make_outlet, make_chat, make_announcement
):
    """A built day whose audio lives in the data folder (so the web app may serve it)."""
    from cms.jobs.outbox import OutboxChannel

    sessions = make_session_factory(engine, clock=clock)
    registry.register(OutboxChannel(sessions))
    ctx = Context(settings, engine, sessions, registry, "web-test", clock)
    outlet = make_outlet(grid["v1"], "19:30 1", name="石桥大喇叭")
    other = make_outlet(grid["v2"], "19:30 10", name="柳林大喇叭")
    chat = make_chat(grid["v1"], title="石桥村群")
    ann = make_announcement(
        "approved", title="防火通知", body="天干物燥，小心火烛。", repeats=1,
        area_ids=[grid["v1"].id], chat_post_time="08:00",
    )  # fmt: skip
    clock.set(local(settings, today, "08:00"))
    Scheduler(ctx).run_once()
    return {"outlet": outlet, "other": other, "chat": chat, "ann": ann, "ctx": ctx}


@pytest.mark.any_hour
def test_status_renders_outbox_and_audio(client, make_user, world, session):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.EDITOR))
    page = client.get("/schedule/").get_data(as_text=True)
    assert "调度状态" in page and "队列" in page
    ann = world["ann"]
    page = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    assert "离线语音" in page and "石桥大喇叭" in page and "已发送" in page
    clip = session.scalar(
        select(Clip).where(
            Clip.revision_id == ann.approved_revision_id, Clip.profile == ClipProfile.LOUDSPEAKER
        )
    )
    response = client.get(f"/schedule/audio/clip/{clip.id}")
    assert response.status_code == 200 and response.mimetype == "audio/mpeg"
    assert response.data[:3] in (b"ID3", b"\xff\xfb") or response.data[0] == 0xFF
    etag = response.headers["ETag"]
    assert (
        client.get(f"/schedule/audio/clip/{clip.id}", headers={"If-None-Match": etag}).status_code
        == 304
    )
    partial = client.get(f"/schedule/audio/clip/{clip.id}", headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.data) == 100
    # The same download path as the operators' links: a multi-range or malformed Range gets
    # the whole file (as the README says), a stale If-Match or If-Unmodified-Since gets 412.
    for header in ("bytes=0-9,20-29", "bytes=abc", "items=0-5"):
        whole = client.get(f"/schedule/audio/clip/{clip.id}", headers={"Range": header})
        assert whole.status_code == 200 and whole.data == response.data, header
    stale = client.get(f"/schedule/audio/clip/{clip.id}", headers={"If-Match": '"old"'})
    assert stale.status_code == 412
    earlier = "Mon, 01 Jan 2001 00:00:00 GMT"
    old = client.get(f"/schedule/audio/clip/{clip.id}", headers={"If-Unmodified-Since": earlier})
    assert old.status_code == 412
    assert client.get(f"/schedule/audio/clip/{clip.id}", headers={"If-Match": etag}).data == (
        response.data
    )
    outbox = client.get("/schedule/outbox").get_data(as_text=True)
    assert "防火通知" in outbox and "石桥村群" in outbox
    voice = session.scalar(select(Delivery)).message_ids[1].split(":")[1]
    response = client.get(f"/schedule/audio/outbox/{voice}")
    assert response.status_code == 200 and response.mimetype == "audio/ogg"


def test_audio_never_leaves_the_data_folder(client, make_user, world, session):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.ADMIN))
    clip = session.scalar(select(Clip))
    clip.path = "/etc/passwd"
    session.commit()
    assert client.get(f"/schedule/audio/clip/{clip.id}").status_code == 404
    clip.path = str(world["ctx"].settings.data_dir / ".." / ".." / "etc" / "passwd")
    session.commit()
    assert client.get(f"/schedule/audio/clip/{clip.id}").status_code == 404
    assert client.get("/schedule/audio/sample/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/schedule/audio/nonsense/1").status_code == 404


def test_outlet_day_calendar_and_run_sheet(client, make_user, world, today, session):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.EDITOR))
    outlet = world["outlet"]
    program = session.scalar(
        select(Program).where(Program.outlet_id == outlet.id).order_by(Program.day)
    )
    page = client.get(f"/schedule/outlets/{outlet.id}/{today.isoformat()}").get_data(as_text=True)
    assert "19:30" in page and "超出时段长度" not in page
    assert "提示音" in page and "防火通知" in page  # the manifest
    program.overrun = True  # (computed in test_rules; here only its display)
    session.commit()
    page = client.get(f"/schedule/outlets/{outlet.id}/{today.isoformat()}").get_data(as_text=True)
    assert "超出时段长度" in page
    listen = client.get(f"/schedule/audio/program/{program.id}")
    assert listen.status_code == 200 and listen.mimetype == "audio/mpeg"
    page = client.get(f"/schedule/outlets/{outlet.id}/calendar").get_data(as_text=True)
    start = world["ctx"].today()  # the township's today
    for offset in range(14):
        assert f'data-testid="day-{(start + timedelta(days=offset)).isoformat()}"' in page
    assert f'data-testid="day-{(start + timedelta(days=14)).isoformat()}"' not in page
    sheet = client.get(f"/schedule/outlets/{outlet.id}/{today.isoformat()}/runsheet")
    text = sheet.get_data(as_text=True)
    assert sheet.status_code == 200 and "播出单" in text and "print.css" in text
    assert "防火通知" in text and "19:30" in text
    assert client.get("/static/print.css").status_code == 200
    assert client.get(f"/schedule/outlets/{outlet.id}/not-a-day").status_code == 404


def test_operator_sees_only_own_outlets(client, make_user, world, session):  # type: ignore[no-untyped-def]
    operator = make_user(Role.OPERATOR)
    operator.outlets.append(session.merge(world["outlet"]))
    session.commit()
    login(client, operator)
    assert client.get(f"/schedule/outlets/{world['outlet'].id}/today").status_code == 200
    assert client.get(f"/schedule/outlets/{world['other'].id}/today").status_code == 404
    other_program = session.scalar(select(Program).where(Program.outlet_id == world["other"].id))
    assert client.get(f"/schedule/audio/program/{other_program.id}").status_code == 404
    assert client.get(f"/schedule/audio/clip/{session.scalar(select(Clip.id))}").status_code == 404
    assert client.get("/schedule/").status_code == 403
    page = client.get("/schedule/outlets").get_data(as_text=True)
    assert "石桥大喇叭" in page and "柳林大喇叭" not in page


def test_lexicon_add_sample_and_rerender(client, make_user, world, session):  # type: ignore[no-untyped-def]
    editor = make_user(Role.EDITOR)
    login(client, editor)
    response = client.post("/schedule/lexicon", data={"written": "烛", "spoken": "竹"})
    assert response.status_code == 302
    (entry,) = _audit(session, "lexicon.save")  # who caused the re-render, and what it reaches
    assert entry.user_id == editor.id
    assert entry.detail["revisions"] == [world["ann"].approved_revision_id]
    page = client.get("/schedule/lexicon").get_data(as_text=True)
    assert "1 条公告的音频和相关节目将自动重新生成" in page
    assert session.scalar(select(LexiconEntry.spoken).where(LexiconEntry.written == "烛")) == "竹"
    bad = client.post("/schedule/lexicon", data={"written": "", "spoken": "竹"})
    assert bad.status_code == 400 and "请填写写法" in bad.get_data(as_text=True)
    # The next pass re-queues the clip whose text contains it, and the program follows.
    report = Scheduler(world["ctx"]).plan()
    assert report.planned_clips == 2  # loudspeaker clip and voice note
    sample = client.post("/schedule/lexicon/sample", data={"text": "小心火烛"})
    assert sample.status_code == 302 and "sample=" in sample.headers["Location"]
    page = client.get(sample.headers["Location"]).get_data(as_text=True)
    assert 'data-testid="sample"' in page
    key = sample.headers["Location"].split("sample=")[1].split("&")[0]
    assert client.get(f"/schedule/audio/sample/{key}").status_code == 200


def test_retry_buttons(client, make_user, world, session):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.REVIEWER))
    delivery = session.scalar(select(Delivery))
    delivery.state = DeliveryState.FAILED
    delivery.last_error = "网络错误"
    session.commit()
    assert "网络错误" in client.get("/schedule/").get_data(as_text=True)
    response = client.post(f"/schedule/deliveries/{delivery.id}/retry", data={"next": "/schedule/"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/schedule/")
    session.refresh(delivery)
    assert delivery.state is DeliveryState.PENDING and delivery.attempts == 0
    response = client.post(f"/schedule/deliveries/{delivery.id}/retry", data={"next": "//evil"})
    assert response.headers["Location"].endswith("/schedule/")  # never off-site
    clip = session.scalar(select(Clip))
    clip.state = JobState.FAILED
    session.commit()
    client.post(f"/schedule/clips/{clip.id}/retry")
    session.refresh(clip)
    assert clip.state is JobState.PENDING


def test_budget_endpoint(client, make_user, world, grid, today):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.EDITOR))
    query = {
        "body": "各位村民：本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加。" * 2,
        "repeats": "3",
        "rate": "0",
        "area_ids": str(grid["v1"].id),
        "start_date": today.isoformat(),
        "end_date": (today + timedelta(days=2)).isoformat(),
    }
    data = client.get("/schedule/budget", query_string=query).get_json()
    assert data["estimate_seconds"] > 10 and data["over"] is True
    assert data["worst"]["outlet"] == "石桥大喇叭" and data["worst"]["limit_seconds"] == 60
    assert "超出时段长度" in data["message"]
    assert data["slots_checked"] == 3  # one slot on each of three days
    query.update(area_ids=str(grid["v2"].id), repeats="1", body="注意防火。")
    data = client.get("/schedule/budget", query_string=query).get_json()
    assert data["over"] is False and "不超出" in data["message"]
    bad = client.get("/schedule/budget", query_string={"repeats": "9", "start_date": "x"})
    assert bad.status_code == 400 and set(bad.get_json()["errors"]) == {"repeats", "start_date"}


def test_budget_by_post_with_the_editor_form(csrf_app, make_user, world, grid, today):  # type: ignore[no-untyped-def]
    """The editor posts its whole form (CSRF token included), as budget.js does."""
    import re

    client = csrf_app.test_client()
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    user = make_user(Role.EDITOR)
    client.post(
        "/login",
        data={"username": user.username, "password": "correct-horse-1", "csrf_token": token},
    )
    # Logging in starts a new session: the editor page carries a fresh token.
    page = client.get("/schedule/lexicon").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = {
        "csrf_token": token,
        "title": "x",
        "body": "注意防火。" * 400,
        "repeats": "2",
        "area_ids": [str(grid["v1"].id), str(grid["v2"].id)],
        "start_date": today.isoformat(),
        "end_date": today.isoformat(),
        "announcement_id": str(world["ann"].id),
    }
    data = client.post("/schedule/budget", data=form).get_json()
    assert data["over"] is True and data["slots_checked"] == 2
    assert client.post("/schedule/budget", data={**form, "csrf_token": "bad"}).status_code == 400
    assert client.get("/static/budget.js").status_code == 200


def test_user_text_is_escaped_on_every_page(  # type: ignore[no-untyped-def]
    client, make_user, world, grid, make_announcement, make_chat, session, today
):
    evil = "<script>alert(1)</script>"
    ann = make_announcement(
        "approved", title=evil, body=f"正文{evil}", repeats=1, area_ids=[grid["v1"].id],
        chat_post_time="08:00",
    )  # fmt: skip
    make_chat(grid["v1"], title=evil)
    Scheduler(world["ctx"]).run_once()
    session.add(LexiconEntry(written=evil[:40], spoken="读法", note=evil))
    session.commit()
    login(client, make_user(Role.ADMIN))
    outlet = world["outlet"].id
    for url in (
        f"/schedule/announcements/{ann.id}",
        f"/schedule/outlets/{outlet}/{today.isoformat()}",
        f"/schedule/outlets/{outlet}/{today.isoformat()}/runsheet",
        f"/schedule/outlets/{outlet}/calendar",
        "/schedule/outbox",
        "/schedule/lexicon",
        "/schedule/",
    ):
        page = client.get(url).get_data(as_text=True)
        assert evil not in page, url
    assert "&lt;script&gt;" in client.get("/schedule/outbox").get_data(as_text=True)


def _audit(session, action):  # type: ignore[no-untyped-def]
    session.rollback()  # a new read transaction sees what the requests committed
    return list(session.scalars(select(AuditLog).where(AuditLog.action == action)))


def test_each_scheduler_action_is_audited_once(client, make_user, world, session):  # type: ignore[no-untyped-def]
    reviewer = make_user(Role.REVIEWER)
    login(client, reviewer)
    clip = session.scalar(select(Clip))
    clip.state, clip.last_error = JobState.FAILED, "ffmpeg 出错"
    program = session.scalar(select(Program).where(Program.outlet_id == world["outlet"].id))
    program.state, program.last_error = JobState.FAILED, "缺少音频"
    delivery = session.scalar(select(Delivery))
    delivery.state, delivery.last_error = DeliveryState.FAILED, "网络错误"
    alert = Alert(kind="program_missed", message="节目错过了", object_type="program")
    session.add(alert)
    session.commit()
    posts = [
        (f"/schedule/clips/{clip.id}/retry", "clip.retry", "clip", clip.id, "已重新排队生成音频"),
        (f"/schedule/programs/{program.id}/retry", "program.retry", "program", program.id,
         "已重新排队生成节目"),
        (f"/schedule/deliveries/{delivery.id}/retry", "delivery.retry", "delivery", delivery.id,
         "已重新排队发送"),
        (f"/schedule/alerts/{alert.id}/resolve", "alert.resolve", "alert", alert.id,
         "提醒已标记为已处理"),
    ]  # fmt: skip
    for url, action, object_type, object_id, flash in posts:
        response = client.post(url, data={"next": "/schedule/"}, follow_redirects=True)
        assert response.status_code == 200 and flash in response.get_data(as_text=True), url
        rows = _audit(session, action)
        assert len(rows) == 1, action
        assert (rows[0].user_id, rows[0].object_type, rows[0].object_id) == (
            reviewer.id,
            object_type,
            object_id,
        )
    assert _audit(session, "clip.retry")[0].detail["error"] == "ffmpeg 出错"
    assert _audit(session, "delivery.retry")[0].detail["previous"] == "failed"
    session.rollback()
    assert session.get(Clip, clip.id).state is JobState.PENDING
    assert session.get(Program, program.id).state is JobState.PENDING
    assert session.get(Delivery, delivery.id).state is DeliveryState.PENDING
    assert session.get(Alert, alert.id).resolved_at is not None
    # Pressing again changes nothing and records nothing; the reason is shown.
    for url, action, _type, _id, _flash in posts:
        page = client.post(url, follow_redirects=True).get_data(as_text=True)
        assert "无需重试" in page or "这条提醒已经处理过了" in page, url
        assert len(_audit(session, action)) == 1, action
    for url in ("/schedule/clips/999999/retry", "/schedule/programs/999999/retry",
                "/schedule/deliveries/999999/retry", "/schedule/alerts/999999/resolve"):  # fmt: skip
        assert client.post(url).status_code == 404, url


def test_uncertain_delivery_needs_a_checked_group(client, make_user, world, session):  # type: ignore[no-untyped-def]
    editor = make_user(Role.EDITOR)
    login(client, editor)
    delivery = session.scalar(select(Delivery))
    delivery.state, delivery.last_error = DeliveryState.UNCERTAIN, "发送后连接中断"
    delivery.attempts = 2
    session.commit()
    for page_url in ("/schedule/", f"/schedule/announcements/{world['ann'].id}"):
        page = client.get(page_url).get_data(as_text=True)
        assert f'data-testid="confirm-retry-{delivery.id}"' in page, page_url
        assert "我已到群里确认，这条通知确实没有收到" in page and 'name="checked"' in page
    url = f"/schedule/deliveries/{delivery.id}/retry"
    for data in ({}, {"checked": ""}, {"checked": "on-purpose"}):
        page = client.post(url, data=data, follow_redirects=True).get_data(as_text=True)
        assert "请先到群里确认确实没有收到" in page
        session.rollback()
        row = session.get(Delivery, delivery.id)
        assert row.state is DeliveryState.UNCERTAIN and row.attempts == 2
        assert shown(row.last_error) == "发送后连接中断"
        assert _audit(session, "delivery.retry") == []
    page = client.post(url, data={"checked": "1"}, follow_redirects=True).get_data(as_text=True)
    assert "已重新排队发送" in page
    session.rollback()
    row = session.get(Delivery, delivery.id)
    assert row.state is DeliveryState.PENDING and row.attempts == 0 and row.last_error is None
    (entry,) = _audit(session, "delivery.retry")
    assert entry.user_id == editor.id and entry.object_id == delivery.id
    assert entry.detail["checked"] is True and entry.detail["previous"] == "uncertain"
    assert entry.detail["chat"] == "石桥村群" and entry.detail["error"] == "发送后连接中断"
    # The admin reads who confirmed it, in either language.
    admin = make_user(Role.ADMIN, username="chief")
    login(client, admin)
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "重试群聊发送" in page and "已在群里确认没有收到" in page
    assert "delivery.retry" in page and editor.username in page
    assert "石桥村群" in page  # details as text, not JSON escapes
    client.post("/lang", data={"lang": "en"})
    page = client.get("/admin/audit").get_data(as_text=True)
    assert "Retried chat delivery" in page and "Checked in the group" in page


def test_schedule_service_refuses_with_reasons(world, session):  # type: ignore[no-untyped-def]
    actor = session.scalar(select(User))
    delivery = session.scalar(select(Delivery))
    assert delivery.state is DeliveryState.SENT
    with pytest.raises(WorkflowError) as info:
        schedule_svc.retry_delivery(session, delivery.id, actor=actor, checked=True)
    assert "无需重试" in str(info.value)
    delivery.state = DeliveryState.UNCERTAIN
    session.commit()
    with pytest.raises(WorkflowError) as info:
        schedule_svc.retry_delivery(session, delivery.id, actor=actor)
    assert info.value.message.msgid == schedule_svc.UNCERTAIN_NOT_CHECKED
    with pytest.raises(NotFound):
        schedule_svc.retry_clip(session, 10**9, actor=actor)
    session.rollback()
    assert _audit(session, "delivery.retry") == []
    retried = schedule_svc.retry_delivery(session, delivery.id, actor=actor, checked=True)
    assert retried.state is DeliveryState.PENDING
    session.commit()  # the edge owns the transaction
    assert _audit(session, "delivery.retry")[0].user_id == actor.id
