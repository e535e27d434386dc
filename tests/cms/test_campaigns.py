"""County campaign pages: drafting, the townships' adopt and adapt, scoping, the report."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from sqlalchemy import select

from cms.models import Announcement, Role, Status, User
from cms.services import announcements
from cms.services.users import issue_api_token
from tests.cms.test_i18n import chinese_left, set_english, user_data
from tests.conftest import login
from tests.helpers import make_county

TITLE = "县委宣传部：森林防火宣传月"


@pytest.fixture
def county(session, make_user):  # type: ignore[no-untyped-def]
    return make_county(session, make_user)


def _client(app: Any, user: User) -> Any:
    client = app.test_client()
    login(client, user)
    return client


def _campaign_via_web(app, session, county, content) -> Announcement:  # type: ignore[no-untyped-def]
    editor = _client(app, county["users"][("county", Role.EDITOR)])
    assert "县级活动" in editor.get("/announcements/new?campaign=1").get_data(as_text=True)
    data = content(
        title=TITLE, area_ids=[str(county["towns"]["a"].id), str(county["towns"]["b"].id)]
    )
    data.update(campaign="1", action="submit")
    response = editor.post("/announcements/new", data=data)
    assert response.status_code == 302
    session.commit()
    camp = session.scalar(select(Announcement).order_by(Announcement.id.desc()))
    assert camp is not None and camp.campaign and camp.status is Status.IN_REVIEW
    reviewer = _client(app, county["users"][("county", Role.REVIEWER)])
    session.commit()  # end the test's read transaction before the app writes
    response = reviewer.post(f"/announcements/{camp.id}/approve", follow_redirects=True)
    assert "已审核通过" in response.get_data(as_text=True)
    session.commit()  # a new snapshot: what the app committed
    session.expire_all()
    assert camp.status is Status.APPROVED
    return camp


def test_townships_adopt_and_adapt_on_the_pages(app, session, county, content):  # type: ignore[no-untyped-def]
    camp = _campaign_via_web(app, session, county, content)
    a = _client(app, county["users"][("a", Role.EDITOR)])
    home = a.get("/").get_data(as_text=True)
    assert 'data-testid="campaigns-waiting"' in home and 'href="/campaigns/"' in home
    page = a.get("/campaigns/").get_data(as_text=True)
    assert TITLE in page and "未采用（不播出）" in page
    assert TITLE in a.get(f"/campaigns/{camp.id}").get_data(as_text=True)
    # The county's original stays the county's: no editing, not found for a township.
    assert a.get(f"/announcements/{camp.id}/edit").status_code == 404
    assert a.get(f"/announcements/{camp.id}").status_code == 404

    response = a.post(f"/campaigns/{camp.id}/adopt")
    assert response.status_code == 302
    session.commit()
    copy = session.scalar(select(Announcement).where(Announcement.origin_id == camp.id))
    assert copy is not None and copy.status is Status.APPROVED and copy.adoption == "adopted"
    assert 'data-testid="campaigns-waiting"' not in a.get("/").get_data(as_text=True)
    shown = a.get(f"/announcements/{copy.id}").get_data(as_text=True)
    assert "县委宣传部县级活动" in shown and f"/campaigns/{camp.id}" in shown
    assert "县级活动" in a.get("/announcements/").get_data(as_text=True)
    token = issue_api_token(session, None, county["users"][("a", Role.EDITOR)])
    session.commit()
    api = a.get(f"/api/v1/announcements/{copy.id}", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 200
    assert (api.json["campaign"], api.json["origin_id"], api.json["adoption"]) == (
        False, camp.id, "adopted",
    )  # fmt: skip

    b = _client(app, county["users"][("b", Role.EDITOR)])
    # B cannot adopt for A (not found), nor adopt twice.
    assert (
        b.post(
            f"/campaigns/{camp.id}/adopt", data={"township": county["towns"]["a"].id}
        ).status_code
        == 404
    )
    response = b.post(f"/campaigns/{camp.id}/adapt")
    assert response.status_code == 302 and "/edit" in response.headers["Location"]
    session.commit()
    b_copy = session.scalar(
        select(Announcement).where(
            Announcement.origin_id == camp.id, Announcement.area_id == county["towns"]["b"].id
        )
    )
    assert b_copy is not None and b_copy.status is Status.DRAFT
    again = b.post(f"/campaigns/{camp.id}/adopt", follow_redirects=True)
    assert "已经采用或改编过" in again.get_data(as_text=True)
    # C is not targeted: the campaign does not exist for it.
    c = _client(app, county["users"][("c", Role.EDITOR)])
    assert c.get(f"/campaigns/{camp.id}").status_code == 404
    assert TITLE not in c.get("/campaigns/").get_data(as_text=True)
    # A township reviewer cannot adapt (editors write), a township editor cannot make campaigns.
    ar = _client(app, county["users"][("a", Role.REVIEWER)])
    assert ar.post(f"/campaigns/{camp.id}/adapt").status_code == 403
    assert (
        b.post(
            "/announcements/new",
            data={**content(area_ids=[str(county["villages"]["b"].id)]), "campaign": "1"},
        ).status_code
        == 403
    )

    # The county sees who took it how.
    county_page = _client(app, county["users"][("county", Role.REVIEWER)])
    towns = county_page.get(f"/campaigns/{camp.id}").get_data(as_text=True)
    assert "后箐乡" in towns and "照发" in towns and "改编" in towns

    # Withdrawn by the county: A's adopted copy is withdrawn, B's adaptation is flagged.
    ce = _client(app, county["users"][("county", Role.EDITOR)])
    assert ce.post(f"/announcements/{camp.id}/withdraw").status_code == 302
    session.commit()  # a new snapshot: what the app committed
    session.expire_all()
    assert copy.status is Status.WITHDRAWN and b_copy.status is Status.DRAFT
    assert "县里已撤回这个活动" in b.get(f"/announcements/{b_copy.id}").get_data(as_text=True)
    assert b.get(f"/campaigns/{camp.id}").status_code == 200  # B still reaches its origin


def test_report_page_and_csv_are_scoped(app, session, county, content):  # type: ignore[no-untyped-def]
    camp = _campaign_via_web(app, session, county, content)
    county_user = _client(app, county["users"][("county", Role.REVIEWER)])
    page = county_user.get("/campaigns/report").get_data(as_text=True)
    assert TITLE in page and "后箐乡" in page and "幸福镇" in page and "茂兰镇" not in page
    response = county_user.get("/campaigns/report.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0][0] == "县级活动" and len(rows) == 1 + 4  # two townships, a village each
    assert {r[1] for r in rows[1:]} == {"后箐乡", "幸福镇"}
    # built, downloaded, confirmed, fetched whole by a terminal, posted
    assert all(r[3:] == ["未采用", "0", "0", "0", "0", "0"] for r in rows[1:])
    a = _client(app, county["users"][("a", Role.EDITOR)])
    rows = list(
        csv.reader(
            io.StringIO(a.get("/campaigns/report.csv").get_data(as_text=True).lstrip("\ufeff"))
        )
    )
    assert {r[1] for r in rows[1:]} == {"后箐乡"}
    assert "幸福镇" not in a.get("/campaigns/report").get_data(as_text=True)
    del camp


def test_campaign_pages_in_english(app, session, county, content):  # type: ignore[no-untyped-def]
    camp = _campaign_via_web(app, session, county, content)
    a_user = county["users"][("a", Role.EDITOR)]
    announcements.get(session, camp.id)
    a = _client(app, a_user)
    a.post(f"/campaigns/{camp.id}/adopt")
    data = user_data(session)
    for user, paths in (
        (a_user, ["/", "/campaigns/", f"/campaigns/{camp.id}", "/campaigns/report", "/announcements/"]),
        (county["users"][("county", Role.EDITOR)],
         ["/campaigns/", f"/campaigns/{camp.id}", "/campaigns/report", f"/announcements/{camp.id}",
          "/announcements/new?campaign=1"]),
    ):  # fmt: skip
        client = _client(app, user)
        set_english(client)
        for path in paths:
            response = client.get(path)
            assert response.status_code == 200, path
            html = response.get_data(as_text=True)
            assert chinese_left(html, data) == [], path
    session.commit()
    copy = session.scalar(select(Announcement).where(Announcement.origin_id == camp.id))
    client = _client(app, a_user)
    set_english(client)
    html = client.get(f"/announcements/{copy.id}").get_data(as_text=True)
    assert "County campaign" in html and chinese_left(html, data) == []


def test_a_campaign_for_b_only_does_not_exist_for_a(app, session, county, content, today):  # type: ignore[no-untyped-def]
    editor = county["users"][("county", Role.EDITOR)]
    camp = announcements.create(
        session, editor, content(title="只给幸福镇", area_ids=[county["villages"]["b"].id]),
        today=today, campaign=True,
    )  # fmt: skip
    announcements.submit(session, editor, camp)
    announcements.approve(session, county["users"][("county", Role.REVIEWER)], camp)
    session.commit()
    for role in (Role.EDITOR, Role.REVIEWER):
        a = _client(app, county["users"][("a", role)])
        assert a.get(f"/campaigns/{camp.id}").status_code == 404
        assert a.post(f"/campaigns/{camp.id}/adopt").status_code == 404
        assert "只给幸福镇" not in a.get("/campaigns/").get_data(as_text=True)
        assert "只给幸福镇" not in a.get("/campaigns/report").get_data(as_text=True)
    assert a.post(f"/campaigns/{camp.id}/adapt").status_code in (403, 404)
    session.commit()
    assert session.scalar(select(Announcement).where(Announcement.origin_id == camp.id)) is None


def test_the_menu_names_campaigns_only_when_the_install_has_a_county(app, grid, make_user):  # type: ignore[no-untyped-def]
    client = _client(app, make_user(Role.EDITOR))
    assert 'href="/campaigns/"' not in client.get("/").get_data(as_text=True)
    assert client.get("/campaigns/").status_code == 200  # reachable, just not advertised
