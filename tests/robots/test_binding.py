"""Binding robots: webhook validation, `dalaba chats bind/test`, the Chats page and its test
button, the entry points, and secrets kept out of sight."""

from __future__ import annotations

import json
import logging
import tomllib
from collections.abc import Callable, Iterator
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

import cms.channels
from cms.cli_chats import chats as chats_command
from cms.models import Area, AuditLog, ChatGroup, Role, User
from cms.services import chats
from cms.services.errors import ValidationError
from cms.settings import Settings
from tests.bot.conftest import fresh
from tests.conftest import login
from tests.fakes.dingtalk_api import FakeDingTalk
from tests.fakes.wecom_api import FakeWeCom

ROOT = Path(__file__).resolve().parents[2]
KEY = "693a91f6-7d1e-4bc4-97a0-0ec2a1fa5aaa"
D_SECRET = "SEC" + "a1" * 32


@pytest.fixture(autouse=True)
def robot_entry_points(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry points as pyproject.toml declares them (the shared venv was installed from
    another checkout, so its metadata may not list robots yet)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"][
        "dalaba.channels"
    ]
    points = [EntryPoint(name, value, "dalaba.channels") for name, value in declared.items()]

    def entry_points(*, group: str, name: str | None = None) -> list[EntryPoint]:
        return [p for p in points if p.group == group and name in (None, p.name)]

    monkeypatch.setattr(cms.channels, "entry_points", entry_points)


@pytest.fixture
def wecom() -> Iterator[FakeWeCom]:
    with FakeWeCom() as server:
        yield server


def test_entry_points_load_the_three_robot_channels(settings: Settings) -> None:
    for platform in ("wecom", "dingtalk", "feishu"):
        channel = cms.channels.load_channel(settings, platform)
        assert channel is not None and channel.platform == platform
    assert cms.channels.load_channel(settings, "nope") is None


