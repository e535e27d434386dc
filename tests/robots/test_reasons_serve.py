"""Through `dalaba serve`: why a robot did not post reads in the reader's language.

A notice for 新华村 goes to three robots bound there: a DingTalk robot whose security setting
(a custom keyword) refuses it with the documented 310000, a DingTalk robot that answers
130101 "send too fast" (and is then blocked), and a WeCom robot whose address nobody answers.
The first delivery fails, the other two wait; the notice's deliveries page and the scheduler
page say why, in English to an officer who reads English and in Chinese to one who reads
Chinese, the platform's code and own words kept as they are.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cms.db import make_session_factory
from cms.demo import DEMO_PASSWORD, seed
from cms.models import Area, Delivery, DeliveryState, User
from cms.services import chats, users
from cms.settings import Settings
from tests.fakes.dingtalk_api import FakeDingTalk
from tests.fakes.robot_base import RobotFault
from tests.scheduler.test_processes import Server
from tests.scheduler.test_reach_serve import _browser, _publish

pytestmark = pytest.mark.slow

KEYWORD_TOKEN = "xinhuakeywordrobot01"
BUSY_TOKEN = "xinhuabusyrobot00001"
WECOM_KEY = "xinhua-unreachable-robot"


@pytest.fixture
def ding() -> Iterator[FakeDingTalk]:
    with FakeDingTalk() as server:
        yield server


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _error_texts(html: str) -> list[str]:
    """The failure reasons a page shows (its ``error-text`` cells), tags removed."""
    found = re.findall(r'class="error-text">(.*?)</(?:td|span)>', html, flags=re.S)
    return [re.sub(r"<[^>]+>", "", text).strip() for text in found]


def test_a_robots_refusal_wait_and_network_trouble_read_in_each_readers_language(
    settings: Settings, engine: Engine, session: Session, ding: FakeDingTalk, tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    today = now.astimezone(settings.tz).date()
    seed(session, settings, today=today, now=now - timedelta(days=1))
    admin = session.scalars(select(User).where(User.username == "admin")).one()
    editor = session.scalars(select(User).where(User.username == "wangli")).one()
    reviewer = session.scalars(select(User).where(User.username == "lishuji")).one()
    reviewer.locale = "en"  # reads English; the editor reads Chinese (the default)
    xinhua = session.scalars(select(Area).where(Area.name == "新华村")).one()
    keyword = chats.bind_robot(
        session, admin, platform="dingtalk", area=xinhua, title="新华村钉钉群",
        webhook=ding.webhook(KEYWORD_TOKEN, keyword="防汛"),
    )  # fmt: skip
    busy = chats.bind_robot(
        session, admin, platform="dingtalk", area=xinhua, title="新华村钉钉二群",
        webhook=ding.webhook(BUSY_TOKEN),
    )  # fmt: skip
    unreachable = chats.bind_robot(
        session, admin, platform="wecom", area=xinhua, title="新华村企业微信群",
        webhook=f"http://127.0.0.1:{_closed_port()}/cgi-bin/webhook/send?key={WECOM_KEY}",
    )  # fmt: skip
    ding.fail(RobotFault.TOO_FAST, robot=BUSY_TOKEN)
    editor_token = users.issue_api_token(session, None, editor, "reasons")
    reviewer_token = users.issue_api_token(session, None, reviewer, "reasons")
    session.commit()

    server = Server(settings, tmp_path, "reasons")
    try:
        server.wait_ready(timeout=90)
        body = {
            "title": "新华村捐书通知",
            "body": "新华村小学图书角正在募集儿童读物，欢迎大家捐书。",
            "area_ids": [xinhua.id],
            "channels": ["chats"],
            "start_date": today.isoformat(),
            "end_date": today.isoformat(),
            "repeats": 1,
            "chat_post_time": "00:00",
        }
        ann_id = _publish(server, body, editor_token, reviewer_token)

        # The refusal fails at once; the busy and the unreachable robot wait with a reason.
        sessions = make_session_factory(engine)
        settled = False
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not settled:
            with sessions() as s:
                rows = {
                    d.chat_group_id: d
                    for d in s.scalars(
                        select(Delivery).where(Delivery.revision.has(announcement_id=ann_id))
                    )
                }
                settled = (
                    len(rows) == 3
                    and rows[keyword.id].state is DeliveryState.FAILED
                    and all(rows[c.id].last_error for c in (busy, unreachable))
                )
                if settled:
                    assert rows[busy.id].state is DeliveryState.PENDING
                    assert rows[unreachable.id].state is DeliveryState.PENDING
            assert server.proc.poll() is None, server.output()[-3000:]
            time.sleep(0.5)
        assert settled, server.output()[-3000:]
        assert ding.messages_to(KEYWORD_TOKEN) == [] and ding.messages_to(BUSY_TOKEN) == []

        english = _browser(server, "lishuji", DEMO_PASSWORD)
        chinese = _browser(server, "wangli", DEMO_PASSWORD)
        page_en = unescape(english(f"/schedule/announcements/{ann_id}"))
        page_zh = unescape(chinese(f"/schedule/announcements/{ann_id}"))
        assert '<html lang="en">' in page_en and '<html lang="zh-CN">' in page_zh
        reasons_en, reasons_zh = _error_texts(page_en), _error_texts(page_zh)
        assert len(reasons_en) == len(reasons_zh) == 3, (reasons_en, reasons_zh)

        refused_en = (
            "The DingTalk robot's security settings refused the message: the message contains "
            "none of the robot's “custom keywords”; in the DingTalk group robot's security "
            "settings, switch to “Additional Signature” or add a keyword (keywords not in content"
        )
        refused_zh = (
            "钉钉机器人的安全设置拒绝了消息：消息里没有机器人“自定义关键词”中的词，"
            "请在钉钉群机器人的安全设置里改用“加签”或加上关键词（keywords not in content"
        )
        # 130101 at first; once blocked, DingTalk answers with a redirect (either may be the
        # last word by the time the page is read).
        busy_en = re.compile(
            r"The DingTalk robot sent too often (\(130101: send too fast, exceed 20 times per "
            r"minute\)|and is blocked for a while \(HTTP 302 \(Found\)\)): nothing was sent; it "
            r"is sent again automatically in 10 minutes"
        )
        busy_zh = re.compile(
            r"钉钉机器人发送太频繁(（130101：send too fast, exceed 20 times per minute）|"
            r"，被暂时限制（HTTP 302（Found））)：没有发出，10 分钟后自动重发"
        )
        network_en = (
            "Could not reach the platform: no network, or the address cannot be reached; "
            "check this computer's network"
        )
        network_zh = "没能连上平台：网络不通或地址无法访问，请检查这台电脑的网络"
        for wanted in (refused_en, network_en):
            assert any(r.startswith(wanted) for r in reasons_en), (wanted, reasons_en)
        for wanted in (refused_zh, network_zh):
            assert any(r.startswith(wanted) for r in reasons_zh), (wanted, reasons_zh)
        assert any(busy_en.fullmatch(r) for r in reasons_en), reasons_en
        assert any(busy_zh.fullmatch(r) for r in reasons_zh), reasons_zh
        # Nothing of the Chinese wording is left in English: only the notice's own words.
        for reason in reasons_en:
            assert not re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", reason), reason

        # The scheduler page lists the failed delivery with its reason, in each language.
        status_en = _error_texts(unescape(english("/schedule/")))
        status_zh = _error_texts(unescape(chinese("/schedule/")))
        assert any(r.startswith(refused_en) for r in status_en), status_en
        assert any(r.startswith(refused_zh) for r in status_zh), status_zh
        # The robot's address key and the webhook stay out of every page.
        for page in (page_en, page_zh):
            assert KEYWORD_TOKEN not in page and WECOM_KEY not in page
    finally:
        server.stop()
