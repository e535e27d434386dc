"""The wheel as a county installs it: built, installed into a fresh virtualenv, run on PostgreSQL.

The wheel is built from a copy of the source tree with exactly the setuptools release that
``[build-system]`` names as its floor (from PyPI or pip's cache; no build isolation, so the
build itself needs no network). ``deploy/install.sh`` then installs it the way the README says:
the dependencies from ``deploy/requirements.lock`` with their hashes checked, the wheel without
dependencies. From outside the source tree, the installed ``dalaba`` seeds the demo, upgrades a
PostgreSQL database and serves it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from http.cookiejar import CookieJar
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.pg import postgres_url, private_schema

ROOT = Path(__file__).resolve().parent.parent


def _copy_source(target: Path) -> None:
    """The checkout's files as git sees them (no virtualenvs, caches or earlier builds)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)


def _run(
    args: list[str | Path], cwd: Path, timeout: float = 900, stdin: str = "", **env: str
) -> str:
    environ = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DALABA_", "PYTHON", "VIRTUAL_ENV"))
    }
    environ.update(env)
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=environ,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


def _setuptools_floor() -> str:
    """``setuptools==77.0.*`` for ``requires = ["setuptools>=77"]``."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (req,) = (Requirement(r) for r in pyproject["build-system"]["requires"])
    (spec,) = (s for s in req.specifier if s.operator == ">=")
    return (
        f"setuptools=={spec.version}.*"
        if "." not in spec.version
        else f"setuptools=={spec.version}"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_wheel_installs_from_the_lock_and_serves_postgresql(tmp_path: Path) -> None:
    url = postgres_url()
    source = tmp_path / "source"
    _copy_source(source)

    # Build with the oldest setuptools that [build-system] allows.
    builder = tmp_path / "builder"
    _run([sys.executable, "-m", "venv", builder], tmp_path)
    _run([builder / "bin/pip", "install", "-q", _setuptools_floor(), "wheel"], tmp_path)
    _run(
        [
            builder / "bin/pip",
            "wheel",
            "-q",
            "--no-build-isolation",
            "--no-deps",
            "-w",
            "dist",
            ".",
        ],
        source,
    )
    (wheel,) = (source / "dist").glob("dalaba-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert any(re.fullmatch(r"dalaba-[^/]+\.dist-info/licenses/LICENSE", n) for n in names)
    for shipped in (
        "cms/templates/base.html",
        "cms/static/app.css",
        "cms/translations/en/LC_MESSAGES/messages.po",
        "bot/translations/en/LC_MESSAGES/messages.po",
        "robots/translations/en/LC_MESSAGES/messages.po",
        "wechat/translations/en/LC_MESSAGES/messages.po",
        "cms/migrations/env.py",
        "cms/migrations/script.py.mako",
        "wechat/data/cover.png",
    ):
        assert shipped in names, shipped
    assert any(n.startswith("cms/migrations/versions/0001_") for n in names)
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", "bench/"))]

    # Install as the README says: the lock with hashes checked, then the wheel alone.
    venv = tmp_path / "venv"
    _run(["bash", ROOT / "deploy/install.sh", venv, wheel], tmp_path, PYTHON=sys.executable)
    dalaba = venv / "bin/dalaba"
    where = _run([venv / "bin/python", "-c", "import cms; print(cms.__file__)"], tmp_path)
    assert where.startswith(str(venv)), where  # the installed copy, not the source tree

    seeded = _run([dalaba, "demo", "--seed-only", "--data", tmp_path / "demo"], tmp_path)
    assert "演示数据已创建" in seeded

    with private_schema(url) as schema_url:
        env = {
            "DALABA_DATABASE_URL": schema_url,
            "DALABA_DATA_DIR": str(tmp_path / "county"),
            "DALABA_SECRET_KEY": "wheel-test-secret",
        }
        upgraded = _run([dalaba, "db", "upgrade"], tmp_path, **env)
        assert "最新版本" in upgraded
        _run(
            [dalaba, "user", "add", "county", "--role", "admin"],
            tmp_path,
            stdin="county-admin-pass\n",
            **env,
        )
        port = _free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("DALABA_")}
        proc = subprocess.Popen(
            [dalaba, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=tmp_path,
            env={**environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
            deadline = time.monotonic() + 90
            while True:
                try:
                    page = opener.open(f"http://127.0.0.1:{port}/login", timeout=5).read()
                    break
                except OSError:
                    assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                    assert time.monotonic() < deadline, "dalaba serve did not start"
                    time.sleep(0.5)
            token = re.search(rb'name="csrf_token" value="([^"]+)"', page).group(1).decode()
            form = f"csrf_token={token}&username=county&password=county-admin-pass".encode()
            home = opener.open(f"http://127.0.0.1:{port}/login", data=form, timeout=30).read()
            assert "退出".encode() in home, home[:2000]
            css = opener.open(f"http://127.0.0.1:{port}/static/app.css", timeout=5)
            assert css.status == 200 and css.read()
            # In English, the plugins' words come from their own catalogues in the wheel.
            token = re.search(rb'name="csrf_token" value="([^"]+)"', home).group(1).decode()
            lang = f"csrf_token={token}&lang=en&next=/chats".encode()
            chats = opener.open(f"http://127.0.0.1:{port}/lang", data=lang, timeout=30).read()
            assert b">WeCom</option>" in chats and b"Webhook address" in chats, chats[:2000]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
