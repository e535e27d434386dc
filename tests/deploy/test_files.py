"""deploy/: the systemd units, the example settings and the nginx site agree with each other and
with dalaba, and nginx really serves the web processes and the audio (X-Accel-Redirect).

``systemd-analyze verify`` runs where systemd is installed (else the units are checked by
parsing only); nginx is needed for the nginx tests: they skip without it, except under CI.
"""

from __future__ import annotations

import configparser
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest
from sqlalchemy import select

from cms.cli import serve
from cms.db import make_session_factory
from cms.models import JobState, Program
from cms.services import operators
from cms.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
SITE = DEPLOY / "nginx" / "dalaba.conf"
INSTALLED = "/opt/dalaba/venv/bin/dalaba"


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=True, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text(encoding="utf-8"))
    return parser


def _env() -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "dalaba.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    return env


def _site() -> str:
    return SITE.read_text(encoding="utf-8")


def _web_ports() -> list[int]:
    """The web processes the nginx upstream sends to."""
    block = re.search(r"upstream dalaba_web \{(.*?)\}", _site(), re.S)
    assert block is not None
    servers = re.findall(r"^\s*server\s+([\d.]+):(\d+);", block.group(1), re.M)
    assert servers and all(host == "127.0.0.1" for host, _ in servers)
    return [int(port) for _, port in servers]


