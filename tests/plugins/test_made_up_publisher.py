"""A made-up publishing platform (公示栏, :mod:`tests.plugins.noticeboard`) added only through
an entry point: the admin menu links to its accounts page, the page asks for the credentials
it declares and refuses bad ones in its own words (the secret never shown again), the
announcement form counts the title against its limit, the scheduler drafts an approved notice
through it, and the announcement's page shows the article with 发布 until it is published; and every page that
speaks of its articles (the reach and publishing panels, the dashboard, the ledger) names it
公示栏, never 公众号 (the WeChat plugin's word). cms has no line about it."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

import cms.publishers
from cms.jobs import articles
from cms.models import Announcement, ArticleState, PublisherAccount, PublisherArticle, Role
from cms.publishers import Article, PublishRefused
from cms.services.errors import Message
from tests.conftest import login
from tests.plugins import noticeboard
from tests.scheduler import conftest as _scheduler

audio_cache = _scheduler.audio_cache
clock = _scheduler.clock
ctx = _scheduler.ctx
registry = _scheduler.registry
scheduler = _scheduler.scheduler

KEY = "k3y-never-shown-0123"


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The made-up platform as a distribution whose only tie to dalaba is its entry point."""
    site = tmp_path / "site"
    info = site / "dalaba_noticeboard-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dalaba-noticeboard\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(
        "[dalaba.publishers]\nnoticeboard = tests.plugins.noticeboard:plugin\n"
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(articles, "share_url", lambda settings, ann: None)
    monkeypatch.setattr(noticeboard, "BOARD", noticeboard.Board())
    return site


def test_a_publisher_added_by_entry_point_is_configured_drafts_and_publishes(  # type: ignore[no-untyped-def]
    installed, client, session, grid, make_user, make_announcement, scheduler, clock
):
    assert "noticeboard" in cms.publishers.platforms()
    login(client, make_user(Role.ADMIN))
    page = client.get("/admin/noticeboard").get_data(as_text=True)
    assert 'href="/admin/noticeboard"' in page and "公示栏编号" in page and "写入密钥" in page
    assert "审核通过的公告会在公示栏生成草稿。" in page
    assert client.get("/admin/no-such-platform").status_code == 404

    bad = client.post(
        "/admin/noticeboard", data={"area_id": str(grid["town"].id), "board": "42"}
    ).get_data(as_text=True)
    assert noticeboard.BAD_BOARD in bad and noticeboard.NO_KEY in bad
    ok = client.post(
        "/admin/noticeboard",
        data={"area_id": str(grid["town"].id), "board": "nb-0042", "write_key": KEY},
    )
    assert ok.status_code == 302
    account = session.scalar(select(PublisherAccount))
    assert account is not None and account.platform == "noticeboard"
    assert account.credentials == {"board": "nb-0042", "write_key": KEY}
    saved = client.get("/admin/noticeboard").get_data(as_text=True)
    assert "nb-0042" in saved and KEY not in saved
    assert KEY not in client.get("/admin/audit").get_data(as_text=True)

    # The announcement form counts the title against the platform's limit (10).
    form = client.get("/announcements/new").get_data(as_text=True)
    assert 'id="oa-title" data-limit="10"' in form

    ann = make_announcement(
        "approved",
        area_ids=[grid["v1"].id],
        to_loudspeaker=False,
        title="关于开展春季植树活动的通知",
    )
    report = scheduler.run_once()
    assert report.outcomes.get("article.drafted") == 1
    row = session.scalar(select(PublisherArticle).where(PublisherArticle.announcement_id == ann.id))
    assert row is not None and row.state is ArticleState.DRAFTED
    assert row.draft_ref == "nb-0042/d1"
    assert noticeboard.BOARD.drafts["nb-0042/d1"]["title"] == "开展春季植树活动通知"
    assert noticeboard.BOARD.keys_seen == [KEY]

    renders = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    action = f"/schedule/announcements/{ann.id}/noticeboard/{row.id}/publish"
    assert 'id="noticeboard"' in renders and "公示栏" in renders and action in renders
    done = client.post(action)
    assert done.status_code == 302 and done.location.endswith("#noticeboard")
    # Another platform's path to the same article is not an address of it.
    assert (
        client.post(f"/schedule/announcements/{ann.id}/wechat/{row.id}/publish").status_code == 404
    )

    session.rollback()
    assert session.get(PublisherArticle, row.id).state is ArticleState.QUEUED
    scheduler.run_once()  # submitted
    clock.advance(timedelta(minutes=1))
    scheduler.run_once()  # polled: published
    session.rollback()
    row = session.get(PublisherArticle, row.id)
    assert row is not None and row.state is ArticleState.PUBLISHED
    assert row.publish_ref == "p-nb-0042/d1"
    url = "https://board.example/p-nb-0042/d1"
    assert row.article_url == url
    assert url in client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)


