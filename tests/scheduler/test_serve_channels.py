"""Every channel proven through a running `dalaba serve`: the notice is approved through the
JSON API and the platform (a loopback fake) receives it, sent by the server's own scheduler.

Channels: the local outbox, Telegram, WeCom, DingTalk, Feishu, and the Official Account
(approval → draft → 发布 on the web page → published, the article's link on the page).
Each test prints the seconds from the approval to what the platform received (a measure
for the notes, never an assertion on time).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cms.db import make_session_factory
from cms.models import Area, ArticleState, OutboxMessage, PublisherArticle, Role, Topic, User
from cms.services import chats, users
from cms.services import publishing as publishing_svc
from cms.settings import Settings
from tests.conftest import PASSWORD
from tests.fakes.dingtalk_api import FakeDingTalk
from tests.fakes.feishu_api import FakeFeishu
from tests.fakes.telegram_api import FakeBotApi
from tests.fakes.wechat_api import APP_ID, APP_SECRET, FakeWechatApi
from tests.fakes.wecom_api import FakeWeCom
from tests.scheduler.test_processes import free_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
API = "/api/v1"
WAIT_S = 90.0


class Serve:
    """One `dalaba serve` process (web, scheduler and channels) on the test's database."""

    def __init__(self, settings: Settings, log_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / "serve.log"
        full = {k: v for k, v in os.environ.items() if not k.startswith("DALABA_")}
        full.update(
            {
                "DALABA_DATA_DIR": str(settings.data_dir),
                "DALABA_DATABASE_URL": settings.database_url,
                "DALABA_SECRET_KEY": "serve-channels-secret",
                "DALABA_TTS_ENGINE": "offline",
                "DALABA_BASE_URL": self.url,
                "DALABA_SCHEDULER_TICK": "0.3",
                "DALABA_SCHEDULER_LEASE": "3",
                "PYTHONUNBUFFERED": "1",
                **env,
            }
        )
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cms.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=full,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.cookies = http.cookiejar.CookieJar()
        self.browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/login", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server not ready:\n{self.output()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    # -- the JSON API, as a script would use it ------------------------------------------

    def api(self, method: str, path: str, token: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode()
        request = urllib.request.Request(
            self.url + API + path,
            data=data if method != "GET" else None,
            method=method,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{method} {path}: {exc.code} {exc.read()[:2000]!r}") from None

    # -- the web pages, as a person would use them ----------------------------------------

    def page(self, path: str, form: dict[str, str] | None = None) -> str:
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        with self.browser.open(self.url + path, data=data, timeout=30) as r:
            return r.read().decode("utf-8")

    def login(self, username: str) -> None:
        html = self.page("/login")
        self.page("/login", {"csrf_token": csrf(html), "username": username, "password": PASSWORD})


def csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def wait_for(what: str, check: Callable[[], Any], server: Serve, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if server.proc.poll() is not None:
            raise AssertionError(
                f"server exited while waiting for {what}:\n{server.output()[-3000:]}"
            )
        time.sleep(0.1)
    raise AssertionError(f"never saw {what} in {timeout:.0f} s:\n{server.output()[-4000:]}")


@pytest.fixture
def serve(tmp_path: Path, settings: Settings, engine: Engine) -> Iterator[Callable[..., Serve]]:
    started: list[Serve] = []

    def start(**env: str) -> Serve:
        server = Serve(settings, tmp_path, **env)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def people(session: Session, make_user: Callable[..., User]) -> dict[str, tuple[User, str]]:
    """An editor and a reviewer, each with an API token."""
    out = {}
    for role in (Role.EDITOR, Role.REVIEWER):
        user = make_user(role)
        out[role.value] = (user, users.issue_api_token(session, None, user))
    session.commit()
    return out


def approve(
    server: Serve, people: dict[str, tuple[User, str]], area: Area, topic: Topic, today: date,
    title: str = "周六清理村道垃圾",
) -> tuple[int, float]:  # fmt: skip
    """Draft, submit and approve a chats-only notice through the API; returns its id and
    the moment of approval (monotonic)."""
    editor, reviewer = people["editor"][1], people["reviewer"][1]
    ann = server.api(
        "POST",
        "/announcements",
        editor,
        {
            "title": title,
            "body": "各位村民：本周六上午九点在村委会门口集中清理村道垃圾，请每户派一人参加。",
            "topic_id": topic.id,
            "area_ids": [area.id],
            "channels": ["chats"],
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=2)).isoformat(),
            "repeats": 1,
            "chat_post_time": "00:00",
        },
    )
    server.api("POST", f"/announcements/{ann['id']}/submit", editor)
    server.api("POST", f"/announcements/{ann['id']}/approve", reviewer)
    return ann["id"], time.monotonic()


def measured(channel: str, seconds: float) -> None:
    print(f"\nRESULT channel={channel} approval_to_post_s={seconds:.2f}")


def township_today(settings: Settings) -> date:
    from datetime import datetime

    return datetime.now(settings.tz).date()


# --- The chat channels ------------------------------------------------------------------


def test_local_outbox_through_serve(  # type: ignore[no-untyped-def]
    serve, session, engine, settings, grid, topic, people
) -> None:
    chats.bind_chat(
        session, None, platform="telegram", chat_id="-1001", area=grid["v1"], title="石桥群"
    )
    session.commit()
    server = serve()  # no bot token: Telegram chats go to the local outbox
    _, approved = approve(server, people, grid["v1"], topic, township_today(settings))
    sessions = make_session_factory(engine)

    def posted() -> list[OutboxMessage]:
        with sessions() as s:
            return list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))

    messages = wait_for("the outbox's text", posted, server)
    measured("outbox", time.monotonic() - approved)
    assert messages[0].kind == "text" and "清理村道垃圾" in messages[0].text
    # What the officer reads on the outbox page.
    server.login(people["editor"][0].username)
    assert "周六清理村道垃圾" in server.page("/schedule/outbox")


