"""The `dalaba` command as users run it: real processes, real databases."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from cms.cli_common import SCHEMA_EXIT_CODE
from cms.db import make_engine, make_session_factory
from cms.migrate import upgrade
from cms.models import Announcement, Status, User


def run(
    args: list[str], tmp_path: Path, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DALABA_")}
    environ.update({"DALABA_DATA_DIR": str(tmp_path / "data"), **env})
    return subprocess.run(
        [sys.executable, "-m", "cms.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=environ,
        timeout=120,
    )


def _session(data_dir: Path):  # type: ignore[no-untyped-def]
    return make_session_factory(make_engine(f"sqlite:///{data_dir / 'dalaba.db'}"))()


def test_demo_seed_only_creates_a_realistic_township(tmp_path):
    result = run(["demo", "--seed-only", "--data", str(tmp_path / "demo")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "wangli" in result.stdout and "dalaba-demo" in result.stdout
    with _session(tmp_path / "demo") as session:
        statuses = dict(
            session.execute(
                select(Announcement.status, func.count()).group_by(Announcement.status)
            ).all()
        )
        assert sum(statuses.values()) >= 12
        assert {Status.DRAFT, Status.IN_REVIEW, Status.APPROVED, Status.WITHDRAWN} <= set(statuses)
        assert {u.role.value for u in session.scalars(select(User))} == {
            "admin",
            "editor",
            "reviewer",
            "operator",
        }
    again = run(["demo", "--seed-only", "--data", str(tmp_path / "demo")], tmp_path)
    assert again.returncode == 0 and "已有的演示数据" in again.stdout


def test_user_add_reads_password_from_stdin_and_validates(tmp_path):
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    ok = run(
        ["user", "add", "wangli", "--role", "editor"],
        tmp_path,
        stdin="a-long-password\n",
        DALABA_SECRET_KEY="k",
    )
    assert ok.returncode == 0, ok.stderr
    dup = run(
        ["user", "add", "WANGLI", "--role", "editor"],
        tmp_path,
        stdin="a-long-password\n",
        DALABA_SECRET_KEY="k",
    )
    assert dup.returncode != 0 and "已被使用" in dup.stderr
    short = run(
        ["user", "add", "bob", "--role", "reviewer"], tmp_path, stdin="123\n", DALABA_SECRET_KEY="k"
    )
    assert short.returncode != 0 and "密码至少" in short.stderr
    bad_role = run(["user", "add", "bob", "--role", "king"], tmp_path, stdin="a-long-password\n")
    assert bad_role.returncode != 0


def test_api_token_prints_a_working_token(tmp_path):
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    run(["user", "add", "api", "--role", "editor"], tmp_path, stdin="a-long-password\n")
    result = run(["api-token", "api"], tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("dlb_") and len(token) > 40
    from cms.services.users import user_for_token

    with _session(tmp_path / "data") as session:
        assert user_for_token(session, token).username == "api"
    missing = run(["api-token", "nobody"], tmp_path)
    assert missing.returncode != 0 and "不存在" in missing.stderr


def test_db_upgrade(tmp_path):
    result = run(["db", "upgrade"], tmp_path)
    assert result.returncode == 0 and "最新版本" in result.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["programs"],
        ["build-day"],
        ["user", "add", "wangli", "--role", "editor"],
        ["api-token", "wangli"],
        ["chats", "list"],
        ["serve", "--port", "1"],
    ],
)
def test_only_db_upgrade_migrates(tmp_path, args):
    """Every other command refuses a database without the schema: one line, exit 78."""
    result = run(args, tmp_path, stdin="a-long-password\n", DALABA_SECRET_KEY="k")
    assert result.returncode == SCHEMA_EXIT_CODE, result.stderr
    assert "dalaba db upgrade" in result.stderr and "Traceback" not in result.stderr
    with _session(tmp_path / "data") as session:
        assert not inspect(session.get_bind()).get_table_names()


def test_a_schema_behind_this_version_is_refused_until_db_upgrade(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'dalaba.db'}")
    upgrade(engine, "0001")
    engine.dispose()
    behind = run(["status"], tmp_path)
    assert behind.returncode == SCHEMA_EXIT_CODE
    assert "需要升级" in behind.stderr and "0001" in behind.stderr
    assert "dalaba db upgrade" in behind.stderr
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    status = run(["status"], tmp_path)
    assert status.returncode == 0 and "调度器：从未运行" in status.stdout


def test_a_schema_newer_than_this_version_is_refused(tmp_path):
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'dalaba.db'}")
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    result = run(["status"], tmp_path)
    assert result.returncode == SCHEMA_EXIT_CODE and "9999_future" in result.stderr
    assert "比这个版本的大喇叭新" in result.stderr


def test_serve_refuses_without_secret_key(tmp_path):
    result = run(["serve", "--port", "1"], tmp_path)
    assert result.returncode != 0 and "DALABA_SECRET_KEY" in result.stderr


def test_bad_config_value_is_a_clear_error(tmp_path):
    result = run(["serve"], tmp_path, DALABA_SECRET_KEY="k", DALABA_TIMEZONE="Mars/Olympus")
    assert result.returncode != 0 and "DALABA_TIMEZONE" in result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_demo_serves_and_an_officer_can_log_in(tmp_path):
    port = _free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DALABA_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cms.cli",
            "demo",
            "--port",
            str(port),
            "--data",
            str(tmp_path / "demo"),
        ],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
        deadline = time.monotonic() + 60
        while True:
            try:
                page = opener.open(f"http://127.0.0.1:{port}/login", timeout=5).read().decode()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "demo did not start"
                time.sleep(0.3)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        data = f"csrf_token={token}&username=wangli&password=dalaba-demo".encode()
        home = opener.open(f"http://127.0.0.1:{port}/login", data=data, timeout=10).read().decode()
        assert "今日播出" in home and "绿美乡村" in home
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_user_add_puts_the_user_in_an_area(tmp_path):
    from cms.models import AreaKind, User
    from cms.services import areas

    assert run(["db", "upgrade"], tmp_path).returncode == 0
    with _session(tmp_path / "data") as session:
        county = areas.create_area(session, None, name="云县", kind=AreaKind.COUNTY, parent_id=None)
        town = areas.create_area(
            session, None, name="后箐乡", kind=AreaKind.TOWNSHIP, parent_id=county.id
        )
        session.commit()
        town_id = town.id
    ok = run(
        ["user", "add", "hq", "--role", "editor", "--area", "云县/后箐乡"],
        tmp_path,
        stdin="a-long-password\n",
    )
    assert ok.returncode == 0, ok.stderr
    everyone = run(["user", "add", "it", "--role", "admin"], tmp_path, stdin="a-long-password\n")
    assert everyone.returncode == 0, everyone.stderr
    unknown = run(
        ["user", "add", "x1", "--role", "editor", "--area", "幸福镇"],
        tmp_path,
        stdin="a-long-password\n",
    )
    assert unknown.returncode != 0 and "不存在" in unknown.stderr
    with _session(tmp_path / "data") as session:
        placed = {u.username: u.area_id for u in session.scalars(select(User))}
    assert placed == {"hq": town_id, "it": None}
