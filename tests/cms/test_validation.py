"""Bad input: a clear message naming the field, the user's work kept, nothing half-saved."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from cms.models import Announcement, Revision, Role, User
from cms.services import announcements as svc
from cms.services import users
from cms.services.errors import ValidationError
from tests.conftest import login


def _counts(session):  # type: ignore[no-untyped-def]
    return (
        session.scalar(select(func.count()).select_from(Announcement)),
        session.scalar(select(func.count()).select_from(Revision)),
    )


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"title": ""}, "title", "请填写"),
        ({"title": "   "}, "title", "请填写"),
        ({"body": ""}, "body", "请填写"),
        ({"body": "长" * 50_000}, "body", "最多"),
        ({"title": "标题\x00\x07"}, "title", "控制字符"),
        ({"body": "正文\x1b[31m"}, "body", "控制字符"),
        ({"title": "第一行\n第二行"}, "title", "换行"),
        ({"area_ids": []}, "area_ids", "至少选择"),
        ({"area_ids": [999999]}, "area_ids", "不存在"),
        ({"area_ids": ["abc"]}, "area_ids", "无效"),
        ({"start_date": "2026-13-40"}, "start_date", "YYYY-MM-DD"),
        ({"repeats": "abc"}, "repeats", "整数"),
        ({"repeats": 9}, "repeats", "之间"),
        ({"rate": 80}, "rate", "之间"),
        ({"voice": "zh-CN-Evil'/><x"}, "voice", "不支持"),
        ({"to_loudspeaker": False, "to_chats": False}, "channels", "渠道"),
        ({"chat_post_time": "25:99"}, "chat_post_time", "HH:MM"),
        ({"chat_post_time": "0900"}, "chat_post_time", "HH:MM"),
        ({"chat_post_time": "09:00+08:00"}, "chat_post_time", "HH:MM"),
        ({"chat_post_time": ""}, "chat_post_time", "发送时间"),
        ({"priority": "highest"}, "priority", "优先级"),
        ({"topic_id": 4242}, "topic_id", "不存在"),
    ],
)
def test_bad_fields_named_and_nothing_saved(
    session, make_user, content, today, overrides, field, words
):
    editor = make_user(Role.EDITOR)
    before = _counts(session)
    with pytest.raises(ValidationError) as err:
        svc.create(session, editor, content(**overrides), today=today)
    session.rollback()
    messages = err.value.render()
    assert field in messages, messages
    assert words in messages[field]
    assert _counts(session) == before


def test_window_that_ends_before_it_starts(session, make_user, content, today):
    with pytest.raises(ValidationError) as err:
        svc.create(
            session,
            make_user(Role.EDITOR),
            content(start_date=today.isoformat(), end_date=(today - timedelta(days=1)).isoformat()),
            today=today,
        )
    assert err.value.render()["end_date"] == "结束日期不能早于开始日期"


def test_many_errors_reported_together(session, make_user, content, today):
    with pytest.raises(ValidationError) as err:
        svc.create(
            session, make_user(Role.EDITOR), content(title="", body="", area_ids=[]), today=today
        )
    assert {"title", "body", "area_ids"} <= set(err.value.errors)


def test_emoji_and_mixed_text_are_fine(session, make_user, content, today):
    ann = svc.create(
        session,
        make_user(Role.EDITOR),
        content(title="🌳绿美乡村 Green Village", body="大家好👋 WiFi 密码见群公告"),
        today=today,
    )
    assert ann.current.title == "🌳绿美乡村 Green Village"


def test_duplicate_username_refused_case_insensitively(session, make_user):
    make_user(Role.EDITOR, username="wangli")
    with pytest.raises(ValidationError) as err:
        users.create_user(
            session,
            None,
            username="WangLi",
            display_name="x",
            role="editor",
            password="long-enough-1",
        )
    assert "已被使用" in err.value.render()["username"]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(User)) == 1


@pytest.mark.parametrize(
    ("username", "role", "password", "field"),
    [
        ("a", "editor", "long-enough-1", "username"),
        ("好人", "editor", "long-enough-1", "username"),
        ("bob", "king", "long-enough-1", "role"),
        ("bob", "editor", "short", "password"),
    ],
)
def test_user_fields_checked(session, username, role, password, field):
    with pytest.raises(ValidationError) as err:
        users.create_user(
            session, None, username=username, display_name="", role=role, password=password
        )
    assert field in err.value.errors


def test_form_keeps_the_users_text_on_error(app, session, make_user, content, today):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    data = content(title="我写了很久的标题", body="这是一段很长的正文，不能丢。")
    data.update(
        to_loudspeaker="on", to_chats="on", end_date=(today - timedelta(days=3)).isoformat()
    )
    response = client.post("/announcements/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "我写了很久的标题" in html and "这是一段很长的正文，不能丢。" in html
    assert 'data-field="end_date"' in html
    assert _counts(session) == (0, 0)


def test_form_with_unknown_area_and_huge_body(app, session, make_user, content):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    data = content(body="字" * 50_000)
    data.update(area_ids=["999999"], to_loudspeaker="on")
    response = client.post("/announcements/new", data=data)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'data-field="body"' in html and 'data-field="area_ids"' in html
    assert _counts(session) == (0, 0)


def test_outlet_slots_validated(app, make_user, grid):
    admin = make_user(Role.ADMIN)
    client = app.test_client()
    login(client, admin)
    response = client.post(
        "/admin/outlets/new",
        data={
            "name": "喇叭",
            "kind": "loudspeaker",
            "area_id": grid["v1"].id,
            "slots": "7点半, 12:00 500",
            "active": "on",
        },
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "7点半" in html and 'data-field="slots"' in html


def test_bad_query_parameters_are_400_not_500(app, make_user):
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    assert client.get("/announcements/?page=abc").status_code == 400
    assert client.get("/announcements/?page=0").status_code == 400
    assert client.get("/announcements/?status=nonsense&q=%00").status_code == 200
    assert client.get("/announcements/999/revisions?new=abc").status_code == 404


def test_field_labels_are_translated_in_english_messages(app, make_user, content):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    client.post("/lang", data={"lang": "en"})
    login(client, editor)
    data = content(title="")
    data.update(to_loudspeaker="on", to_chats="on")
    html = client.post("/announcements/new", data=data).get_data(as_text=True)
    error = html.split('data-field="title">')[1].split("<")[0]
    assert "标题" not in error and "Title" in error, error
    session_user = client.get("/").get_data(as_text=True)
    assert "Today" in session_user  # the language chosen before logging in is kept