def test_telegram_through_serve(  # type: ignore[no-untyped-def]
    serve, session, settings, grid, topic, people
) -> None:
    with FakeBotApi() as api:
        chats.bind_chat(
            session, None, platform="telegram", chat_id="-1002", area=grid["v1"], title="石桥群"
        )
        session.commit()
        server = serve(DALABA_TELEGRAM_TOKEN=api.token, DALABA_TELEGRAM_API_URL=api.api_url)
        _, approved = approve(server, people, grid["v1"], topic, township_today(settings))
        messages = wait_for("a Telegram message", lambda: api.messages_to("-1002"), server)
        measured("telegram", time.monotonic() - approved)
        assert "清理村道垃圾" in (messages[0].text or "")
        server.stop()  # before the fake: the bot's long poll would hold the fake's shutdown


ROBOTS: dict[str, tuple[Any, Callable[[Any], str]]] = {
    "wecom": (FakeWeCom, lambda fake: fake.webhook("serve-wecom-key")),
    "dingtalk": (
        FakeDingTalk,
        lambda fake: fake.webhook("servedingtalk0001", secret="SECservedingtalksecret01"),
    ),
    "feishu": (
        FakeFeishu,
        lambda fake: fake.webhook("serve-feishu-hook", secret="servefeishusecret01"),
    ),
}
SECRETS = {"wecom": "", "dingtalk": "SECservedingtalksecret01", "feishu": "servefeishusecret01"}
TOKENS = {
    "wecom": "serve-wecom-key",
    "dingtalk": "servedingtalk0001",
    "feishu": "serve-feishu-hook",
}


