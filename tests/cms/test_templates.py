"""Notice templates: fields and their checks, the shipped library, offices' templates with
inheritance and audit, a draft from a template on the web and through the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Announcement, AuditLog, Role, Status, User
from cms.services import announcements, templates
from cms.services.errors import PermissionDenied, ValidationError
from tests.cms.test_api import api_as, doc, fast_password_hashing  # noqa: F401
from tests.conftest import login
from tests.helpers import make_county

SAMPLE = {
    "date": "2026-12-19",
    "time": "19:30",
    "phone": "0871-6512 3456",
    "amount": "60",
    "text": "村委会会议室",
}

SHIPPED_NAMES = {
    "村庄清洁行动",
    "垃圾清运费收缴",
    "门前五包提醒",
    "爱心捐赠倡议",
    "户长会通知",
    "停水停电",
    "森林防火",
    "寒潮/暴雨预警",
    "医保缴费",
}


def household_meeting() -> templates.Template:
    return next(t for t in templates.SHIPPED if t.name == "户长会通知")


def test_fields_take_their_kind_from_their_name() -> None:
    t = household_meeting()
    assert [(f.name, f.kind.value) for f in t.fields] == [
        ("日期", "date"),
        ("时间", "time"),
        ("地点", "text"),
        ("会议内容", "text"),
        ("电话", "phone"),
    ]
    title, body = templates.fill(
        t,
        {
            "日期": "2026-12-19",
            "时间": "19:30",
            "地点": "村委会会议室",
            "会议内容": "村规民约修订",
            "电话": "13812345678",
        },
    )
    assert title == "关于召开户长会的通知"
    assert "定于12月19日（星期六）19:30在村委会会议室召开户长会" in body
    assert "主要内容：村规民约修订" in body and "联系电话：13812345678。" in body
    assert "{" not in body


def test_each_field_is_checked() -> None:
    with pytest.raises(ValidationError) as caught:
        templates.fill(
            household_meeting(),
            {"日期": "12月19日", "时间": "7点半", "地点": "", "会议内容": "x", "电话": "123"},
        )
    assert set(caught.value.errors) == {"field:日期", "field:时间", "field:地点", "field:电话"}
    fee = next(t for t in templates.SHIPPED if t.name == "垃圾清运费收缴")
    with pytest.raises(ValidationError) as caught:
        templates.fill(fee, {"年度": "2026", "金额": "六十", "截止日期": "2026-12-20",
                             "地点": "村委会", "电话": "0871-65123456"})  # fmt: skip
    assert set(caught.value.errors) == {"field:金额"}
    _title, body = templates.fill(fee, {"年度": "2026", "金额": "60.50", "截止日期": "2026-12-20",
                                        "地点": "村委会", "电话": "0871-65123456"})  # fmt: skip
    assert "每户60.5元" in body


def test_the_shipped_library_fills_in() -> None:
    assert {t.name for t in templates.SHIPPED} == SHIPPED_NAMES
    for t in templates.SHIPPED:
        assert t.fields, t.name
        title, body = templates.fill(t, {f.name: SAMPLE[f.kind.value] for f in t.fields})
        assert "{" not in title + body, t.name


def test_the_county_publishes_and_a_township_adds(
    session: Session, make_user: Callable[..., User]
) -> None:
    county = make_county(session, make_user)
    county_editor = county.users[("county", Role.EDITOR)]
    a_editor, b_editor = county.users[("a", Role.EDITOR)], county.users[("b", Role.EDITOR)]
    published = templates.save(
        session, county_editor, None, name="秸秆禁烧", title="禁止焚烧秸秆",
        body="自{日期}起禁止焚烧秸秆，举报电话{电话}。",
    )  # fmt: skip
    own = templates.save(
        session, a_editor, None, name="赶集日提醒", title="赶集日注意交通安全",
        body="{日期}赶集，请注意交通安全。",
    )  # fmt: skip
    session.commit()

    def names(user: User) -> set[str]:
        return {t.name for t in templates.available(session, user) if not t.shipped}

    assert names(a_editor) == {"秸秆禁烧", "赶集日提醒"}
    assert names(b_editor) == {"秸秆禁烧"}  # the other township's own is not theirs
    assert names(county_editor) == {"秸秆禁烧"}
    with pytest.raises(PermissionDenied):
        templates.save(session, a_editor, published, name="改", title="改", body="改")
    with pytest.raises(Exception, match="模板不存在"):
        templates.get(session, b_editor, str(own.id))
    templates.save(session, a_editor, own, name=own.name, title=own.title, body=own.body,
                   active=False)  # fmt: skip
    session.commit()
    assert names(a_editor) == {"秸秆禁烧"}
    actions = session.scalars(
        select(AuditLog.action)
        .where(AuditLog.object_type == "noticetemplate")
        .order_by(AuditLog.id)
    ).all()
    assert actions == ["template.create", "template.create", "template.disable"]


def test_an_editor_fills_a_template_and_it_goes_to_review(
    client: Any,
    session: Session,
    grid: dict[str, Any],
    make_user: Callable[..., User],
    today: date,
) -> None:
    editor = make_user(Role.EDITOR)
    login(client, editor)
    page = client.get("/templates/")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert all(name in text for name in SHIPPED_NAMES)
    form = client.get("/templates/use/s-household-meeting").get_data(as_text=True)
    assert 'name="field:日期" type="date"' in form and 'name="field:电话" type="tel"' in form
    fields = {
        "field:日期": (today + timedelta(days=3)).isoformat(),
        "field:时间": "19:30",
        "field:地点": "村委会会议室",
        "field:会议内容": "村规民约修订",
        "area_ids": [str(grid["v1"].id)],
        "start_date": today.isoformat(),
        "end_date": (today + timedelta(days=3)).isoformat(),
        "end_time": "19:30",
        "chat_post_time": "09:00",
        "to_loudspeaker": "on",
        "to_chats": "on",
    }
    # A bad phone number: the form comes back with everything typed still there.
    bad = client.post("/templates/use/s-household-meeting", data={**fields, "field:电话": "12"})
    assert bad.status_code == 400
    again = bad.get_data(as_text=True)
    assert 'data-field="field:电话"' in again and "村规民约修订" in again
    assert session.scalar(select(Announcement.id)) is None
    done = client.post(
        "/templates/use/s-household-meeting", data={**fields, "field:电话": "13812345678"}
    )
    assert done.status_code == 302
    session.rollback()  # see what the request committed
    ann = session.scalars(select(Announcement)).one()
    assert done.headers["Location"].endswith(f"/announcements/{ann.id}")
    assert ann.status is Status.DRAFT and ann.current.title == "关于召开户长会的通知"
    assert "村规民约修订" in ann.current.body and ann.current.areas == [grid["v1"]]
    # The normal path from here: submit, then a reviewer approves.
    announcements.submit(session, editor, ann)
    announcements.approve(session, make_user(Role.REVIEWER), ann)
    session.commit()
    assert ann.status is Status.APPROVED


def test_the_api_lists_templates_and_drafts_from_one(
    api_as: Callable[..., Any],  # noqa: F811  (the fixture imported above)
    grid: dict[str, Any],
    today: date,
    session: Session,
) -> None:
    reader = api_as(Role.REVIEWER)
    listed = reader.get("/templates")
    assert listed.status_code == 200
    items = {t["id"]: t for t in listed.get_json()["items"]}
    assert items["s-household-meeting"]["fields"][0] == {"name": "日期", "kind": "date"}
    assert reader.post("/templates/s-household-meeting/drafts", {}).status_code == 403

    editor = api_as(Role.EDITOR)
    content = {
        "area_ids": [grid["v1"].id],
        "start_date": today.isoformat(),
        "end_date": (today + timedelta(days=2)).isoformat(),
        "channels": ["loudspeaker"],
    }
    values = {"日期": "2026-12-19", "时间": "19:30", "地点": "村委会", "会议内容": "修路",
              "电话": "not a phone"}  # fmt: skip
    bad = editor.post(
        "/templates/s-household-meeting/drafts", {"fields": values, "content": content}
    )
    assert bad.status_code == 400
    assert set(bad.get_json()["error"]["fields"]) == {"field:电话"}
    values["电话"] = "0871-6512 3456"
    made = editor.post(
        "/templates/s-household-meeting/drafts", {"fields": values, "content": content}
    )
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert body["status"] == "draft"
    assert made.headers["Location"].endswith(f"/announcements/{body['id']}")
    assert (
        editor.post("/templates/s-nothing/drafts", {"fields": {}, "content": content}).status_code
        == 404
    )


def test_offices_manage_their_templates_on_the_web(
    app: Any, session: Session, make_user: Callable[..., User]
) -> None:
    county = make_county(session, make_user)
    a_client, b_client = app.test_client(), app.test_client()
    login(a_client, county.users[("a", Role.EDITOR)])
    login(b_client, county.users[("b", Role.EDITOR)])
    bad = a_client.post("/templates/new", data={"name": "", "title": "赶集", "body": "x"})
    assert bad.status_code == 400 and 'data-field="name"' in bad.get_data(as_text=True)
    made = a_client.post(
        "/templates/new",
        data={
            "name": "赶集日提醒",
            "title": "赶集日注意安全",
            "body": "{日期}赶集，注意交通安全。",
        },
    )
    assert made.status_code == 302
    session.rollback()
    row = session.scalars(select(templates.NoticeTemplate)).one()
    assert "赶集日提醒" in a_client.get("/templates/").get_data(as_text=True)
    assert "赶集日提醒" not in b_client.get("/templates/").get_data(as_text=True)
    assert b_client.get(f"/templates/{row.id}/edit").status_code == 404
    assert b_client.get(f"/templates/use/{row.id}").status_code == 404
    off = a_client.post(
        f"/templates/{row.id}/edit",
        data={"name": row.name, "title": row.title, "body": row.body, "action": "disable"},
    )
    assert off.status_code == 302
    assert (
        "赶集日提醒"
        not in a_client.get("/templates/").get_data(as_text=True).split("已停用的本单位模板")[0]
    )
