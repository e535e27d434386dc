"""Migration 0018: the Official Account's tables become the generic publisher tables (the
AppID and AppSecret move into the plugin's ``credentials``, the platform-named columns get
neutral names, the audit log follows), and back, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select

from cms.migrate import alembic_config, current_revision, downgrade, head_revision, upgrade
from cms.models import (
    ArticleState,
    AuditLog,
    PublisherAccount,
    PublisherArticle,
)
from tests.pg import BACKENDS, settings_for

APP_ID, SECRET = "wx0123456789abcdef", "S" * 32


@pytest.fixture(params=BACKENDS)
def settings(request, settings):  # type: ignore[no-untyped-def]
    return settings_for(request, settings)


def _before_0018() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    down = script.get_revision("0018").down_revision
    assert isinstance(down, str)
    return down


def _row(engine, sql: str) -> dict:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql(sql).mappings().one())


def _rows(session, grid, make_announcement):  # type: ignore[no-untyped-def]
    ann = make_announcement("approved")
    account = PublisherAccount(
        area_id=grid["town"].id,
        platform="wechat",
        credentials={"app_id": APP_ID, "app_secret": SECRET},
        office="清水镇人民政府",
        access_token="TOKEN",
        token_expires_at=datetime(2026, 12, 5, 8, 0, tzinfo=UTC),
        cover_ref="COVER",
        token_refreshes=3,
        token_refresh_day=date(2026, 12, 5),
    )
    session.add(account)
    session.flush()
    article = PublisherArticle(
        account_id=account.id,
        announcement_id=ann.id,
        revision_id=ann.approved_revision_id,
        state=ArticleState.PUBLISHING,
        draft_ref="DRAFT",
        publish_ref="PUB",
        article_url="https://example.org/s/PUB",
    )
    session.add(article)
    session.flush()
    session.add(
        AuditLog(
            action="publishing.save",
            object_type="publisheraccount",
            object_id=account.id,
            detail={"app_id": APP_ID},
        )
    )
    session.commit()
    ids = account.id, article.id
    session.close()
    return ids


def test_0018_moves_accounts_articles_and_audit_both_ways(  # type: ignore[no-untyped-def]
    settings, engine, session, grid, make_announcement
):
    account_id, article_id = _rows(session, grid, make_announcement)

    downgrade(engine, _before_0018())
    tables = set(inspect(engine).get_table_names())
    assert {"wechat_account", "wechat_article"} <= tables
    assert not {"publisher_account", "publisher_article"} & tables
    old = _row(engine, f"SELECT * FROM wechat_account WHERE id = {account_id}")
    assert (old["app_id"], old["app_secret"], old["office"]) == (APP_ID, SECRET, "清水镇人民政府")
    assert (old["thumb_media_id"], old["forced_refreshes"], old["access_token"]) == (
        "COVER",
        3,
        "TOKEN",
    )
    assert str(old["forced_refresh_day"]).startswith("2026-12-05")
    old_article = _row(engine, f"SELECT * FROM wechat_article WHERE id = {article_id}")
    assert (old_article["media_id"], old_article["publish_id"], old_article["state"]) == (
        "DRAFT",
        "PUB",
        "publishing",
    )
    log = _row(engine, "SELECT action, object_type FROM audit_log WHERE action = 'wechat.save'")
    assert log == {"action": "wechat.save", "object_type": "wechataccount"}

    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert not {"wechat_account", "wechat_article"} & set(inspect(engine).get_table_names())
    session.expire_all()
    account = session.get(PublisherAccount, account_id)
    assert account is not None and account.platform == "wechat"
    assert account.credentials == {"app_id": APP_ID, "app_secret": SECRET}
    assert (account.cover_ref, account.token_refreshes, account.access_token) == (
        "COVER",
        3,
        "TOKEN",
    )
    assert account.token_refresh_day == date(2026, 12, 5)
    assert account.token_expires_at == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    article = session.get(PublisherArticle, article_id)
    assert article is not None
    assert (article.draft_ref, article.publish_ref, article.state) == (
        "DRAFT",
        "PUB",
        ArticleState.PUBLISHING,
    )
    entry = session.scalar(select(AuditLog).where(AuditLog.detail["app_id"].as_string() == APP_ID))
    assert entry is not None
    assert (entry.action, entry.object_type) == ("publishing.save", "publisheraccount")
    # The copied rows kept their ids; a new row takes the next one (PostgreSQL's sequence).
    fresh = PublisherAccount(area_id=grid["v1"].id, platform="wechat", credentials={})
    session.add(fresh)
    session.commit()
    assert fresh.id > account_id


def test_0018_downgrade_refuses_an_account_of_another_platform(  # type: ignore[no-untyped-def]
    settings, engine, session, grid
):
    session.add(PublisherAccount(area_id=grid["town"].id, platform="madeup", credentials={}))
    session.commit()
    session.close()
    with pytest.raises(RuntimeError, match="'madeup' publishing platform"):
        downgrade(engine, _before_0018())
    assert current_revision(engine) == head_revision()
