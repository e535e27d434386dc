"""Benchmark: many people at once on one township PC, while the scheduler works.

Seeds the demo township into a temporary data folder, starts ``dalaba serve`` (waitress,
scheduler and all; SQLite, or the PostgreSQL database given by ``--database-url``) on a
free loopback port, makes the scheduler busy (a lexicon
entry re-renders every clip; approvals queue renders, programs and chat deliveries to the
local outbox), and runs a mix of

- API reads (topics, the announcement list, one announcement) with one shared token,
- API writes: an editor creates, edits and submits; a reviewer approves,
- web form posts with a CSRF token (an editor drafting on the web),
- operator downloads of today's program through a private link,

first with one client (the baseline, same run), then with ``--clients`` at once.

    python bench/load.py [--clients 16] [--seconds 60] [--baseline-seconds 10]
                         [--database-url postgresql+psycopg://…]  (an empty database)

Targets (issue 11): no 5xx answer and no lost scheduler lease. The last line is

    RESULT requests=… errors_5xx=… p50_ms=… p99_ms=… lease_losses=… db=sqlite|postgresql
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')
LEASE_LOST = "scheduler lease lost"


@dataclass
class Township:
    """What the clients need from the seeded demo: tokens, ids and a download link."""

    editor_token: str
    reviewer_token: str
    links: dict[int, str]  # outlet id → private link token
    link: str  # the download the operators fetch: set once a program is built
    topic_id: int
    area_id: int
    announcement_ids: list[int]


def percentile_ms(seconds: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``seconds``, in milliseconds; NaN for none."""
    if not seconds:
        return float("nan")
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    by_kind: Counter[str] = field(default_factory=Counter)
    kind_latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, status: int, seconds: float, detail: str = "") -> None:
        with self.lock:
            self.latencies.append(seconds)
            self.statuses[status] += 1
            self.by_kind[kind] += 1
            self.kind_latencies.setdefault(kind, []).append(seconds)
            if status >= 500 or status == 0:
                self.failures.append(f"{kind} {status} {detail}"[:300])

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors_5xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 or code == 0)

    def percentile(self, q: float) -> float:
        return percentile_ms(self.latencies, q)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dalaba(*args: str, env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from cms.cli import main; main()", *args],
        env=env,
        text=True,
        capture_output=True,
        check=True,
        **kwargs,
    )


def seed(data_dir: Path, env: dict[str, str], database_url: str) -> Township:
    """The demo township, plus API tokens and an operator link made with the services."""
    dalaba("demo", "--seed-only", "--data", str(data_dir), env=env)
    from sqlalchemy import select

    from cms.db import make_engine, make_session_factory, transaction
    from cms.models import Announcement, Area, AreaKind, Outlet, Topic, User
    from cms.services import operators, users

    engine = make_engine(database_url, data_dir=data_dir)
    try:
        with transaction(make_session_factory(engine)) as session:

            def user(name: str) -> User:
                return session.scalars(select(User).where(User.username == name)).one()

            editor_token = users.issue_api_token(session, None, user("wangli"), "load")
            reviewer_token = users.issue_api_token(session, None, user("lishuji"), "load")
            links = {
                outlet.id: operators.issue_outlet_token(session, None, outlet)
                for outlet in session.scalars(select(Outlet))
            }
            assert links, "the demo has no outlet"
            topic_id = session.scalars(select(Topic.id).order_by(Topic.id)).first()
            area_id = session.scalars(
                select(Area.id).where(Area.kind == AreaKind.VILLAGE).order_by(Area.id)
            ).first()
            ids = list(session.scalars(select(Announcement.id)))
    finally:
        engine.dispose()
    assert topic_id is not None and area_id is not None
    first = next(iter(links.values()))
    return Township(
        editor_token, reviewer_token, links, f"/o/{first}/today.mp3", topic_id, area_id, ids
    )


