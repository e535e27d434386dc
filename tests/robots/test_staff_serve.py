"""End to end through `dalaba serve`: an editor submits a notice on the web, and the township's
staff work group (a WeCom robot on the loopback fake) gets "待审核 N 条" with the link."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cms.demo import DEMO_PASSWORD, seed
from cms.models import Announcement, Area, Status, User
from cms.services import chats, staff
from cms.settings import Settings
from tests.fakes.wecom_api import FakeWeCom
from tests.scheduler.test_processes import Server

pytestmark = pytest.mark.slow

KEY = "qingshui-staff-robot"


@pytest.fixture
def api() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server


class Browser:
    """A user agent with cookies that reads each form's CSRF token, as a browser would."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=20) as response:
            return response.read().decode("utf-8")

    def post(self, path: str, form_path: str, data: list[tuple[str, str]]) -> str:
        page = self.get(form_path)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token, page[:500]
        body = urllib.parse.urlencode([("csrf_token", token.group(1)), *data]).encode()
        with self.opener.open(self.base + path, data=body, timeout=30) as response:
            return response.geturl()


def staff_posts(api: FakeWeCom, before: int) -> list[str]:
    """The review posts the work group got since ``before``. The robot is also the township's
    chat, so the demo's notices that fall due at this hour of the day reach it too (text and
    voice); those are not the staff channel's and are left out."""
    posts = []
    for received in api.messages_to(KEY)[before:]:
        body: Any = received.body
        content = (body.get("text") or {}).get("content") or (body.get("markdown") or {}).get(
            "content"
        )
        if content and "【待审核" in content:
            posts.append(content)
    return posts


def test_the_reviewers_work_group_hears_of_a_submission(
    settings: Settings, session: Session, api: FakeWeCom, tmp_path: Path
) -> None:
    seed(session, settings)
    town = session.scalar(select(Area).where(Area.name == "清水镇"))
    village = session.scalar(select(Area).where(Area.name == "石桥村"))
    admin = session.scalar(select(User).where(User.username == "admin"))
    assert town is not None and village is not None and admin is not None
    robot = chats.bind_robot(
        session, admin, platform="wecom", webhook=api.webhook(KEY), secret="", area=town,
        title="清水镇干部工作群",
    )  # fmt: skip
    staff.bind(session, admin, town, robot.id, ["review", "returned"], datetime.now(UTC))
    session.commit()
    before = len(api.messages_to(KEY))
    waiting = session.scalar(
        select(func.count(Announcement.id)).where(Announcement.status == Status.IN_REVIEW)
    )

    server = Server(settings, tmp_path, "staff")
    try:
        server.wait_ready()
        editor = Browser(f"http://127.0.0.1:{server.port}")
        editor.post("/login", "/login", [("username", "wangli"), ("password", DEMO_PASSWORD)])
        landed = editor.post(
            "/announcements/new",
            "/announcements/new",
            [
                ("title", "关于召开户长会的通知"),
                ("body", "定于本周六19:30在村委会召开户长会。联系电话：13812345678。"),
                ("area_ids", str(village.id)),
                ("to_loudspeaker", "on"),
                ("start_date", datetime.now(settings.tz).date().isoformat()),
                ("end_date", datetime.now(settings.tz).date().isoformat()),
                ("repeats", "1"),
                ("voice", "zh-CN-XiaoxiaoNeural"),
                ("rate", "0"),
                ("priority", "normal"),
                ("airtime", "all"),
                ("action", "submit"),
            ],
        )
        assert re.search(r"/announcements/\d+$", landed), landed
        ann_id = landed.rsplit("/", 1)[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not staff_posts(api, before):
            time.sleep(0.2)
        got = staff_posts(api, before)
        assert len(got) == 1, server.output()[-3000:]
        content = got[0]
        # The demo has notices waiting already: they are listed with the new one.
        assert f"【待审核 {waiting + 1} 条】" in content and "《关于召开户长会的通知》" in content
        assert f"{settings.base_url}/announcements/{ann_id}" in content
        time.sleep(2)  # more ticks: told once
        assert len(staff_posts(api, before)) == 1
    finally:
        server.stop()
