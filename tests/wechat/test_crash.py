"""SIGKILL during a draft: a real process is killed while its request is out, or before."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cms.models import ArticleState, PublisherArticle
from tests.fakes.wechat_api import Fault

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import sys
from cms.channels import ChannelRegistry
from cms.db import make_engine, make_session_factory
from cms.publishers import PublisherRegistry
from cms.jobs import articles
from cms.jobs.context import Context
from cms.scheduler.core import Scheduler
from cms.settings import Settings
from wechat.publisher import WechatPublisher

data_dir, url, api = sys.argv[1:4]
settings = Settings.from_env(
    {"DALABA_WECHAT_API_URL": api}, data_dir=data_dir, secret_key="crash", database_url=url
)
engine = make_engine(url, data_dir=settings.data_dir)
sessions = make_session_factory(engine)
ctx = Context(settings=settings, engine=engine, sessions=sessions, registry=ChannelRegistry(),
              worker="child-process")
registry = PublisherRegistry()
registry.register(WechatPublisher(settings, sessions))
ctx.shared["publishers"] = registry
articles.share_url = lambda settings, ann: "https://dalaba.example.cn/s/x"
Scheduler(ctx).publish_due()
"""


def _run_and_kill(tmp_path, settings, fake, until) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(settings.data_dir), settings.database_url, fake.base_url],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not until() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
        time.sleep(0.02)
    assert until(), "the child never reached the point to kill it at"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def _row(fresh_session):  # type: ignore[no-untyped-def]
    return fresh_session().scalar(select(PublisherArticle))


@pytest.mark.slow
def test_kill_while_draft_request_is_out_leaves_it_uncertain_never_a_second_draft(  # type: ignore[no-untyped-def]
    tmp_path, settings, clock, scheduler, fake, publisher, account, make_announcement, grid,
    fresh_session,
):  # fmt: skip
    clock.set(datetime.now(UTC))
    make_announcement("approved", area_ids=[grid["v1"].id], to_loudspeaker=False)
    fake.fail(Fault.SLOW, path="/cgi-bin/draft/add")
    _run_and_kill(tmp_path, settings, fake, lambda: len(fake.state.drafts) == 1)
    row = _row(fresh_session)
    assert row.state is ArticleState.CREATING and row.request_started_at is not None
    # The next scheduler (this process) finds the dead claim: the draft may exist.
    clock.advance(timedelta(minutes=2))
    scheduler.publish_due()
    scheduler.publish_due()
    assert _row(fresh_session).state is ArticleState.UNCERTAIN
    assert len(fake.state.drafts) == 1


@pytest.mark.slow
def test_kill_before_the_draft_request_resumes_with_one_draft(  # type: ignore[no-untyped-def]
    tmp_path, settings, clock, scheduler, fake, publisher, account, make_announcement, grid,
    fresh_session,
):  # fmt: skip
    clock.set(datetime.now(UTC))
    make_announcement("approved", area_ids=[grid["v1"].id], to_loudspeaker=False)
    fake.fail(Fault.SLOW, path="/cgi-bin/stable_token")
    _run_and_kill(tmp_path, settings, fake, lambda: fake.state.token_fetches == 1)
    row = _row(fresh_session)
    assert row.state is ArticleState.CREATING and row.request_started_at is None
    # The dead process's token lease runs out; the next scheduler resumes.
    clock.advance(timedelta(minutes=2))
    scheduler.publish_due()
    row = _row(fresh_session)
    assert row.state is ArticleState.DRAFTED and len(fake.state.drafts) == 1
    assert row.attempts == 0