def built_program_link(engine: Any, town: Township, timeout: float = 120) -> str:
    """The link of a program the scheduler has built (it builds today's at start-up)."""
    from sqlalchemy import or_, select
    from sqlalchemy.orm import Session

    from cms.models import Area, JobState, Outlet, Program

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with Session(engine) as session:
            # An outlet the load's own approvals do not target, so that its program is not
            # rebuilt (and briefly unavailable) after every approval.
            program = session.scalars(
                select(Program)
                .join(Outlet, Program.outlet_id == Outlet.id)
                .join(Area, Outlet.area_id == Area.id)
                .where(
                    Program.state == JobState.DONE,
                    Program.path.is_not(None),
                    Area.id != town.area_id,
                    or_(Area.parent_id.is_(None), Area.parent_id != town.area_id),
                )
                .order_by(Program.day.desc(), Program.id)
            ).first()
            if program is not None:
                token = town.links[program.outlet_id]
                return f"/o/{token}/{program.day.isoformat()}/{program.slot.at:%H%M}.mp3"
        time.sleep(0.5)
    raise RuntimeError(f"no program was built within {timeout} s")


class Client:
    """One person: a keep-alive connection, a session cookie for the web forms."""

    def __init__(self, port: int, town: Township, stats: Stats, rng: random.Random) -> None:
        self.port, self.town, self.stats, self.rng = port, town, stats, rng
        self.conn: http.client.HTTPConnection | None = None
        self.cookie = ""
        self.csrf = ""
        self.drafts: list[int] = []

    # -- plumbing ---------------------------------------------------------------------

    def request(
        self,
        kind: str,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        headers = dict(headers or {})
        if self.cookie and not path.startswith(("/api/", "/o/")):
            headers["Cookie"] = self.cookie
        started = time.perf_counter()
        status, data = 0, b""
        for attempt in range(2):  # a keep-alive connection the server closed: reconnect once
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                status = response.status
                for name, value in response.getheaders():
                    if name.lower() == "set-cookie" and value.startswith("session="):
                        self.cookie = value.split(";", 1)[0]
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                break
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 1:
                    self.stats.add(kind, 0, time.perf_counter() - started, repr(exc))
                    return 0, b""
        detail = data[:200].decode("utf-8", "replace") if status >= 500 else ""
        self.stats.add(kind, status, time.perf_counter() - started, f"{method} {path} {detail}")
        return status, data

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def api(self, kind: str, method: str, path: str, token: str, payload: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        body = None
        if payload is not None:
            body = json.dumps(payload).encode()
            headers["Content-Type"] = "application/json"
        status, data = self.request(kind, method, "/api/v1" + path, body, headers)
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, None

    def form(self, kind: str, path: str, fields: dict[str, Any]) -> int:
        status, page = self.request(kind, "GET", path)
        match = CSRF.search(page.decode("utf-8", "replace"))
        if status != 200 or match is None:
            return status
        self.csrf = match.group(1)
        pairs = [(k, x) for k, v in fields.items() for x in (v if isinstance(v, list) else [v])]
        pairs.append(("csrf_token", self.csrf))
        status, _ = self.request(
            kind,
            "POST",
            path,
            urlencode(pairs).encode(),
            {
                "Content-Type": "application/x-www-form-urlencoded",
                "Referer": f"http://127.0.0.1:{self.port}{path}",
            },
        )
        return status

    # -- what people do ---------------------------------------------------------------

    def content(self, title: str) -> dict[str, Any]:
        today = date.today()
        return {
            "title": title,
            "body": "各位村民：本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加。咨询电话 0871-65123456。",
            "topic_id": self.town.topic_id,
            "priority": "normal",
            "area_ids": [self.town.area_id],
            "start_date": today.isoformat(),
            "end_date": (today + timedelta(days=3)).isoformat(),
            "repeats": 2,
            "chat_post_time": "09:00",
            "voice": "zh-CN-XiaoxiaoNeural",
            "rate": 0,
        }

    def login(self) -> None:
        self.form("login", "/login", {"username": "wangli", "password": "dalaba-demo"})

    def api_read(self) -> None:
        token = self.town.editor_token
        choice = self.rng.random()
        if choice < 0.4:
            self.api("api_read", "GET", "/topics", token)
        elif choice < 0.7:
            self.api("api_read", "GET", "/announcements?per_page=20", token)
        else:
            ids = self.town.announcement_ids + self.drafts
            self.api("api_read", "GET", f"/announcements/{self.rng.choice(ids)}", token)

    def api_write(self) -> None:
        editor, reviewer = self.town.editor_token, self.town.reviewer_token
        body = {
            **self.content(f"压力测试通知 {secrets.token_hex(3)}"),
            "channels": ["loudspeaker", "chats"],
        }
        status, created = self.api("api_write", "POST", "/announcements", editor, body)
        if status != 201 or not created:
            return
        path = f"/announcements/{created['id']}"
        self.drafts.append(created["id"])
        self.api("api_write", "PATCH", path, editor, {"title": body["title"] + "（修改）"})
        self.api("api_write", "POST", f"{path}/submit", editor)
        self.api("api_write", "POST", f"{path}/approve", reviewer, {"comment": "同意"})

    def form_post(self) -> None:
        if not self.cookie:
            self.login()
        fields = {
            **self.content(f"网页草稿 {secrets.token_hex(3)}"),
            "to_loudspeaker": "y",
            "to_chats": "y",
        }
        self.form("form_post", "/announcements/new", fields)

    def download(self) -> None:
        self.request("download", "GET", self.town.link)

    def run(self, deadline: float) -> None:
        actions = [
            (0.40, self.api_read),
            (0.15, self.api_write),
            (0.15, self.form_post),
            (0.30, self.download),
        ]
        while time.monotonic() < deadline:
            pick, total = self.rng.random(), 0.0
            for weight, action in actions:
                total += weight
                if pick < total:
                    action()
                    break
        self.close()


def run_clients(port: int, town: Township, clients: int, seconds: float, seed_: int) -> Stats:
    stats = Stats()
    deadline = time.monotonic() + seconds
    threads = [
        threading.Thread(
            target=Client(port, town, stats, random.Random(seed_ + i)).run, args=(deadline,)
        )
        for i in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)
    return stats


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process we started: SIGTERM, and SIGKILL if it has not ended within 30 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dalaba serve exited early with code {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/login")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"dalaba serve not ready after {timeout} s")


@dataclass
class Outcome:
    baseline: Stats
    load: Stats
    lease_losses: int
    holders: set[str]
    log_tail: str
    slow_writes: list[tuple[str, int, float]] = field(default_factory=list)


SLOW_WRITE = re.compile(r"write lock held (\d+) ms \(after waiting \d+ ms\) by (.+)$", re.M)


def slow_writes(log: str) -> list[tuple[str, int, float]]:
    """(what, how often, longest ms) of the write transactions that held SQLite's writer lock
    long enough for ``dalaba serve`` to log them (cms.db.SLOW_WRITE_MS), the longest first."""
    seen: dict[str, list[float]] = {}
    for held, label in SLOW_WRITE.findall(log):
        seen.setdefault(label.strip(), []).append(float(held))
    return sorted(((k, len(v), max(v)) for k, v in seen.items()), key=lambda r: -r[2])


def run(
    clients: int,
    seconds: float,
    baseline_seconds: float,
    keep: Path | None = None,
    database_url: str | None = None,
) -> Outcome:
    """Seed, serve, load; returns both phases and the scheduler's lease history.

    ``database_url`` is an empty database to use (PostgreSQL); by default SQLite in the
    temporary data folder.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="dalaba-load-")) if keep is None else keep
    database_url = database_url or f"sqlite:///{data_dir / 'dalaba.db'}"
    env = {
        **os.environ,
        "DALABA_DATA_DIR": str(data_dir),
        "DALABA_SECRET_KEY": secrets.token_hex(32),
        "DALABA_TTS_ENGINE": "offline",
        # Busy on purpose: ticks every half second and a short lease, renewed often.
        "DALABA_SCHEDULER_TICK": "0.5",
        "DALABA_SCHEDULER_LEASE": "6",
        "PYTHONPATH": str(ROOT),
        "DALABA_DATABASE_URL": database_url,
    }
    town = seed(data_dir, env, database_url)
    port = free_port()
    log_path = data_dir / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from cms.cli import main; main()",
                "serve",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_ready(port, proc)
            from cms import lease
            from cms.db import make_engine

            engine = make_engine(database_url, data_dir=data_dir)
            holders: set[str] = set()
            try:
                # Make the scheduler busy: a lexicon entry re-renders every clip that uses it.
                admin = Client(port, town, Stats(), random.Random(0))
                admin.form("setup", "/login", {"username": "admin", "password": "dalaba-demo"})
                admin.form(
                    "setup", "/schedule/lexicon", {"written": "村委会", "spoken": "村民委员会"}
                )
                admin.close()
                town.link = built_program_link(engine, town)
                baseline = run_clients(port, town, 1, baseline_seconds, 1000)
                holders.add(lease.read(engine).holder or "")
                load = run_clients(port, town, clients, seconds, 2000)
                holders.add(lease.read(engine).holder or "")
            finally:
                engine.dispose()
        finally:
            stop(proc)
    text = log_path.read_text("utf-8", "replace")
    if keep is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    return Outcome(baseline, load, text.count(LEASE_LOST), holders, text[-3000:], slow_writes(text))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--baseline-seconds", type=float, default=10)
    parser.add_argument(
        "--database-url",
        help="an empty PostgreSQL database (postgresql+psycopg://…); default: SQLite",
    )
    args = parser.parse_args(argv)
    outcome = run(args.clients, args.seconds, args.baseline_seconds, database_url=args.database_url)
    base, load = outcome.baseline, outcome.load
    print(f"{'':24}{'1 client (baseline)':>22}{f'{args.clients} clients':>16}")
    print(f"{'requests':24}{base.requests:>22}{load.requests:>16}")
    print(
        f"{'requests/s':24}{base.requests / args.baseline_seconds:>22.1f}{load.requests / args.seconds:>16.1f}"
    )
    print(f"{'p50 ms':24}{base.percentile(0.5):>22.1f}{load.percentile(0.5):>16.1f}")
    print(f"{'p99 ms':24}{base.percentile(0.99):>22.1f}{load.percentile(0.99):>16.1f}")
    print(f"{'5xx or no answer':24}{base.errors_5xx:>22}{load.errors_5xx:>16}")
    print(f"mix under load: {dict(load.by_kind)}; statuses: {dict(sorted(load.statuses.items()))}")
    print(
        "p50/p99 ms by kind under load: "
        + ", ".join(
            f"{kind} {percentile_ms(times, 0.5):.0f}/{percentile_ms(times, 0.99):.0f}"
            for kind, times in sorted(load.kind_latencies.items())
        )
    )
    print(
        f"scheduler lease holders seen: {len(outcome.holders)}; 'lease lost' in the log: {outcome.lease_losses}"
    )
    if outcome.slow_writes:
        print("write transactions that held the writer lock ≥ 250 ms (count, longest):")
        for label, count, longest in outcome.slow_writes[:8]:
            print(f"  {label}: {count}×, {longest:.0f} ms")
    for failure in (base.failures + load.failures)[:10]:
        print("  failed:", failure)
    print(
        f"RESULT requests={load.requests} errors_5xx={load.errors_5xx} "
        f"p50_ms={load.percentile(0.5):.0f} p99_ms={load.percentile(0.99):.0f} "
        f"lease_losses={outcome.lease_losses} "
        f"db={(args.database_url or 'sqlite').split(':', 1)[0].split('+', 1)[0]}"
    )
    return 0 if load.errors_5xx == 0 and outcome.lease_losses == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
