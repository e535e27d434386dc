"""Official Account drafts on approval, publishing on 发布, the access token, faults."""

from __future__ import annotations

import json
import logging
import socket
import threading
from datetime import timedelta

import pytest
from sqlalchemy import select

from cms.models import ArticleState, AuditLog, PublisherAccount, PublisherArticle, Role
from cms.publishers import PublishRetry
from cms.services import publishing as publishing_svc
from cms.services.errors import Message, PermissionDenied, ValidationError
from tests.fakes.wechat_api import APP_SECRET, Fault
from tests.wechat.conftest import SHARE


def _article(fresh_session, ann_id):  # type: ignore[no-untyped-def]
    return fresh_session().scalar(
        select(PublisherArticle).where(PublisherArticle.announcement_id == ann_id)
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _approved(make_announcement, grid, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("area_ids", [grid["v1"].id])
    kw.setdefault("to_loudspeaker", False)
    return make_announcement("approved", **kw)


def test_draft_created_on_approval_with_escaped_html_and_source_url(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session
):
    ann = _approved(
        make_announcement, grid, title="停水通知<紧急>",
        body="各位村民：\n明天 <b>8点</b> 到 12 点停水 & 请提前储水。\n\n石桥村委会",
    )  # fmt: skip
    report = scheduler.run_once()
    assert report.outcomes.get("article.drafted") == 1
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.DRAFTED and row.draft_ref in fake.state.drafts
    draft = fake.state.drafts[row.draft_ref]
    (sent,) = draft.articles
    assert sent["title"] == "停水通知<紧急>"
    assert sent["content"] == (
        "<p>各位村民：</p><p>明天 &lt;b&gt;8点&lt;/b&gt; 到 12 点停水 &amp; 请提前储水。</p>"
        "<p>石桥村委会</p>"
    )
    assert sent["author"] == "清水镇人民政府"
    assert sent["content_source_url"] == f"{SHARE}{ann.id}"
    assert sent["thumb_media_id"] in fake.state.materials
    assert "停水".encode() in draft.raw  # raw UTF-8, not \\u escapes the platform would show
    # A second pass creates nothing more.
    scheduler.publish_due()
    assert len(fake.state.drafts) == 1


def test_only_announcements_for_chats_in_the_township_get_drafts(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session
):
    no_chats = _approved(make_announcement, grid, to_chats=False, to_loudspeaker=True)
    draft = make_announcement("in_review", area_ids=[grid["v1"].id])
    scheduler.publish_due()
    assert _article(fresh_session, no_chats.id) is None
    assert _article(fresh_session, draft.id) is None
    assert fake.state.drafts == {}


def test_thumbnail_uploaded_once_for_two_drafts_and_token_cached(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session
):
    _approved(make_announcement, grid, title="第一条")
    _approved(make_announcement, grid, title="第二条")
    scheduler.publish_due()
    assert len(fake.state.drafts) == 2
    assert fake.calls("/cgi-bin/material/add_material") == 1
    assert fake.state.token_fetches == 1
    _approved(make_announcement, grid, title="第三条")
    scheduler.publish_due()
    assert len(fake.state.drafts) == 3
    assert fake.calls("/cgi-bin/material/add_material") == 1
    assert fake.state.token_fetches == 1
    assert fresh_session().get(PublisherAccount, account.id).cover_ref in fake.state.materials


def test_token_refreshed_before_expiry_and_once_on_40001(  # type: ignore[no-untyped-def]
    clock, fake, publisher, account
):
    first = publisher.token(account.id, clock.now())
    assert publisher.token(account.id, clock.now()) == first
    assert fake.state.token_fetches == 1
    # Within the margin before expiry: normal mode hands out the next stable token by
    # itself; no forced refresh (it would break the token of other systems on the AppID).
    clock.advance(timedelta(seconds=7200) - timedelta(minutes=4))
    second = publisher.token(account.id, clock.now())
    assert second != first and fake.state.token_fetches == 2 and fake.state.forced == 0
    # The platform drops the token (fetched elsewhere): one refresh, then the call succeeds.
    fake.invalidate_tokens()
    media = publisher.thumb_media_id(account.id, clock.now())
    assert media in fake.state.materials
    assert fake.state.token_fetches == 3
    assert ("/cgi-bin/material/add_material", 40001) in fake.state.refused


def test_refused_token_is_refreshed_only_once(clock, fake, publisher, account, monkeypatch):  # type: ignore[no-untyped-def]
    publisher.token(account.id, clock.now())
    original = fake.handle

    tries: list[str] = []

    def always_40001(method, path, query, body, ctype):  # type: ignore[no-untyped-def]
        if path.endswith("add_material"):
            tries.append(path)
            return {"errcode": 40001, "errmsg": "invalid credential"}
        return original(method, path, query, body, ctype)

    monkeypatch.setattr(fake, "handle", always_40001)
    with pytest.raises(PublishRetry):
        publisher.thumb_media_id(account.id, clock.now())
    assert len(tries) == 2  # the first call, and one more with a new token
    # One refresh: the stable token came back unchanged, so it was forced once.
    assert fake.state.token_fetches == 3


def test_expired_token_answer_42001_refreshes(clock, fake, publisher, account, session):  # type: ignore[no-untyped-def]
    publisher.token(account.id, clock.now())
    # The platform's clock is ahead of ours: our cached token has expired there.
    fake.clock = lambda: clock.now().timestamp() + 7300
    publisher.thumb_media_id(account.id, clock.now())
    assert ("/cgi-bin/material/add_material", 42001) in fake.state.refused
    assert fake.state.token_fetches == 2


def test_two_concurrent_refreshers_fetch_one_token(clock, fake, publisher, ctx, account, settings):  # type: ignore[no-untyped-def]
    from wechat.publisher import WechatPublisher

    other = WechatPublisher(settings.with_env(DALABA_WECHAT_API_URL=fake.base_url), ctx.sessions)
    slow = threading.Event()
    original = fake.handle

    def slow_token(method, path, query, body, ctype):  # type: ignore[no-untyped-def]
        if path == "/cgi-bin/stable_token":
            slow.wait(0.3)  # the first fetcher is still waiting for its answer
        return original(method, path, query, body, ctype)

    fake.handle = slow_token  # type: ignore[method-assign]
    got: list[str] = []
    threads = [
        threading.Thread(target=lambda p=p: got.append(p.token(account.id, clock.now())))
        for p in (publisher, other)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(got) == 2 and got[0] == got[1]
    assert fake.state.token_fetches == 1


def test_publish_then_poll_until_published_with_link(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session,
    make_user, session,
):  # fmt: skip
    fake.publishing_polls = 2
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    reviewer = make_user(Role.REVIEWER)
    publishing_svc.request_publish(session, reviewer, row.id)
    session.commit()
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.PUBLISHING and row.publish_ref in fake.state.publishes
    for _ in range(2):
        clock.advance(30)
        scheduler.publish_due()
        assert _article(fresh_session, ann.id).state is ArticleState.PUBLISHING
    clock.advance(30)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.PUBLISHED
    assert row.article_url == f"https://mp.weixin.qq.com/s/{row.publish_ref}"
    assert row.published_at == clock.now()
    audit = fresh_session().scalar(select(AuditLog).where(AuditLog.action == "publishing.publish"))
    assert audit.user_id == reviewer.id and audit.object_id == row.id


def test_publish_failure_shows_reason_and_keeps_draft(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session, admin,
    session,
):  # fmt: skip
    fake.publish_failure = 4
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    publishing_svc.request_publish(session, admin, _article(fresh_session, ann.id).id)
    session.commit()
    for _ in range(3):
        scheduler.publish_due()
        clock.advance(30)
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.DRAFTED and row.draft_ref in fake.state.drafts
    assert "平台审核不通过" in Message.loads(row.last_error).render()


def test_editor_may_not_publish(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session, make_user,
    session,
):  # fmt: skip
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    with pytest.raises(PermissionDenied):
        publishing_svc.request_publish(
            session, make_user(Role.EDITOR), _article(fresh_session, ann.id).id
        )


def test_unverified_account_says_so_and_keeps_the_draft(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session, admin, session
):
    fake.verified = False
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.DRAFTED
    publishing_svc.request_publish(session, admin, row.id)
    session.commit()
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.DRAFTED and row.draft_ref in fake.state.drafts
    assert Message.loads(row.last_error).render() == (
        "公众号未认证，无法通过接口发布；草稿已保存在公众号后台，请在公众号后台手动发布"
    )
    assert fake.state.publishes == {}


@pytest.mark.parametrize("fault", [Fault.SERVER_ERROR, Fault.BUSY, None])
def test_draft_faults_before_the_platform_acted_retry_with_backoff(  # type: ignore[no-untyped-def]
    fault, scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session
):
    ann = _approved(make_announcement, grid)
    if fault is None:  # the platform (or the proxy) cannot be reached at all
        publisher.api.port = _closed_port()
    else:
        fake.fail(fault, path="/cgi-bin/draft/add")
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.PENDING and row.attempts == 1 and row.last_error
    publisher.api.port = int(fake.base_url.rsplit(":", 1)[1])
    assert row.request_started_at is None
    scheduler.publish_due()
    assert fake.state.drafts == {}  # not before the backoff
    clock.advance(61)
    scheduler.publish_due()
    assert _article(fresh_session, ann.id).state is ArticleState.DRAFTED
    assert len(fake.state.drafts) == 1


@pytest.mark.parametrize("fault", [Fault.DROP_BEFORE, Fault.DROP_AFTER, Fault.GARBAGE])
def test_lost_draft_answer_is_uncertain_never_resent(  # type: ignore[no-untyped-def]
    fault, scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session,
    admin, session,
):  # fmt: skip
    ann = _approved(make_announcement, grid)
    fake.fail(fault, path="/cgi-bin/draft/add")
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    # A connection dropped once the request was sent looks the same, done or not.
    made = 0 if fault is Fault.DROP_BEFORE else 1
    assert row.state is ArticleState.UNCERTAIN and len(fake.state.drafts) == made
    assert "可能已经生效" in Message.loads(row.last_error).render()
    clock.advance(timedelta(hours=2))
    scheduler.publish_due()
    assert len(fake.state.drafts) == made
    # The officer checked the back office and asks for the draft again.
    publishing_svc.retry_article(session, admin, row.id)
    session.commit()
    scheduler.publish_due()
    assert _article(fresh_session, ann.id).state is ArticleState.DRAFTED
    assert len(fake.state.drafts) == made + 1


def test_crash_after_request_went_out_becomes_uncertain_not_a_second_draft(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session, ctx,
):  # fmt: skip
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()  # plans and creates one draft
    row = _article(fresh_session, ann.id)
    # A second revision's row as a dead process left it: claimed, request marked as sent.
    s = fresh_session()
    s.query(PublisherArticle).filter_by(id=row.id).update(
        {
            "state": ArticleState.CREATING,
            "claimed_by": "dead-host:1/abcd",
            "claimed_until": clock.now() + timedelta(minutes=5),
            "request_started_at": clock.now(),
            "draft_ref": None,
        }
    )
    s.commit()
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.UNCERTAIN
    assert len(fake.state.drafts) == 1


def test_crash_before_request_resumes_without_uncertainty(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session,
):  # fmt: skip
    ann = _approved(make_announcement, grid)
    from cms.jobs.articles import plan_articles

    s = fresh_session()
    plan_articles(s, clock.now().date())
    s.flush()
    s.query(PublisherArticle).update(
        {"state": ArticleState.CREATING, "claimed_by": "dead-host:1/abcd", "attempts": 1,
         "claimed_until": clock.now() + timedelta(minutes=5)}
    )  # fmt: skip
    s.commit()
    scheduler.publish_due()
    assert _article(fresh_session, ann.id).state is ArticleState.DRAFTED
    assert len(fake.state.drafts) == 1


def test_withdrawn_before_the_draft_is_made_is_cancelled(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session
):
    fake.fail(Fault.SERVER_ERROR, path="/cgi-bin/draft/add")
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    from cms.services import announcements

    s = fresh_session()
    announcements.withdraw(s, s.get(type(ann), ann.id).created_by, s.get(type(ann), ann.id))
    s.commit()
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.CANCELLED
    assert fake.state.drafts == {}


def test_wrong_secret_and_blocked_ip_fail_with_clear_reason_secret_never_shown(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session, caplog, session,
    admin,
):  # fmt: skip
    caplog.set_level(logging.DEBUG)
    fake.ip_blocked = True
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.FAILED
    assert "IP 白名单" in Message.loads(row.last_error).render()
    fake.ip_blocked = False
    new_secret = "Z" * 32
    publishing_svc.save_account(
        session, admin, session.get(PublisherAccount, account.id), platform="wechat",
        area_id=account.area_id,
        credentials={"app_id": account.credentials["app_id"], "app_secret": new_secret}, office="",
    )  # fmt: skip
    session.commit()
    publishing_svc.retry_article(session, admin, row.id)
    session.commit()
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.FAILED
    assert "AppSecret 不正确" in Message.loads(row.last_error).render()
    everything = (
        caplog.text
        + json.dumps(
            [a.detail for a in fresh_session().scalars(select(AuditLog))], ensure_ascii=False
        )
        + (row.last_error or "")
    )
    for secret in (APP_SECRET, new_secret):
        assert secret not in everything


def test_account_validation(session, grid, admin):  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as err:
        publishing_svc.save_account(
            session, admin, None, platform="wechat", area_id=grid["v1"].id,
            credentials={"app_id": "abc", "app_secret": "short"}, office="",
        )  # fmt: skip
    assert set(err.value.errors) == {"area_id", "app_id", "app_secret"}
    assert "short" not in json.dumps(err.value.render(), ensure_ascii=False)


def test_a_withdrawn_announcements_draft_cannot_be_published(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session, admin, session
):
    from cms.models import Announcement
    from cms.services import announcements
    from cms.services.errors import WorkflowError

    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    own = session.get(Announcement, ann.id)
    announcements.withdraw(session, own.created_by, own)
    session.commit()
    with pytest.raises(WorkflowError):
        publishing_svc.request_publish(session, admin, row.id)


def test_api_url_setting(tmp_path):  # type: ignore[no-untyped-def]
    from cms.publishers import check_config
    from cms.settings import ConfigError, Settings
    from wechat.publisher import api_url

    base = {"DALABA_DATA_DIR": str(tmp_path), "DALABA_SECRET_KEY": "k"}
    assert api_url(Settings.from_env(base)) == "https://api.weixin.qq.com"
    proxied = Settings.from_env({**base, "DALABA_WECHAT_API_URL": "http://10.0.0.2:8081/wx/"})
    assert api_url(proxied) == "http://10.0.0.2:8081/wx"
    # The plugin owns the key: cms reads none of it, and asks the plugin at start-up.
    wrong = Settings.from_env({**base, "DALABA_WECHAT_API_URL": "api.weixin.qq.com"})
    with pytest.raises(ConfigError, match="DALABA_WECHAT_API_URL"):
        check_config(wrong)


def test_without_an_author_line_the_townships_office_name_signs_the_article(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session, session
):
    from cms import tree
    from cms.services import township

    account.office = ""
    township.save(session, None, grid["town"], {tree.OFFICE_NAME: "清水镇宣传办公室"})
    session.commit()
    ann = _approved(make_announcement, grid, title="停水通知")
    scheduler.run_once()
    row = _article(fresh_session, ann.id)
    (sent,) = fake.state.drafts[row.draft_ref].articles
    assert sent["author"] == "清水镇宣传办公室"


# --- The platform's limits and states (issue 17) -------------------------------------------

LONG_TITLE = "关于开展二〇二六年度农村人居环境整治暨村道垃圾清理专项督查检查工作的紧急通知"


def test_long_title_author_and_digest_fit_the_platform_and_nothing_is_refused(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session, session
):
    from cms.publishers import short_title
    from wechat.publisher import LIMITS

    assert len(LONG_TITLE) == 38
    # No author line, no office name: the township's name signs it, and it may be long.
    account.office = ""
    grid["town"].name = "清水满族自治县清水镇人民政府党政综合办公室"
    session.commit()
    ann = _approved(
        make_announcement, grid, title=LONG_TITLE, body="各位村民：" + "请做好清理。" * 40
    )
    scheduler.publish_due()
    assert _article(fresh_session, ann.id).state is ArticleState.DRAFTED
    [draft] = fake.state.drafts.values()
    a = draft.articles[0]
    assert (
        a["title"]
        == short_title(LONG_TITLE, LIMITS.title)
        == "开展二〇二六年度农村人居环境整治暨村道垃圾清理专项督查检查工作"
    )
    assert len(a["author"]) <= 16 and len(a["digest"]) <= 128
    assert a["digest"].endswith("…")
    assert not fake.state.refused


def test_short_title_forms() -> None:
    from cms.publishers import short_title

    assert short_title("停电通知", 32) == "停电通知"
    assert short_title("关于开展农村人居环境整治暨村道垃圾清理专项督查检查工作的通知", 32) == (
        "关于开展农村人居环境整治暨村道垃圾清理专项督查检查工作的通知"  # 30: fits as it is
    )
    # "关于" and "的" go.
    title = "关于开展二〇二六年度农村人居环境整治暨村道垃圾清理专项检查工作的通知"
    assert len(title) == 34 and short_title(title, 32) == title[2:-3] + "通知"
    longer = "关于开展二〇二六年度全镇农村人居环境整治暨村道垃圾清理专项督查检查工作的通知"
    assert (
        short_title(longer, 32) == "开展二〇二六年度全镇农村人居环境整治暨村道垃圾清理专项督查…通知"
    )
    assert all(len(short_title("长" * n, 32)) <= 32 for n in (31, 32, 33, 200))
    assert short_title("长" * 40, 32) == "长" * 31 + "…"


def test_the_fake_refuses_what_draft_add_refuses(clock, fake, publisher, account) -> None:  # type: ignore[no-untyped-def]
    thumb = publisher.thumb_media_id(account.id, clock.now())
    for field, value, code in (
        ("title", "长" * 33, 45003),
        ("author", "长" * 17, 45110),
        ("digest", "长" * 129, 45004),
    ):
        article = {"title": "通知", "content": "<p>x</p>", "thumb_media_id": thumb, field: value}
        with pytest.raises(Exception) as exc:
            publisher.call(account.id, clock.now(), "/cgi-bin/draft/add", {"articles": [article]},
                           repeatable=False)  # fmt: skip
        assert str(code) in Message.loads(exc.value.message.dumps()).render()  # type: ignore[attr-defined]


def test_a_cover_deleted_in_the_back_office_is_uploaded_again_once(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session
):
    old = publisher.thumb_media_id(account.id, clock.now())
    fake.delete_material(old)
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.DRAFTED, row.last_error
    assert len(fake.state.drafts) == 1 and fake.calls("/cgi-bin/material/add_material") == 2
    [draft] = fake.state.drafts.values()
    new = draft.articles[0]["thumb_media_id"]
    assert new != old and new in fake.state.materials
    assert fresh_session().get(PublisherAccount, account.id).cover_ref == new


def test_48001_at_draft_add_says_no_draft_was_saved(  # type: ignore[no-untyped-def]
    scheduler, fake, publisher, account, make_announcement, grid, fresh_session
):
    fake.draft_api = False
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    text = Message.loads(row.last_error).render()
    assert row.state is ArticleState.FAILED and row.draft_ref is None
    assert "48001" in text and "创建草稿时" in text and "草稿没有保存" in text
    assert "草稿已保存" not in text


@pytest.mark.parametrize(
    ("status", "words"), [(5, "之后在公众号后台被删除"), (6, "之后被平台封禁")]
)
def test_published_then_deleted_or_blocked_says_so_never_that_the_draft_remains(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session, admin,
    session, status, words,
):  # fmt: skip
    fake.publish_failure = status
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    publishing_svc.request_publish(session, admin, _article(fresh_session, ann.id).id)
    session.commit()
    for _ in range(3):
        scheduler.publish_due()
        clock.advance(30)
    row = _article(fresh_session, ann.id)
    text = Message.loads(row.last_error).render()
    assert row.state is ArticleState.PUBLISHED and "已发布" in text and words in text
    assert "草稿仍在" not in text and row.draft_ref not in fake.state.draft_box


def test_publish_polling_gives_up_as_unknown_and_retry_asks_again(  # type: ignore[no-untyped-def]
    scheduler, clock, fake, publisher, account, make_announcement, grid, fresh_session, admin,
    session,
):  # fmt: skip
    from cms.jobs.articles import POLL_LIMIT

    fake.publishing_polls = None  # the platform never says
    ann = _approved(make_announcement, grid)
    scheduler.publish_due()
    publishing_svc.request_publish(session, admin, _article(fresh_session, ann.id).id)
    session.commit()
    scheduler.publish_due()
    polls = 0
    watcher = fresh_session()
    while watcher.scalar(select(PublisherArticle.state)) is ArticleState.PUBLISHING:
        watcher.rollback()
        clock.advance(timedelta(minutes=5))
        scheduler.publish_due()
        polls += 1
        assert polls < 100
    watcher.close()
    row = _article(fresh_session, ann.id)
    text = Message.loads(row.last_error).render()
    assert row.state is ArticleState.UNCERTAIN and "发布结果未知" in text and "重试" in text
    assert POLL_LIMIT <= timedelta(minutes=5) * polls <= POLL_LIMIT + timedelta(minutes=10)
    # 重试, after looking in the back office: polling resumes and finds it published.
    publishing_svc.retry_article(session, admin, row.id)
    session.commit()
    fake.publishing_polls = 0
    scheduler.publish_due()
    row = _article(fresh_session, ann.id)
    assert row.state is ArticleState.PUBLISHED and row.article_url
    assert len(fake.state.publishes) == 1


def test_forced_token_refreshes_are_capped_at_20_a_day(  # type: ignore[no-untyped-def]
    clock, fake, publisher, account, monkeypatch, fresh_session
):
    from wechat.publisher import FORCED_LIMIT, FORCED_PER_DAY

    original = fake.handle

    def always_40001(method, path, query, body, ctype):  # type: ignore[no-untyped-def]
        if path.endswith("add_material"):
            return {"errcode": 40001, "errmsg": "invalid credential"}
        return original(method, path, query, body, ctype)

    monkeypatch.setattr(fake, "handle", always_40001)
    for _ in range(FORCED_PER_DAY):
        with pytest.raises(PublishRetry):
            publisher.thumb_media_id(account.id, clock.now())
    assert fake.state.forced == FORCED_PER_DAY
    with pytest.raises(PublishRetry) as exc:
        publisher.thumb_media_id(account.id, clock.now())
    assert exc.value.message.msgid == FORCED_LIMIT and exc.value.retry_after
    assert fake.state.forced == FORCED_PER_DAY  # none past the cap
    assert fresh_session().get(PublisherAccount, account.id).token_refreshes == FORCED_PER_DAY
    fake.state.forced = 0  # the platform's day is over too
    clock.advance(timedelta(days=1))
    with pytest.raises(PublishRetry) as exc:
        publisher.thumb_media_id(account.id, clock.now())
    assert exc.value.message.msgid != FORCED_LIMIT  # a new day: forcing is allowed again
