"""The robot test message and the bind form say what happened in words a township officer
reads: "没能连上平台：…" when the platform was never reached, "平台拒收：…" when it refused,
never an exception's class name; a bind error comes first on the page, focused."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Area, ChatGroup, Role, User
from tests.bot.conftest import fresh
from tests.conftest import login
from tests.fakes.wecom_api import FakeWeCom
from tests.robots.test_binding import KEY, robot_entry_points  # noqa: F401  (autouse fixture)

CLASS_NAMES = ("ConnectError", "TemporaryFailure", "PermanentFailure", "ChatUnavailable", "Error：")


def _closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bind(client: FlaskClient, url: str, area: Area, title: str) -> None:
    response = client.post(
        "/chats/robots",
        data={"platform": "wecom", "webhook": url, "area_id": area.id, "title": title},
    )
    assert response.status_code == 302, response.get_data(as_text=True)[:300]


def test_the_test_message_says_in_words_what_happened(
    client: FlaskClient, make_user: Callable[..., User], session: Session, grid: dict[str, Area]
) -> None:
    login(client, make_user(Role.ADMIN))
    port = _closed_port()
    _bind(client, f"http://127.0.0.1:{port}/cgi-bin/webhook/send?key={KEY}", grid["v1"], "断网的群")
    fresh(session)
    chat = session.scalar(select(ChatGroup).where(ChatGroup.title == "断网的群"))
    assert chat is not None
    answer = client.post(f"/chats/{chat.id}/test")
    text = answer.get_data(as_text=True)
    assert answer.status_code == 502
    assert "没能连上平台：" in text and "稍后可以再试" in text
    assert not any(name in text for name in CLASS_NAMES)

    with FakeWeCom() as wecom:
        _bind(client, wecom.webhook("k-words-1"), grid["v2"], "已删机器人的群")
        wecom.remove_robot("k-words-1")  # 93000 from now on
        fresh(session)
        chat = session.scalar(select(ChatGroup).where(ChatGroup.title == "已删机器人的群"))
        assert chat is not None
        answer = client.post(f"/chats/{chat.id}/test")
        text = answer.get_data(as_text=True)
        assert answer.status_code == 502
        assert "平台拒收：" in text and "93000" in text
        assert not any(name in text for name in CLASS_NAMES)

        # In English, the whole answer is English: ours around it and the robot's reason.
        client.post("/lang", data={"lang": "en", "next": "/chats"})
        text = client.post(f"/chats/{chat.id}/test").get_data(as_text=True)
        assert "The platform refused it: The WeCom robot&#39;s webhook is no longer valid" in text
        assert "(93000: invalid webhook url" in text  # the platform's own words, as they came

    chat = session.scalar(select(ChatGroup).where(ChatGroup.title == "断网的群"))
    assert chat is not None
    text = client.post(f"/chats/{chat.id}/test").get_data(as_text=True)
    assert "Could not reach the platform: no network" in text
    assert "(you can try again later)" in text and "没能连上平台" not in text


@pytest.mark.parametrize(
    ("platform", "hint"),
    [("wecom", "群机器人"), ("dingtalk", "加签"), ("feishu", "签名校验")],
)
def test_a_bind_error_comes_first_focused_with_the_platform_hint(
    client: FlaskClient,
    make_user: Callable[..., User],
    grid: dict[str, Area],
    platform: str,
    hint: str,
) -> None:
    login(client, make_user(Role.ADMIN))
    response = client.post(
        "/chats/robots",
        data={
            "platform": platform,
            "webhook": "https://example.com/hook",
            "area_id": grid["v1"].id,
        },
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    summary = text.index('data-testid="robot-errors"')
    assert summary < text.index('data-testid="chats"')  # before the list, not 2,000 px below
    assert "autofocus" in text[summary - 200 : summary] and 'href="#robot-webhook"' in text
    assert hint in text[summary : text.index('data-testid="chats"')]
    assert 'value="https://example.com/hook"' in text  # nothing typed is lost
