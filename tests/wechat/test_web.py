"""The Official Account pages: settings (admin only, the secret write-only) and 发布."""

from __future__ import annotations

from sqlalchemy import select

from cms.models import ArticleState, PublisherAccount, PublisherArticle, Role
from tests.conftest import login
from tests.fakes.wechat_api import APP_ID, APP_SECRET


def test_admin_saves_account_and_the_secret_is_never_shown(client, session, grid, make_user):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.ADMIN))
    bad = client.post(
        "/admin/wechat",
        data={"area_id": str(grid["town"].id), "app_id": "nope", "app_secret": "x" * 31},
    )
    page = bad.get_data(as_text=True)
    assert bad.status_code == 200 and "AppID 应为 wx 开头" in page and "x" * 31 not in page
    odd = client.post(
        "/admin/wechat", data={"area_id": "１２", "app_id": APP_ID, "app_secret": APP_SECRET}
    )
    assert odd.status_code == 200 and "请选择公众号服务的乡镇" in odd.get_data(as_text=True)
    ok = client.post(
        "/admin/wechat",
        data={
            "area_id": str(grid["town"].id),
            "app_id": APP_ID,
            "app_secret": APP_SECRET,
            "office": "清水镇人民政府",
        },
    )
    assert ok.status_code == 302
    account = session.scalar(select(PublisherAccount))
    assert account.credentials["app_secret"] == APP_SECRET and account.office == "清水镇人民政府"
    page = client.get("/admin/wechat").get_data(as_text=True)
    assert APP_ID in page and APP_SECRET not in page
    # Saving again with the secret left blank keeps it.
    client.post(
        "/admin/wechat",
        data={"account_id": str(account.id), "area_id": str(grid["town"].id), "app_id": APP_ID,
              "app_secret": "", "office": "清水镇", "active": "on"},
    )  # fmt: skip
    session.rollback()
    session.refresh(account)
    assert account.credentials["app_secret"] == APP_SECRET and account.office == "清水镇"
    audit = client.get("/admin/audit").get_data(as_text=True)
    assert APP_SECRET not in audit
    # The AppID (a credential the plugin declares) reads under the plugin's label.
    assert '<span data-key="app_id">AppID</span>' in audit and APP_ID in audit


def test_only_admins_open_the_settings(client, make_user):  # type: ignore[no-untyped-def]
    login(client, make_user(Role.REVIEWER))
    assert client.get("/admin/wechat").status_code == 403


def test_publish_button_on_the_audio_page(client, session, grid, make_user, make_announcement):  # type: ignore[no-untyped-def]
    ann = make_announcement("approved", area_ids=[grid["v1"].id])
    account = PublisherAccount(
        area_id=grid["town"].id,
        platform="wechat",
        credentials={"app_id": APP_ID, "app_secret": APP_SECRET},
    )
    session.add(account)
    session.flush()
    article = PublisherArticle(
        account_id=account.id, announcement_id=ann.id, revision_id=ann.approved_revision_id,
        state=ArticleState.DRAFTED, draft_ref="DRAFT1",
    )  # fmt: skip
    session.add(article)
    session.commit()
    editor = make_user(Role.EDITOR)
    login(client, editor)
    page = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    assert "草稿已在公众号" in page and "wechat/" not in page.split("wechat-article")[1][:400]
    url = f"/schedule/announcements/{ann.id}/wechat/{article.id}/publish"
    assert client.post(url).status_code == 403
    client.get("/logout")
    login(client, make_user(Role.REVIEWER))
    page = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    assert url in page
    done = client.post(url)
    assert done.status_code == 302 and done.location.endswith(
        f"/schedule/announcements/{ann.id}#wechat"
    )
    session.rollback()
    session.refresh(article)
    assert article.state is ArticleState.QUEUED
    again = client.post(url, follow_redirects=True).get_data(as_text=True)
    assert "现在不能发布" in again
    missing = f"/schedule/announcements/{ann.id}/wechat/999999/publish"
    assert client.post(missing).status_code == 404
    huge = f"/schedule/announcements/{ann.id}/wechat/{10**30}/publish"
    assert client.post(huge).status_code == 404
    garbage = client.post("/admin/wechat", data={"area_id": "１２", "app_id": APP_ID})
    assert garbage.status_code == 403  # reviewers do not reach the settings at all
