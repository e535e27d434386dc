"""A made-up platform (扩音站, :mod:`tests.plugins.megaphone`) added only through an entry
point: a running `dalaba serve` shows it, binds a chat of it from the Chats page, refuses a
wrong address or token in the platform's own words, stores the token with the chat without
showing it again, sends an approved notice to it from its own scheduler (the token reaching
its channel through the chat's credentials), and lists the bound chat under the platform's
label; `dalaba chats bind` takes its token as ``--token``. cms has no line about it.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

import cms.channels
from cms.cli_chats import chats as chats_command
from cms.models import AuditLog, ChatGroup, Role
from cms.services import chats
from cms.services.errors import ValidationError
from tests.plugins import megaphone
from tests.scheduler.test_serve_channels import Serve, approve, csrf, township_today, wait_for

pytestmark = pytest.mark.slow

KEY = "0123456789ab"
TOKEN = "Tok3nOfMegaphone"


class FakeMegaphone:
    """The platform's server on loopback (its protocol: :mod:`tests.plugins.megaphone`)."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys  # hook key → its token
        self.received: list[dict[str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                key = self.path.rsplit("/", 1)[-1]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if not self.path.startswith("/hook/") or key not in fake.keys:
                    status, answer = 404, {"code": 404, "msg": "no such hook"}
                elif self.headers.get("X-Megaphone-Token") != fake.keys[key]:
                    status, answer = 401, {"code": 401, "msg": "bad token"}
                else:
                    fake.received.append({"key": key, **body})
                    status, answer = 200, {"code": 0, "id": f"m{len(fake.received)}"}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeMegaphone:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The made-up platform installed as a distribution whose only tie to dalaba is its
    entry point (the folder goes on sys.path here and on PYTHONPATH for `dalaba serve`)."""
    site = tmp_path / "site"
    info = site / "dalaba_megaphone-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: dalaba-megaphone\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[dalaba.channels]\nmegaphone = tests.plugins.megaphone:plugin\n"
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_the_entry_point_alone_registers_the_platform(installed: Path) -> None:
    assert "megaphone" in cms.channels.plugins()
    assert chats.PLATFORM_LABELS["megaphone"] == "扩音站"
    assert "megaphone" in chats.ROBOT_PLATFORMS
    with pytest.raises(ValidationError) as refused:
        chats.validate_binding("megaphone", {"webhook": "https://qyapi.weixin.qq.com/hook/" + KEY})
    assert refused.value.render() == {"webhook": megaphone.BAD_ADDRESS, "token": megaphone.NO_TOKEN}
    with pytest.raises(ValidationError) as refused:
        chats.validate_binding(
            "megaphone", {"webhook": f"https://megaphone.example/hook/{KEY}", "token": "short"}
        )
    assert refused.value.render() == {"token": megaphone.BAD_TOKEN}
    # Only the plugin's own fields reach it (a robot's secret typed in the shared form does not).
    binding = chats.validate_binding(
        "megaphone",
        {"webhook": f"https://megaphone.example/hook/{KEY}", "token": f" {TOKEN} ", "secret": "x"},
    )
    assert binding.credentials == {
        "webhook": f"https://megaphone.example/hook/{KEY}",
        "token": TOKEN,
    }
    assert KEY not in binding.chat_id and TOKEN not in repr(binding)


def post(server: Serve, path: str, form: dict[str, str]) -> tuple[int, str]:
    """A form posted as the browser does; the status and the page it ends on."""
    data = urllib.parse.urlencode(form).encode()
    try:
        with server.browser.open(server.url + path, data=data, timeout=30) as r:
            return r.status, r.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def test_bound_validated_sent_to_and_shown_through_serve(  # type: ignore[no-untyped-def]
    installed, serve, session, engine, settings, grid, topic, people, make_user
) -> None:
    admin = make_user(Role.ADMIN)
    with FakeMegaphone({KEY: TOKEN}) as fake:
        server = serve(DALABA_ALLOW_LOCAL_WEBHOOKS="1", PYTHONPATH=str(installed))
        server.login(admin.username)
        page = server.page("/chats")
        # Its label in the platform list, its own field in the bind form.
        assert '<option value="megaphone"' in page and ">扩音站</option>" in page
        assert 'name="webhook"' in page and 'name="token" id="robot-token" type="password"' in page

        form = {"platform": "megaphone", "area_id": str(grid["v1"].id), "title": "石桥扩音站"}
        # A wrong address and token are refused in the platform's own words, with its hint.
        status, refused = post(
            server,
            "/chats/robots",
            {
                **form,
                "csrf_token": csrf(page),
                "webhook": "https://megaphone.example/x",
                "token": "short",
            },
        )
        assert status == 400
        assert megaphone.BAD_ADDRESS in refused and "扩音站：在扩音站后台" in refused
        assert megaphone.BAD_TOKEN in refused
        assert session.scalars(select(ChatGroup)).first() is None

        status, bound = post(
            server,
            "/chats/robots",
            {
                **form,
                "csrf_token": csrf(refused),
                "webhook": f"{fake.url}/hook/{KEY}",
                "token": TOKEN,
            },
        )
        assert status == 200 and "已绑定机器人“石桥扩音站”" in bound
        assert TOKEN not in bound and KEY not in bound  # stored, never shown again
        session.rollback()  # end the test's read, to see the server's write
        chat = session.scalars(select(ChatGroup)).one()
        assert chat.platform == "megaphone"
        assert chat.credentials == {"webhook": f"{fake.url}/hook/{KEY}", "token": TOKEN}
        audit = [a.detail for a in session.scalars(select(AuditLog))]
        assert TOKEN not in json.dumps(audit, ensure_ascii=False, default=str)
        # Shown on the Chats page under its label, with the test button robots have.
        row = bound[bound.index(f'data-chat="{chat.id}"') :].split("</tr>", 1)[0]
        assert ">扩音站</td>" in row and "石桥扩音站" in row and 'data-testid="test-robot"' in row

        # Sent to: an approved notice reaches it through the server's own scheduler.
        approve(server, people, grid["v1"], topic, township_today(settings))
        # The fake took it only with the token: it reached the channel in the notice.
        received = wait_for("a Megaphone post", lambda: fake.received, server)
        assert received[0]["key"] == KEY and "清理村道垃圾" in received[0]["text"]
        assert TOKEN not in server.output()  # never logged


def test_the_cli_binds_it_with_its_own_token_option(  # type: ignore[no-untyped-def]
    installed, settings, session, grid
) -> None:
    """`dalaba chats bind` offers the platform's fields as options (--token), passes them to
    its plugin, and `dalaba chats test` posts with the stored token."""
    env = {
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_SECRET_KEY": "test-secret",
        "DALABA_TELEGRAM_TOKEN": None,
        "DALABA_DATABASE_URL": None,
        "DALABA_ROBOT_SECRET": None,
        "DALABA_ALLOW_LOCAL_WEBHOOKS": "1",
    }
    runner = CliRunner()
    assert "--token" in runner.invoke(chats_command, ["bind", "--help"], env=env).output
    with FakeMegaphone({KEY: TOKEN}) as fake:
        args = ["bind", "--platform", "megaphone", "--area", str(grid["v1"].id)]
        args += ["--webhook", f"{fake.url}/hook/{KEY}"]
        result = runner.invoke(chats_command, [*args, "--token", "short"], env=env)
        assert result.exit_code == 1 and megaphone.BAD_TOKEN in result.output
        result = runner.invoke(chats_command, [*args, "--token", TOKEN], env=env)
        assert result.exit_code == 0, result.output
        assert TOKEN not in result.output
        session.rollback()
        chat = session.scalars(select(ChatGroup)).one()
        assert chat.credentials["token"] == TOKEN
        result = runner.invoke(chats_command, ["test", str(chat.id)], env=env)
        assert result.exit_code == 0, result.output
        assert [r["title"] for r in fake.received] == [chats.TEST_TITLE]
        fake.keys[KEY] = "AnotherTokenNow1"  # the token was changed on the platform
        result = runner.invoke(chats_command, ["test", str(chat.id)], env=env)
        assert result.exit_code == 1 and megaphone.WRONG_TOKEN in result.output