def _section(html: str, start: str, end: str) -> str:
    """The part of ``html`` from ``start`` up to the next ``end`` (which must be there)."""
    begin = html.index(start)
    return html[begin : html.index(end, begin)]


def test_every_page_names_the_made_up_publisher_by_its_own_word(  # type: ignore[no-untyped-def]
    installed,
    client,
    session,
    grid,
    make_user,
    make_announcement,
    scheduler,
    clock,
    today,
    monkeypatch,
):
    login(client, make_user(Role.ADMIN))
    town = grid["town"]
    client.post(
        "/admin/noticeboard",
        data={"area_id": str(town.id), "board": "nb-0042", "write_key": KEY},
    )
    notices = {
        title: make_announcement(
            "approved", area_ids=[grid["v1"].id], to_loudspeaker=False, title=title
        )
        for title in ("被拒绝的通知", "出意外的通知", "顺利的通知")
    }
    pending = make_announcement(
        "in_review", area_ids=[grid["v1"].id], to_loudspeaker=False, title="待审核的通知"
    )
    drafted = noticeboard.NoticeboardPublisher.create_draft

    def create_draft(self, article: Article, now, sending):  # type: ignore[no-untyped-def]
        if article.title == "被拒绝的通知":
            raise PublishRefused(Message("公示栏拒收"))
        if article.title == "出意外的通知":
            raise RuntimeError("board on fire")
        return drafted(self, article, now, sending)

    monkeypatch.setattr(noticeboard.NoticeboardPublisher, "create_draft", create_draft)
    scheduler.run_once()
    session.rollback()

    def article_of(ann: Announcement) -> PublisherArticle:
        row = session.scalar(
            select(PublisherArticle).where(PublisherArticle.announcement_id == ann.id)
        )
        assert row is not None
        return row

    assert article_of(notices["被拒绝的通知"]).state is ArticleState.FAILED
    assert article_of(notices["出意外的通知"]).state is ArticleState.PENDING
    ok = article_of(notices["顺利的通知"])
    client.post(f"/schedule/announcements/{ok.announcement_id}/noticeboard/{ok.id}/publish")
    scheduler.run_once()  # submitted
    clock.advance(timedelta(minutes=1))
    scheduler.run_once()  # polled: published
    session.rollback()
    assert article_of(notices["顺利的通知"]).state is ArticleState.PUBLISHED

    # Before approval: where the notice will go.
    shown = client.get(f"/announcements/{pending.id}").get_data(as_text=True)
    reach = _section(shown, 'data-testid="reach"', "</section>")
    assert "<h3>公示栏</h3>" in reach and "清水镇公示栏" in reach and "公众号" not in reach
    review = client.get("/announcements/review").get_data(as_text=True)
    summary = _section(review, 'data-testid="review-reach"', "</summary>")
    assert "公示栏 1 个" in summary and "公众号" not in summary

    # After: each article under the platform's word, its stored reason in it too.
    shown = client.get(f"/announcements/{notices['出意外的通知'].id}").get_data(as_text=True)
    outcome = _section(shown, 'data-testid="outcome"', "</section>")
    assert "<h3>公示栏</h3>" in outcome and "清水镇公示栏" in outcome
    assert "公示栏接口出现意外错误，稍后重试" in outcome and "公众号" not in outcome
    assert "</span>：公示栏接口出现意外错误" in outcome  # the reason follows its state directly
    panel = client.get(f"/schedule/announcements/{ok.announcement_id}").get_data(as_text=True)
    table = _section(panel, 'id="noticeboard"', "</table>")
    assert "<th>公示栏</th>" in table and "公众号" not in table
    drafted_page = client.get(f"/schedule/announcements/{notices['被拒绝的通知'].id}")
    assert "公众号" not in _section(
        drafted_page.get_data(as_text=True), 'id="noticeboard"', "</table>"
    )

    # The dashboard's problems.
    dashboard = client.get("/").get_data(as_text=True)
    problem = re.search(r'<li data-testid="problem"[^>]*>.*?</li>', dashboard, re.S)
    assert problem is not None
    assert "公示栏草稿失败" in problem[0] and "清水镇公示栏" in problem[0]
    assert "公众号" not in problem[0]

    # The ledger: the section, the summary line and the table of the month's articles.
    # (The clock stands at 03:00 on the test day, township time: published this month.)
    month: date = today
    ledger = client.get(f"/ledger/?area={town.id}&month={month:%Y-%m}").get_data(as_text=True)
    assert "四、群聊、分享页与公示栏" in ledger and "<h3>公示栏文章</h3>" in ledger
    assert "https://board.example/p-nb-0042/d1" in ledger
    assert "公众号" not in ledger