@pytest.mark.parametrize(
    ("platform", "url", "secret", "field", "words"),
    [
        (
            "wecom",
            "http://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=" + KEY,
            "",
            "webhook",
            "http://",
        ),
        (
            "wecom",
            "https://evil.example/cgi-bin/webhook/send?key=" + KEY,
            "",
            "webhook",
            "qyapi.weixin.qq.com",
        ),
        ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=x", "", "webhook", "key="),
        (
            "wecom",
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=" + KEY,
            "SECabc",
            "secret",
            "没有签名密钥",
        ),
        (
            "dingtalk",
            "https://oapi.dingtalk.com/robot/send?token=abc",
            "",
            "webhook",
            "access_token",
        ),
        (
            "dingtalk",
            "https://oapi.dingtalk.com/robot/send?access_token=" + "a" * 64,
            "abc",
            "secret",
            "SEC",
        ),
        ("feishu", "https://open.feishu.cn/open-apis/bot/v2/hook/", "", "webhook", "hook"),
        (
            "feishu",
            "https://open.feishu.cn.evil.example/open-apis/bot/v2/hook/abcdefgh12",
            "",
            "webhook",
            "open.feishu.cn",
        ),
        ("feishu", "", "", "webhook", "webhook"),
        ("telegram", "https://x", "", "platform", "平台"),
    ],
)
def test_webhook_validation(platform: str, url: str, secret: str, field: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        chats.validate_binding(platform, {"webhook": url, "secret": secret})
    errors = info.value.render()
    assert words in errors[field], errors
    if secret:
        assert secret not in json.dumps(errors, ensure_ascii=False)


def test_valid_webhooks_are_normalised_and_named_by_a_hash() -> None:
    hook = chats.validate_binding(
        "dingtalk",
        {
            "webhook": "https://oapi.dingtalk.com/robot/send?access_token="
            + "ab" * 32
            + "&timestamp=1&sign=x",
            "secret": f" {D_SECRET} ",
        },
    )
    assert hook.credentials == {
        "webhook": "https://oapi.dingtalk.com/robot/send?access_token=" + "ab" * 32,
        "secret": D_SECRET,
    }
    assert D_SECRET not in repr(hook) and "ab" * 8 not in repr(hook)
    assert len(hook.chat_id) == 16 and "ab" * 8 not in hook.chat_id
    assert chats.validate_binding(
        "feishu", {"webhook": "https://open.larksuite.com/open-apis/bot/v2/hook/2b9f5e1a-3c4d-4e5f"}
    ).credentials == {
        "webhook": "https://open.larksuite.com/open-apis/bot/v2/hook/2b9f5e1a-3c4d-4e5f"
    }
    assert (
        chats.validate_binding(
            "wecom", {"webhook": f"http://[::1]:8080/cgi-bin/webhook/send?key={KEY}"}
        )
        .credentials["webhook"]
        .startswith("http://[::1]:8080/")
    )


def test_rebinding_the_same_robot_updates_it(session: Session, grid: dict[str, Area]) -> None:
    url = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
    first = chats.bind_robot(
        session, None, platform="wecom", webhook=url, area=grid["g1"], title="一组"
    )
    chats.unbind_chat(session, None, first)
    again = chats.bind_robot(session, None, platform="wecom", webhook=url, area=grid["v2"])
    assert again.id == first.id and again.active and again.area_id == grid["v2"].id
    assert again.title == "一组"
    audit = session.scalars(select(AuditLog)).all()
    assert KEY not in json.dumps([a.detail for a in audit], ensure_ascii=False, default=str)


def _env(settings: Settings) -> dict[str, str | None]:
    return {
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_SECRET_KEY": "test-secret",
        "DALABA_TELEGRAM_TOKEN": None,
        "DALABA_DATABASE_URL": None,
        "DALABA_ROBOT_SECRET": None,
    }


def test_cli_bind_and_test_message(
    settings: Settings,
    session: Session,
    grid: dict[str, Area],
    wecom: FakeWeCom,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    runner = CliRunner()
    env = _env(settings)
    args = ["bind", "--platform", "wecom", "--area", "清水镇/石桥村/一组"]
    result = runner.invoke(chats_command, [*args, "--webhook", "https://example.com/x"], env=env)
    assert result.exit_code == 1 and "qyapi.weixin.qq.com" in result.output
    result = runner.invoke(chats_command, args, env=env)
    assert result.exit_code == 2 and "--webhook" in result.output
    result = runner.invoke(
        chats_command, [*args, "--webhook", wecom.webhook(KEY), "--title", "一组机器人"], env=env
    )
    assert result.exit_code == 0, result.output
    assert "清水镇 / 石桥村 / 一组" in result.output and KEY not in result.output
    chat = session.scalar(select(ChatGroup).where(ChatGroup.platform == "wecom"))
    assert chat is not None and chat.credentials == {"webhook": wecom.webhook(KEY)}
    listed = runner.invoke(chats_command, ["list", "--json"], env=env)
    assert KEY not in listed.output and "一组机器人" in listed.output
    result = runner.invoke(chats_command, ["test", str(chat.id)], env=env)
    assert result.exit_code == 0, result.output
    assert "平台已接收" in result.output
    [m] = wecom.messages_to(KEY)
    assert "测试消息" in m.body["text"]["content"]
    wecom.remove_robot(KEY)
    result = runner.invoke(chats_command, ["test", str(chat.id)], env=env)
    assert result.exit_code == 1 and "93000" in result.output and KEY not in result.output
    assert KEY not in caplog.text


def test_cli_secret_from_the_environment_is_stored_not_echoed(
    settings: Settings, session: Session, grid: dict[str, Area]
) -> None:
    env = _env(settings) | {"DALABA_ROBOT_SECRET": D_SECRET}
    result = CliRunner().invoke(
        chats_command,
        [
            "bind", "--platform", "dingtalk", "--area", str(grid["g1"].id),
            "--webhook", "https://oapi.dingtalk.com/robot/send?access_token=" + "cd" * 32,
        ],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert D_SECRET not in result.output
    fresh(session)
    chat = session.scalar(select(ChatGroup).where(ChatGroup.platform == "dingtalk"))
    assert chat is not None and chat.credentials["secret"] == D_SECRET


def test_web_form_binds_and_the_test_button_shows_the_answer(
    client: FlaskClient,
    make_user: Callable[..., User],
    session: Session,
    grid: dict[str, Area],
) -> None:
    login(client, make_user(Role.ADMIN))
    page = client.get("/chats").get_data(as_text=True)
    assert 'data-testid="robot-form"' in page
    with FakeDingTalk() as ding:
        url = ding.webhook("ef" * 32, secret=D_SECRET)
        bad = client.post(
            "/chats/robots",
            data={
                "platform": "dingtalk",
                "webhook": url,
                "secret": "nope",
                "area_id": grid["g1"].id,
            },
        )
        assert bad.status_code == 400
        text = bad.get_data(as_text=True)
        assert "SEC" in text and 'data-field="secret"' in text
        assert url.replace("&", "&amp;") in text  # nothing typed is lost
        ok = client.post(
            "/chats/robots",
            data={
                "platform": "dingtalk",
                "webhook": url,
                "secret": D_SECRET,
                "area_id": grid["g1"].id,
                "title": "村委钉钉群",
            },
            follow_redirects=True,
        )
        assert ok.status_code == 200
        page = ok.get_data(as_text=True)
        assert "村委钉钉群" in page and D_SECRET not in page and "ef" * 32 not in page
        fresh(session)
        chat = session.scalar(select(ChatGroup).where(ChatGroup.platform == "dingtalk"))
        assert chat is not None and chat.credentials["secret"] == D_SECRET
        answer = client.post(f"/chats/{chat.id}/test")
        assert answer.status_code == 200
        assert 'data-testid="test-answer"' in answer.get_data(as_text=True)
        assert "平台已接收" in answer.get_data(as_text=True)
        assert len(ding.messages_to("ef" * 32)) == 1
        # A wrong secret: the answer says which setting to change, and never the secret.
        fresh(session)
        chat = session.get(ChatGroup, chat.id)
        assert chat is not None
        chat.credentials = {**chat.credentials, "secret": "SEC" + "0" * 64}
        session.commit()
        answer = client.post(f"/chats/{chat.id}/test")
        text = answer.get_data(as_text=True)
        assert answer.status_code == 502 and "加签" in text and "SEC" + "0" * 64 not in text
    assert client.post("/chats/99999/test").status_code == 404


def test_robot_form_field_errors_and_access_rule(
    client: FlaskClient, make_user: Callable[..., User], grid: dict[str, Area]
) -> None:
    login(client, make_user(Role.ADMIN))
    response = client.post(
        "/chats/robots",
        data={
            "platform": "wecom",
            "webhook": "http://10.0.0.5/cgi-bin/webhook/send?key=" + KEY,
            "area_id": "x",
        },
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 400
    assert 'data-field="webhook"' in text and 'data-field="area_id"' in text
    client.get("/logout")
    login(client, make_user(Role.EDITOR))
    assert client.post("/chats/robots", data={}).status_code in (403, 404)


@pytest.mark.parametrize(
    "url",
    [
        f"http://localhost/cgi-bin/webhook/send?key={KEY}",
        f"http://127.0.0.2:22/cgi-bin/webhook/send?key={KEY}",
        f"https://[::1]:8080/cgi-bin/webhook/send?key={KEY}",
        f"https://10.0.0.5/cgi-bin/webhook/send?key={KEY}",
        f"https://192.168.1.1/cgi-bin/webhook/send?key={KEY}",
        f"https://169.254.169.254/cgi-bin/webhook/send?key={KEY}",
        f"https://0.0.0.0/cgi-bin/webhook/send?key={KEY}",
        f"https://app.localhost/cgi-bin/webhook/send?key={KEY}",
    ],
)
def test_local_and_private_webhooks_only_when_the_install_allows_them(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DALABA_ALLOW_LOCAL_WEBHOOKS")
    with pytest.raises(ValidationError) as info:
        chats.validate_binding("wecom", {"webhook": url})
    assert "内网" in info.value.render()["webhook"]
    with pytest.raises(ValidationError):
        chats.validate_binding("wecom", {"webhook": url}, allow_local=False)
    https = f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={KEY}"
    assert chats.validate_binding("wecom", {"webhook": https}).credentials == {"webhook": https}
    monkeypatch.setenv("DALABA_ALLOW_LOCAL_WEBHOOKS", "1")
    assert chats.validate_binding(
        "wecom", {"webhook": url}
    ).credentials  # a test fake, a relay on the network


def test_a_township_admin_cannot_point_a_robot_at_the_servers_own_ports(
    app_without_local_webhooks: Any,
    make_user: Callable[..., User],
    session: Session,
    grid: dict[str, Area],
) -> None:
    """Without DALABA_ALLOW_LOCAL_WEBHOOKS the form refuses a loopback address, and the test
    button refuses one bound before (nothing is posted there, no local answer is shown)."""
    client = app_without_local_webhooks.test_client()
    login(client, make_user(Role.ADMIN))
    with FakeWeCom() as wecom:
        for url in (wecom.webhook(KEY), f"http://127.0.0.2:22/cgi-bin/webhook/send?key={KEY}"):
            response = client.post(
                "/chats/robots",
                data={"platform": "wecom", "webhook": url, "area_id": grid["g1"].id},
            )
            assert response.status_code == 400
            assert "内网" in response.get_data(as_text=True)
        assert session.scalar(select(ChatGroup).where(ChatGroup.platform == "wecom")) is None
        old = chats.bind_robot(
            session, None, platform="wecom", webhook=wecom.webhook(KEY), area=grid["g1"],
            allow_local=True,
        )  # fmt: skip
        session.commit()
        answer = client.post(f"/chats/{old.id}/test")
        assert answer.status_code == 502 and "内网" in answer.get_data(as_text=True)
        assert wecom.messages_to(KEY) == []


@pytest.fixture
def app_without_local_webhooks(settings: Settings, engine: Any, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from cms.web import create_app

    monkeypatch.delenv("DALABA_ALLOW_LOCAL_WEBHOOKS")
    app = create_app(settings.with_(allow_local_webhooks=False), engine=engine)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    app.extensions["dalaba.bookkeeper"].inline = True
    yield app
    app.extensions["dalaba.downloads"].close()
