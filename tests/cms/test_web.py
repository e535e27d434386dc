"""The officer's and the admin's pages: lists, filters, editing, review, history, dashboard."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from cms.models import Announcement, Area, Outlet, Role, Status, User
from tests.conftest import login


def _form(data):  # type: ignore[no-untyped-def]
    form = {k: v for k, v in data.items() if k not in {"to_loudspeaker", "to_chats"}}
    for key in ("to_loudspeaker", "to_chats"):
        if data.get(key):
            form[key] = "on"
    return form


@pytest.mark.any_hour
def test_officer_drafts_submits_and_reviewer_approves(
    app, session, make_user, content, village_loudspeaker
):
    editor, reviewer = make_user(Role.EDITOR), make_user(Role.REVIEWER)
    client = app.test_client()
    login(client, editor)
    response = client.post("/announcements/new", data={**_form(content()), "action": "submit"})
    assert response.status_code == 302
    session.rollback()
    ann = session.scalar(select(Announcement))
    assert ann.status is Status.IN_REVIEW
    client.post("/logout")
    login(client, reviewer)
    queue = client.get("/announcements/review").get_data(as_text=True)
    assert "垃圾分类从我做起" in queue
    assert (
        client.post(f"/announcements/{ann.id}/approve", data={"comment": "同意"}).status_code == 302
    )
    session.rollback()
    session.refresh(ann)
    assert ann.status is Status.APPROVED and ann.review_comment == "同意"
    dashboard = client.get("/").get_data(as_text=True)
    assert "垃圾分类从我做起" in dashboard


def test_reviewer_rejects_with_comment_shown_to_editor(app, session, make_user, make_announcement):
    editor, reviewer = make_user(Role.EDITOR), make_user(Role.REVIEWER)
    ann = make_announcement("in_review", author=editor)
    client = app.test_client()
    login(client, reviewer)
    client.post(f"/announcements/{ann.id}/reject", data={"comment": "请写明集合地点"})
    client.post("/logout")
    login(client, editor)
    page = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert "请写明集合地点" in page and "草稿" in page


def test_reject_without_comment_is_refused_and_keeps_state(
    app, session, make_user, make_announcement
):
    reviewer = make_user(Role.REVIEWER)
    ann = make_announcement("in_review")
    client = app.test_client()
    login(client, reviewer)
    response = client.post(
        f"/announcements/{ann.id}/reject", data={"comment": ""}, follow_redirects=True
    )
    assert "请填写退回意见" in response.get_data(as_text=True)
    session.rollback()
    session.refresh(ann)
    assert ann.status is Status.IN_REVIEW


def test_edit_of_approved_makes_revision_and_history_diff(
    app, session, make_user, make_announcement, content
):
    editor = make_user(Role.EDITOR)
    ann = make_announcement("approved", author=editor)
    client = app.test_client()
    login(client, editor)
    edited = _form(content(title="垃圾分类从我做起（更正）"))
    assert client.post(f"/announcements/{ann.id}/edit", data=edited).status_code == 302
    page = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert "正在播出的是第 1 版" in page
    diff = client.get(f"/announcements/{ann.id}/revisions?old=1&new=2").get_data(as_text=True)
    assert "<ins>（更正）</ins>" in diff


@pytest.mark.any_hour
def test_list_filters_and_pagination(app, session, make_user, make_announcement, grid, today):
    editor = make_user(Role.EDITOR)
    for i in range(23):
        make_announcement("draft", author=editor, title=f"草稿{i:02d}")
    make_announcement("approved", author=editor, title="柳林村通知", area_ids=[grid["v2"].id])
    make_announcement(
        "approved",
        author=editor,
        title="下周的通知",
        start_date=(today + timedelta(days=7)).isoformat(),
        end_date=(today + timedelta(days=9)).isoformat(),
    )
    client = app.test_client()
    login(client, editor)
    first = client.get("/announcements/").get_data(as_text=True)
    assert "共 25 条" in first and "1 / 2" in first
    second = client.get("/announcements/?page=2").get_data(as_text=True)
    assert second.count("<tr>") == 6  # header + 5 rows
    active = client.get("/announcements/?status=active").get_data(as_text=True)
    assert "柳林村通知" in active and "下周的通知" not in active and "草稿00" not in active
    scheduled = client.get("/announcements/?status=scheduled").get_data(as_text=True)
    assert "下周的通知" in scheduled and "柳林村通知" not in scheduled
    by_area = client.get(f"/announcements/?area={grid['g2'].id}").get_data(as_text=True)
    assert "柳林村通知" in by_area and "草稿00" not in by_area
    search = client.get("/announcements/?q=草稿07").get_data(as_text=True)
    assert "共 1 条" in search


@pytest.mark.any_hour
def test_dashboard_shows_what_goes_out_where(app, session, make_user, make_announcement, grid):
    from cms.services.outlets import save_outlet

    admin = make_user(Role.ADMIN)
    save_outlet(
        session,
        admin,
        None,
        name="石桥大喇叭",
        kind="loudspeaker",
        area_id=grid["g1"].id,
        slots="07:30, 19:30",
    )
    save_outlet(
        session,
        admin,
        None,
        name="柳林大喇叭",
        kind="loudspeaker",
        area_id=grid["v2"].id,
        slots="12:00",
    )
    session.commit()
    make_announcement("approved", title="石桥村修路通知", area_ids=[grid["v1"].id])
    make_announcement("approved", title="全镇防火", area_ids=[grid["town"].id], priority="urgent")
    client = app.test_client()
    login(client, admin)
    html = client.get("/").get_data(as_text=True)
    cards = {
        name: c
        for c in html.split('class="card outlet"')[1:]
        for name in ("石桥大喇叭", "柳林大喇叭")
        if name in c.split("</h3>")[0]
    }
    shiqiao, liulin = cards["石桥大喇叭"], cards["柳林大喇叭"]
    assert "石桥村修路通知" in shiqiao and "全镇防火" in shiqiao
    assert shiqiao.index("全镇防火") < shiqiao.index("石桥村修路通知")  # urgent first
    assert "全镇防火" in liulin and "石桥村修路通知" not in liulin


def test_operator_sees_only_their_outlets(app, session, make_user, grid):
    from cms.services.outlets import save_outlet

    admin, operator = make_user(Role.ADMIN), make_user(Role.OPERATOR)
    mine = save_outlet(
        session,
        admin,
        None,
        name="我的喇叭",
        kind="loudspeaker",
        area_id=grid["v1"].id,
        slots="07:30",
    )
    save_outlet(
        session,
        admin,
        None,
        name="别人的喇叭",
        kind="loudspeaker",
        area_id=grid["v2"].id,
        slots="07:30",
    )
    mine.operators = [operator]
    session.commit()
    client = app.test_client()
    login(client, operator)
    html = client.get("/").get_data(as_text=True)
    assert "我的喇叭" in html and "别人的喇叭" not in html


def test_admin_manages_areas_outlets_users_topics(app, session, make_user, grid):
    admin = make_user(Role.ADMIN)
    client = app.test_client()
    login(client, admin)
    client.post("/admin/areas", data={"name": "三组", "kind": "group", "parent_id": grid["v1"].id})
    session.rollback()
    area = session.scalar(select(Area).where(Area.name == "三组"))
    assert area.path == f"{grid['v1'].path}{area.id}/"
    dup = client.post(
        "/admin/areas", data={"name": "三组", "kind": "group", "parent_id": grid["v1"].id}
    )
    assert dup.status_code == 400 and "已有" in dup.get_data(as_text=True)
    operator = make_user(Role.OPERATOR)
    client.post(
        "/admin/outlets/new",
        data={
            "name": "三组喇叭",
            "kind": "loudspeaker",
            "area_id": area.id,
            "slots": "07:30 10, 19:30 15",
            "loop_minutes": "30",
            "active": "on",
            "operator_ids": [str(operator.id)],
        },
    )
    session.rollback()
    outlet = session.scalar(select(Outlet).where(Outlet.name == "三组喇叭"))
    assert [s.label for s in outlet.slots] == ["07:30", "19:30"] and outlet.operators == [operator]
    client.post(
        "/admin/users",
        data={
            "username": "newbie",
            "display_name": "新人",
            "role": "reviewer",
            "password": "long-enough-1",
        },
    )
    session.rollback()
    newbie = session.scalar(select(User).where(User.username == "newbie"))
    assert newbie.role is Role.REVIEWER
    client.post(f"/admin/users/{newbie.id}", data={"display_name": "新人", "role": "editor"})
    session.rollback()
    session.refresh(newbie)
    assert newbie.role is Role.EDITOR and not newbie.active
    client.post("/admin/topics", data={"name": "典型"})
    assert "典型" in client.get("/admin/topics").get_data(as_text=True)
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert "user.create" in audit and "outlet.create" in audit and "area.create" in audit


def test_admin_cannot_demote_themselves(app, session, make_user):
    admin = make_user(Role.ADMIN)
    client = app.test_client()
    login(client, admin)
    response = client.post(
        f"/admin/users/{admin.id}",
        data={"display_name": "x", "role": "editor", "active": "on"},
        follow_redirects=True,
    )
    assert "不能取消自己的管理员身份" in response.get_data(as_text=True)
    session.rollback()
    session.refresh(admin)
    assert admin.role is Role.ADMIN


def test_area_in_use_cannot_be_deleted(app, session, make_user, make_announcement, grid):
    admin = make_user(Role.ADMIN)
    make_announcement("draft", area_ids=[grid["g2"].id])
    client = app.test_client()
    login(client, admin)
    response = client.post(
        f"/admin/areas/{grid['g2'].id}", data={"action": "delete"}, follow_redirects=True
    )
    assert "不能删除" in response.get_data(as_text=True)
    assert (
        session.scalar(select(func.count()).select_from(Area).where(Area.id == grid["g2"].id)) == 1
    )


def test_self_approval_setting_and_api_token_revocation(app, session, make_user, make_announcement):
    admin = make_user(Role.ADMIN)
    ann = make_announcement("in_review", author=admin)
    client = app.test_client()
    login(client, admin)
    assert "不能审核自己" in client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    client.post("/admin/settings", data={"allow_self_approval": "on"})
    client.post(f"/announcements/{ann.id}/approve", data={})
    session.rollback()
    session.refresh(ann)
    assert ann.status is Status.APPROVED
    page = client.post(
        "/admin/tokens", data={"action": "issue", "username": admin.username, "label": "脚本"}
    )
    token = page.get_data(as_text=True).split('data-testid="new-token">')[1].split("<")[0]
    api = app.test_client()
    assert api.get("/api/v1/areas", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    from cms.models import ApiToken

    session.rollback()
    row = session.scalar(select(ApiToken))
    client.post("/admin/tokens", data={"action": "revoke", "token_id": row.id})
    assert api.get("/api/v1/areas", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_search_treats_wildcards_literally_and_unknown_area_finds_nothing(
    app, make_user, make_announcement
):
    editor = make_user(Role.EDITOR)
    make_announcement("draft", author=editor, title="收费100%到位")
    make_announcement("draft", author=editor, title="普通通知")
    client = app.test_client()
    login(client, editor)
    assert "共 1 条" in client.get("/announcements/?q=%25").get_data(as_text=True)
    assert "共 0 条" in client.get("/announcements/?q=_").get_data(as_text=True)
    assert "共 0 条" in client.get("/announcements/?area=99999").get_data(as_text=True)


def test_dashboard_lists_open_alerts_for_officers_not_operators(app, session, make_user):
    from cms.models import Alert

    session.add(Alert(kind="program_missed", message="柳林村大喇叭 07:30 的节目没有按时生成"))
    session.commit()
    editor, operator = make_user(Role.EDITOR), make_user(Role.OPERATOR)
    client = app.test_client()
    login(client, editor)
    assert "柳林村大喇叭 07:30 的节目没有按时生成" in client.get("/").get_data(as_text=True)
    client.post("/logout")
    login(client, operator)
    assert "没有按时生成" not in client.get("/").get_data(as_text=True)
