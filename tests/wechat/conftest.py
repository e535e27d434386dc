"""Fixtures for the Official Account: the fake API, an account, the scheduler with the publisher."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from cms.clock import ManualClock
from cms.jobs import articles
from cms.jobs.context import Context
from cms.models import Area, PublisherAccount
from cms.publishers import PublisherRegistry
from cms.services import publishing as publishing_svc
from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWechatApi
from tests.scheduler import conftest as _scheduler
from wechat.publisher import WechatPublisher

SHARE = "https://dalaba.example.cn/s/"

# The scheduler's fixtures, shared: a manual clock, the context, the scheduler itself.
admin = _scheduler.admin
audio_cache = _scheduler.audio_cache
clock = _scheduler.clock
ctx = _scheduler.ctx
fresh_session = _scheduler.fresh_session
registry = _scheduler.registry
scheduler = _scheduler.scheduler


@pytest.fixture
def fake(clock: ManualClock) -> Iterator[FakeWechatApi]:
    """The platform, on the scheduler's manual clock (tokens expire when the test says)."""
    with FakeWechatApi(clock=lambda: clock.now().timestamp()) as api:
        yield api


@pytest.fixture
def publisher(
    ctx: Context, fake: FakeWechatApi, monkeypatch: pytest.MonkeyPatch
) -> WechatPublisher:
    pub = WechatPublisher(ctx.settings.with_env(DALABA_WECHAT_API_URL=fake.base_url), ctx.sessions)
    reg = PublisherRegistry()
    reg.register(pub)
    ctx.shared["publishers"] = reg
    monkeypatch.setattr(articles, "share_url", lambda settings, ann: f"{SHARE}{ann.id}")
    return pub


@pytest.fixture
def account(session: Session, grid: dict[str, Area], admin) -> PublisherAccount:  # type: ignore[no-untyped-def]
    acc = publishing_svc.save_account(
        session, admin, None, platform="wechat", area_id=grid["town"].id,
        credentials={"app_id": APP_ID, "app_secret": APP_SECRET}, office="清水镇人民政府",
    )  # fmt: skip
    session.commit()
    return acc
