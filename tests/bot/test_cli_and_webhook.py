"""`dalaba chats …`, `dalaba bot`, the webhook listener, and the import rules for bot/."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy.orm import Session

from bot.channel import TelegramChannel, WebhookConfig
from bot.cli import bot as bot_command
from cms.cli_chats import chats as chats_command
from cms.models import Area
from cms.services import chats
from cms.settings import Settings
from tests.bot.conftest import fresh, wait_until
from tests.fakes.telegram_api import FakeBotApi


def _env(settings: Settings, **extra: str | None) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_SECRET_KEY": "test-secret",
        "DALABA_TELEGRAM_TOKEN": None,
        "DALABA_TELEGRAM_API_URL": None,
        "DALABA_DATABASE_URL": None,
    }
    env.update(extra)
    return env


def test_chats_bind_list_unbind(
    settings: Settings, session: Session, grid: dict[str, Area]
) -> None:
    runner = CliRunner()
    env = _env(settings)
    result = runner.invoke(
        chats_command,
        ["bind", "--chat-id", "-100777", "--area", "清水镇/石桥村/一组", "--title", "一组群"],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "清水镇 / 石桥村 / 一组" in result.output
    # A bare name that two villages share is refused with a hint; an id works.
    result = runner.invoke(
        chats_command, ["bind", "--chat-id", "-100778", "--area", "一组"], env=env
    )
    assert result.exit_code == 1 and "完整路径" in result.output
    result = runner.invoke(
        chats_command, ["bind", "--chat-id", "-100778", "--area", str(grid["v2"].id)], env=env
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(chats_command, ["bind", "--chat-id", "x1", "--area", "柳林村"], env=env)
    assert result.exit_code == 1 and "群聊 ID" in result.output

    listed = json.loads(runner.invoke(chats_command, ["list", "--json"], env=env).output)
    assert [(c["chat_id"], c["area"], c["active"]) for c in listed] == [
        ("-100777", "清水镇 / 石桥村 / 一组", True),
        ("-100778", "清水镇 / 柳林村", True),
    ]
    result = runner.invoke(chats_command, ["unbind", "--chat-id", "-100777"], env=env)
    assert result.exit_code == 0, result.output
    assert runner.invoke(chats_command, ["unbind", "--chat-id", "-100777"], env=env).exit_code == 1
    fresh(session)
    row = chats.find_chat(session, "telegram", "-100777")
    assert row is not None and not row.active


def test_bot_command_without_token_explains_in_chinese(settings: Settings) -> None:
    result = CliRunner().invoke(bot_command, [], env=_env(settings))
    assert result.exit_code == 1
    assert "未设置 DALABA_TELEGRAM_TOKEN" in result.output


@pytest.mark.slow
def test_bot_command_runs_alone_and_stops_on_sigterm(
    settings: Settings, api: FakeBotApi, engine: object
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALABA_")}
    env.update(
        {
            k: v
            for k, v in _env(
                settings, DALABA_TELEGRAM_TOKEN=api.token, DALABA_TELEGRAM_API_URL=api.api_url
            ).items()
            if v is not None
        }
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "bot.cli"],
        env=env,
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        user = api.user(42)
        api.push_command(chat=api.private(user), user=user, text="/start")
        wait_until(lambda: api.messages_to(42), timeout=30)
        assert "大喇叭通知机器人" in api.messages_to(42)[0].text
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "机器人已启动" in output and "机器人已停止" in output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_mode_registers_and_accepts_only_telegram(
    make_channel: Callable[..., TelegramChannel], api: FakeBotApi
) -> None:
    port = _free_port()
    config = WebhookConfig(f"http://127.0.0.1:{port}/tg/hook", "127.0.0.1", port, "s3cret-token")
    make_channel(updates="webhook", webhook=config)
    assert api.webhook is not None
    assert api.webhook["url"] == config.url and api.webhook["secret_token"] == "s3cret-token"

    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 0,
            "chat": {"id": 43, "type": "private", "first_name": "李"},
            "from": api.user(43),
            "text": "/help",
            "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
        },
    }
    forged = httpx.post(config.url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "x"})
    assert forged.status_code == 403
    real = httpx.post(
        config.url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "s3cret-token"}
    )
    assert real.status_code == 200
    wait_until(lambda: api.messages_to(43))
    assert "/today" in api.messages_to(43)[0].text


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("bot.channel", {"flask", "flask_babel", "werkzeug.routing"}),
        ("bot.handlers", {"flask"}),
        ("bot.cli", {"flask", "telegram"}),
        ("cms.services.chats", {"telegram", "bot", "flask"}),
        ("cms.cli_chats", {"telegram", "bot", "flask"}),
    ],
)
def test_import_rules(module: str, forbidden: set[str]) -> None:
    code = (
        f"import importlib, json, sys; importlib.import_module({module!r}); "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    loaded = set(json.loads(out))
    assert not (forbidden & (loaded | {m.split(".")[0] for m in loaded}))