@pytest.mark.parametrize("platform", sorted(ROBOTS))
def test_group_robot_through_serve(  # type: ignore[no-untyped-def]
    serve, session, settings, grid, topic, people, platform
) -> None:
    kind, webhook = ROBOTS[platform]
    with kind() as fake:
        chats.bind_robot(
            session, None, platform=platform, webhook=webhook(fake), secret=SECRETS[platform],
            area=grid["v1"], title=f"石桥{platform}群", allow_local=True,  # the fake is on loopback
        )  # fmt: skip
        session.commit()
        server = serve(DALABA_ALLOW_LOCAL_WEBHOOKS="1")
        _, approved = approve(server, people, grid["v1"], topic, township_today(settings))
        messages = wait_for(
            f"a {platform} post", lambda: fake.messages_to(TOKENS[platform]), server
        )
        measured(platform, time.monotonic() - approved)
        assert "清理村道垃圾" in json.dumps(messages[0].body, ensure_ascii=False)
        if platform == "wecom":
            # The voice note follows the text (rendered by the server, converted to AMR).
            voice = wait_for(
                "the WeCom voice note",
                lambda: [m for m in fake.messages_to(TOKENS[platform]) if m.msgtype == "voice"],
                server,
            )
            measured("wecom_voice", time.monotonic() - approved)
            assert voice


# --- The Official Account ---------------------------------------------------------------


def test_official_account_draft_publish_and_link_through_serve(  # type: ignore[no-untyped-def]
    serve, session, engine, settings, grid, topic, people
) -> None:
    """Approval → the draft in the draft box → 发布 on the web → published, link on the page."""
    with FakeWechatApi(publishing_polls=1) as fake:
        admin_user = people["reviewer"][0]
        publishing_svc.save_account(
            session, admin_user, None, platform="wechat", area_id=grid["town"].id,
            credentials={"app_id": APP_ID, "app_secret": APP_SECRET}, office="清水镇人民政府",
        )  # fmt: skip
        session.commit()
        server = serve(DALABA_WECHAT_API_URL=fake.base_url)
        # An ordinary township title of 37 characters; the platform takes 32.
        title = "关于开展二〇二六年全镇农村人居环境整治暨村道垃圾清理专项督查检查工作的通知"
        assert len(title) == 37
        # The editor sees the Official Account's title and its limit in the form.
        server.login(people["editor"][0].username)
        form = server.page("/announcements/new")
        assert 'id="oa-title" data-limit="32"' in form
        ann_id, approved = approve(
            server, people, grid["v1"], topic, township_today(settings), title
        )
        drafts = wait_for(
            "a draft in the draft box", lambda: list(fake.state.drafts.values()), server
        )
        measured("wechat_draft", time.monotonic() - approved)
        article = drafts[0].articles[0]
        assert (
            article["title"] == "开展二〇二六年全镇农村人居环境整治暨村道垃圾清理专项督查检查工作"
        )
        assert len(article["title"]) <= 32 and len(article["author"]) <= 16
        assert len(article["digest"]) <= 128
        assert "清理村道垃圾" in article["content"]
        sessions = make_session_factory(engine)

        def drafted() -> PublisherArticle | None:
            with sessions() as s:
                row = s.scalar(
                    select(PublisherArticle).where(PublisherArticle.announcement_id == ann_id)
                )
                return row if row is not None and row.state is ArticleState.DRAFTED else None

        row = wait_for("the article marked drafted", drafted, server)

        # 发布, as the reviewer does on the announcement's page.
        server.login(people["reviewer"][0].username)
        page = server.page(f"/schedule/announcements/{ann_id}")
        assert "草稿已在公众号" in page
        action = f"/schedule/announcements/{ann_id}/wechat/{row.id}/publish"
        assert action in page
        pressed = time.monotonic()
        server.page(action, {"csrf_token": csrf(page)})

        def published() -> str | None:
            html = server.page(f"/schedule/announcements/{ann_id}")
            match = re.search(r'href="(https://mp\.weixin\.qq\.com/s/[^"]+)"', html)
            return match.group(1) if match else None

        link = wait_for("the article's link on the page", published, server)
        measured("wechat_publish", time.monotonic() - pressed)
        assert len(fake.state.publishes) == 1
        publish = next(iter(fake.state.publishes.values()))
        assert link.endswith(publish.publish_id) and publish.media_id == drafts[0].media_id
        assert "已发布" in server.page(f"/schedule/announcements/{ann_id}")
        assert not fake.state.refused  # nothing failed at the platform for length
        server.stop()