def test_units_run_dalaba_hardened_with_the_shared_settings() -> None:
    env = _env()
    for name, scheduler in (("dalaba-web@.service", False), ("dalaba-scheduler.service", True)):
        service = _unit(name)["Service"]
        assert service["User"] == "dalaba" and service["Group"] == "dalaba"
        assert service["EnvironmentFile"] == "/etc/dalaba/dalaba.env"
        assert service["UMask"] == "0027"
        assert service["ProtectSystem"] == "strict"
        assert service["ReadWritePaths"] == env["DALABA_DATA_DIR"]
        for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices"):
            assert service[key] == "yes", key
        assert service["KillSignal"] == "SIGTERM"  # what `dalaba serve` stops cleanly on
        program, *args = service["ExecStart"].replace("%i", "8081").split()
        assert program == INSTALLED and args[0] == "serve"
        # The arguments are the real command's: click parses them as `dalaba serve` would.
        params = serve.make_context("serve", args[1:]).params
        assert params["host"] == "127.0.0.1"
        assert params["no_scheduler"] is not scheduler
        if not scheduler:
            assert "%i" in service["ExecStart"]  # one instance per port
    target = _unit("dalaba.target")
    wanted = target["Unit"]["Wants"].split()
    assert "dalaba-scheduler.service" in wanted
    # The target starts exactly the web processes nginx sends to, and the scheduler's own
    # port is not among them.
    assert sorted(int(w.split("@")[1].removesuffix(".service")) for w in wanted if "@" in w) == (
        sorted(_web_ports())
    )
    scheduler_port = serve.make_context(
        "serve", _unit("dalaba-scheduler.service")["Service"]["ExecStart"].split()[2:]
    ).params["port"]
    assert scheduler_port not in _web_ports()


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (the units are still parsed above)")
    dalaba = Path(sys.executable).parent / "dalaba"
    assert dalaba.exists()
    for unit in UNITS.iterdir():
        # Where the package is installed on this machine instead of /opt/dalaba.
        text = unit.read_text(encoding="utf-8").replace(INSTALLED, str(dalaba))
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
    names = ["dalaba-web@8081.service", "dalaba-scheduler.service", "dalaba.target"]
    done = subprocess.run(
        [analyze, "verify", *(str(tmp_path / n) for n in names)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # Unknown keys or sections are only warnings to systemd: any warning is a mistake here.
    assert not [line for line in done.stderr.splitlines() if "dalaba" in line], done.stderr


def test_the_example_settings_hold_no_secret_and_match_the_nginx_site() -> None:
    env = _env()
    assert env["DALABA_SECRET_KEY"] == ""
    assert env["DALABA_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert ":PASSWORD@" in env["DALABA_DATABASE_URL"]
    # dalaba accepts every value once the secret is filled in.
    settings = Settings.from_env({**env, "DALABA_SECRET_KEY": "x" * 64})
    site = _site()
    # The internal location is DALABA_ACCEL_REDIRECT and maps to the data folder.
    internal = re.search(r"location (\S+) \{[^}]*?\binternal;[^}]*?\balias (\S+);", site)
    assert internal is not None
    assert internal.group(1) == settings.accel_redirect
    assert internal.group(2) == f"{settings.data_dir}/"
    # nginx connects from 127.0.0.1 and passes X-Forwarded-For: exactly what is trusted.
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in site
    networks = settings.proxies
    assert isinstance(networks, tuple)
    assert any(ip_address("127.0.0.1") in n for n in networks)
    assert not any(ip_address("10.0.0.1") in n for n in networks)


def _nginx() -> str:
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide nginx")
        pytest.skip("nginx is not installed")
    return nginx


def _nginx_conf(tmp_path: Path, site: Path) -> Path:
    """A minimal nginx.conf that includes ``site``, with every path under ``tmp_path``."""
    conf = tmp_path / "nginx.conf"
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    conf.write_text(
        f"""daemon off;
pid {tmp_path / "nginx.pid"};
error_log {tmp_path / "error.log"};
{"user root;" if os.geteuid() == 0 else ""}
events {{ worker_connections 64; }}
http {{
    access_log {tmp_path / "access.log"};
{temp}
    include {site};
}}
""",
        encoding="utf-8",
    )
    return conf


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    nginx = _nginx()
    conf = _nginx_conf(tmp_path, SITE)
    done = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(log.read_text(errors="replace")[-3000:])


@pytest.fixture
def processes() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(
        args: list[str], log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_nginx_in_front_of_two_web_processes_sends_the_audio(  # type: ignore[no-untyped-def]
    settings, engine, session, grid, make_outlet, make_announcement, scheduler, tmp_path, processes
):
    """The site as shipped (ports and folders moved under the test's): pages from both web
    processes, an operator's program sent by nginx after dalaba checked the link."""
    nginx = _nginx()
    outlet = make_outlet(grid["v1"], "07:30 10")
    make_announcement("approved", title="秋收防火", body="各位村民：秋收期间严禁焚烧秸秆。")
    for _ in range(5):
        scheduler.run_once()
    with make_session_factory(engine)() as s:
        program = s.scalars(select(Program).where(Program.state == JobState.DONE)).first()
        assert program is not None
        link = f"{program.day.isoformat()}/{program.slot.at:%H%M}.mp3"
        audio = Path(program.path).read_bytes()
    token = operators.issue_outlet_token(session, None, outlet)
    session.commit()
    env = _env()
    settings = replace(settings, accel_redirect=env["DALABA_ACCEL_REDIRECT"])
    # The folder nginx reads must be reachable by its workers (the README's chgrp/chmod).
    for folder in [settings.data_dir, *settings.data_dir.parents]:
        if folder == Path("/"):
            break
        folder.chmod(folder.stat().st_mode | 0o055)
    ports = [_free_port() for _ in _web_ports()]
    front = _free_port()
    site = _site()
    for shipped, port in zip(_web_ports(), ports, strict=True):
        site = site.replace(f"127.0.0.1:{shipped};", f"127.0.0.1:{port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{front};")
    site = site.replace(f"alias {env['DALABA_DATA_DIR']}/;", f"alias {settings.data_dir}/;")
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    conf = _nginx_conf(tmp_path, tmp_path / "site.conf")
    serve_env = {
        **os.environ,
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_DATABASE_URL": settings.database_url,
        "DALABA_SECRET_KEY": "nginx-test-secret",
        "DALABA_TTS_ENGINE": "offline",
        "DALABA_TRUSTED_PROXIES": env["DALABA_TRUSTED_PROXIES"],
        "DALABA_ACCEL_REDIRECT": env["DALABA_ACCEL_REDIRECT"],
    }
    dalaba = [sys.executable, "-m", "cms.cli", "serve", "--no-scheduler", "--host", "127.0.0.1"]
    for number, port in enumerate(ports):
        log = tmp_path / f"web{number}.log"
        _wait(port, processes([*dalaba, "--port", str(port)], log, serve_env), log)
    log = tmp_path / "nginx.out"
    _wait(
        front,
        processes(
            [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)], log
        ),
        log,
    )

    for _ in ports:  # round robin: each web process answers once
        status, headers, body = _get(front, "/login")
        assert status == 200 and "登录".encode() in body
        assert headers["server"].startswith("nginx")
    status, headers, body = _get(front, f"/o/{token}/{link}")
    assert status == 200, (status, body[:300], (tmp_path / "error.log").read_text())
    assert body == audio
    assert headers["content-type"] == "audio/mpeg"
    assert "filename*=UTF-8''" in headers["content-disposition"]  # dalaba's name, nginx's bytes
    assert "x-accel-redirect" not in headers
    # nginx sent the bytes: its validator (mtime-size), not dalaba's (inode-mtime-size).
    st = Path(program.path).stat()
    assert headers["etag"] == f'"{int(st.st_mtime):x}-{st.st_size:x}"'
    # nginx itself answers ranges on the file.
    status, headers, body = _get(front, f"/o/{token}/{link}", {"Range": "bytes=0-99"})
    assert status == 206 and body == audio[:100]
    assert headers["content-range"] == f"bytes 0-99/{len(audio)}"
    # The internal location is not reachable from outside, nor a wrong link.
    relative = Path(program.path).relative_to(settings.data_dir).as_posix()
    assert _get(front, f"{env['DALABA_ACCEL_REDIRECT']}{relative}")[0] == 404
    assert _get(front, f"/o/{'x' * 43}/{link}")[0] == 404
    # Both web processes serve web only; nginx logged what it proxied, not private links.
    logs = [(tmp_path / f"web{n}.log").read_text(errors="replace") for n in range(len(ports))]
    assert all("调度器已关闭（--no-scheduler" in text for text in logs)
    access = (tmp_path / "access.log").read_text()
    assert access.count("GET /login") == len(ports)
    assert f"/o/{token}" not in access  # private links stay out of the access log


class _Browser:
    """One visitor at one address (a loopback source address of its own), with its cookie."""

    def __init__(self, port: int, address: str) -> None:
        self.port, self.address, self.cookie = port, address, ""

    def request(
        self, method: str, path: str, body: str | None = None
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(
            "127.0.0.1", self.port, timeout=20, source_address=(self.address, 0)
        )
        headers = {"Cookie": self.cookie} if self.cookie else {}
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            got = {k.lower(): v for k, v in r.getheaders()}
            cookie = got.get("set-cookie", "")
            if cookie.startswith("session="):
                self.cookie = cookie.split(";", 1)[0]
            return r.status, got, r.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def log_in(self, username: str, password: str) -> int:
        from urllib.parse import urlencode

        page = self.request("GET", "/login")[2]
        match = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert match is not None
        form = {"csrf_token": match.group(1), "username": username, "password": password}
        return self.request("POST", "/login", urlencode(form))[0]


@pytest.mark.slow
def test_behind_nginx_throttling_sees_each_clients_own_address(  # type: ignore[no-untyped-def]
    settings, session, make_user, tmp_path, processes
):
    """`dalaba serve` behind the shipped nginx site with the shipped DALABA_TRUSTED_PROXIES:
    20 failed logins from 20 other addresses do not stop the officer at her own; one address
    that keeps guessing is slowed down alone."""
    from cms.models import LoginFailure
    from tests.conftest import PASSWORD

    nginx = _nginx()
    officer = make_user(username="officer")
    session.commit()
    env = _env()
    port, front = _free_port(), _free_port()
    site = _site()
    for shipped in _web_ports():
        site = site.replace(f"server 127.0.0.1:{shipped};", "")
    site = site.replace("keepalive 16;", f"server 127.0.0.1:{port};\n    keepalive 16;")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{front};")
    (tmp_path / "site.conf").write_text(site, encoding="utf-8")
    conf = _nginx_conf(tmp_path, tmp_path / "site.conf")
    serve_env = {
        **os.environ,
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_DATABASE_URL": settings.database_url,
        "DALABA_SECRET_KEY": "nginx-test-secret",
        "DALABA_TTS_ENGINE": "offline",
        "DALABA_TRUSTED_PROXIES": env["DALABA_TRUSTED_PROXIES"],
    }
    dalaba = [sys.executable, "-m", "cms.cli", "serve", "--no-scheduler", "--host", "127.0.0.1"]
    log = tmp_path / "web.log"
    _wait(port, processes([*dalaba, "--port", str(port)], log, serve_env), log)
    log = tmp_path / "nginx.out"
    nginx_args = [nginx, "-p", str(tmp_path), "-e", str(tmp_path / "error.log"), "-c", str(conf)]
    _wait(front, processes(nginx_args, log), log)

    for n in range(20):
        assert _Browser(front, f"127.0.0.{10 + n}").log_in("officer", "guess") == 401
    assert _Browser(front, "127.0.0.77").log_in("officer", PASSWORD) == 302
    session.rollback()
    seen = set(session.scalars(select(LoginFailure.remote_addr)))
    assert seen == {f"127.0.0.{10 + n}" for n in range(20)}  # each client's own address
    # One address that keeps guessing (any names) is slowed down, and only it.
    guesser = _Browser(front, "127.0.0.99")
    codes = [guesser.log_in(f"guess{n}", "guess") for n in range(21)]
    assert codes[:20] == [401] * 20 and codes[20] == 429
    assert _Browser(front, "127.0.0.78").log_in("officer", PASSWORD) == 302
    assert session.get(type(officer), officer.id).login_locked_until is None
