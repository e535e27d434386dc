"""Real `dalaba serve` processes: SIGKILL at several points of a day's work, and two at once."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cms.db import make_session_factory
from cms.models import (
    Clip,
    Delivery,
    DeliveryState,
    JobState,
    OutboxMessage,
    Program,
    SchedulerLease,
)
from cms.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHATS = 40
DELIVERIES = 3 * CHATS
PARTS = 2 * DELIVERIES
PROGRAMS = 2 * 2 * 2  # two outlets, two slots, today and tomorrow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `dalaba serve` process on the test's database."""

    def __init__(self, settings: Settings, log_dir: Path, name: str) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        env = {
            **os.environ,
            "DALABA_DATA_DIR": str(settings.data_dir),
            "DALABA_DATABASE_URL": settings.database_url,
            "DALABA_SECRET_KEY": "crash-test-secret",
            "DALABA_TTS_ENGINE": "offline",
            "DALABA_BUILD_TIME": "00:00",
            "DALABA_SCHEDULER_TICK": "0.3",
            "DALABA_SCHEDULER_LEASE": "3",
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("DALABA_TELEGRAM_TOKEN", None)
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cms.cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited:\n{self.output()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/login", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"server not ready:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=20)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[[Settings, str], Server]]:
    started: list[Server] = []

    def start(settings: Settings, name: str) -> Server:
        server = Server(settings, tmp_path, name)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


def _seed(settings, today, make_outlet, make_chat, make_announcement, grid) -> int:  # type: ignore[no-untyped-def]
    """Outlets with two future slots today, many chats and three announcements due now."""
    now_local = datetime.now(settings.tz)
    if now_local.hour >= 23:
        pytest.skip("too close to midnight in the township for same-day slots")
    first = (now_local + timedelta(minutes=40)).strftime("%H:%M")
    second = min(now_local + timedelta(minutes=50), now_local.replace(hour=23, minute=59))
    slots = f"{first} 10, {second:%H:%M} 10"
    make_outlet(grid["v1"], slots, name="石桥大喇叭")
    make_outlet(grid["v2"], slots, name="柳林大喇叭")
    for i in range(CHATS // 2):
        make_chat(grid["g1"], title=f"石桥{i}群")
        make_chat(grid["v2"], title=f"柳林{i}群")
    texts = ["今天下午三点清扫村道。", "明天上午九点开户长会。", "请各户做好垃圾分类。"]
    for i, body in enumerate(texts):
        make_announcement(
            "approved",
            title=f"通知{i + 1}",
            body=body,
            repeats=1,
            area_ids=[grid["town"].id],
            chat_post_time="00:00",
        )
    return len(texts)


def _snapshot(engine: Engine) -> dict[str, object]:
    with make_session_factory(engine)() as s:
        return {
            "clips": Counter(c.value for c in s.scalars(select(Clip.state))),
            "programs": Counter(p.value for p in s.scalars(select(Program.state))),
            "deliveries": Counter(d.value for d in s.scalars(select(Delivery.state))),
            "outbox": s.scalar(select(func.count()).select_from(OutboxMessage)),
        }


def _progress(snap: dict[str, object]) -> int:
    return snap["clips"].get("done", 0) + snap["programs"].get("done", 0) + snap["outbox"]  # type: ignore[union-attr,operator]


def _in_flight(snap: dict[str, object]) -> bool:
    return bool(
        snap["clips"].get("running")
        or snap["programs"].get("running")
        or snap["deliveries"].get("sending")  # type: ignore[union-attr]
    )


def _finished(snap: dict[str, object], n_programs: int, n_deliveries: int) -> bool:
    return (
        set(snap["clips"]) == {"done"}  # type: ignore[arg-type]
        and snap["programs"] == Counter({"done": n_programs})
        and snap["deliveries"] == Counter({"sent": n_deliveries})
    )


def _check_final(engine: Engine, n_anns: int) -> None:
    with make_session_factory(engine)() as s:
        _check_no_duplicates(s)
        programs = s.scalars(select(Program)).all()
        assert len(programs) == PROGRAMS
        from audio.mp3 import parse_frames

        for p in programs:
            assert p.state is JobState.DONE and not p.missed
            assert len(p.manifest["announcements"]) == n_anns
            frames = parse_frames(Path(p.path).read_bytes())
            assert abs(frames.duration - p.duration) < 0.05
            assert not list(Path(p.path).parent.glob("*.tmp*"))


def _check_no_duplicates(s: Session) -> None:
    deliveries = s.scalars(select(Delivery)).all()
    assert len(deliveries) == DELIVERIES
    per_delivery = Counter(m.delivery_id for m in s.scalars(select(OutboxMessage)))
    for d in deliveries:
        assert d.state is DeliveryState.SENT, (d.id, d.state, d.last_error)
        # Exactly one text and one voice note per delivery: nothing lost, nothing twice.
        assert per_delivery[d.id] == 2, (d.id, per_delivery[d.id])
        assert len(d.message_ids) == 2 and len(set(d.message_ids)) == 2
        kinds = [
            m.kind
            for m in s.scalars(
                select(OutboxMessage)
                .where(OutboxMessage.delivery_id == d.id)
                .order_by(OutboxMessage.id)
            )
        ]
        assert kinds == ["text", "voice"]


def test_sigkill_during_a_days_work_loses_and_duplicates_nothing(  # type: ignore[no-untyped-def]
    settings, engine, today, grid, make_outlet, make_chat, make_announcement, servers
):
    """Kills `dalaba serve` with SIGKILL at several points; each restart resumes from the rows."""
    n_anns = _seed(settings, today, make_outlet, make_chat, make_announcement, grid)
    # Kill after a few units of progress each time (a clip rendered, a program built, an
    # outbox row written), in a shuffled order of small steps, so the kills land during
    # rendering, building and sending alike; half of them as soon as a row is in flight.
    steps = [1, 2, 3, 5, 8, 13, 20, 30]
    random.Random(20261128).shuffle(steps)
    kills: list[str] = []
    for number, step in enumerate(steps):
        before = _progress(_snapshot(engine))
        server = servers(settings, f"run{number}")
        started = time.monotonic()
        hit = False
        while time.monotonic() - started < 90:
            if server.proc.poll() is not None:
                raise AssertionError(server.output()[-3000:])
            snap = _snapshot(engine)
            if _finished(snap, PROGRAMS, DELIVERIES):
                break
            delta = _progress(snap) - before
            if delta >= step or (number % 2 and delta >= 1 and _in_flight(snap)):
                hit = True
                break
            time.sleep(0.005)
        server.kill()
        after = _snapshot(engine)
        kills.append(
            f"kill {number + 1}: {'hit' if hit else 'missed'} in flight={_in_flight(after)} {after}"
        )
        # After each crash the invariant holds already: no delivery part recorded twice.
        with make_session_factory(engine)() as s:
            per_delivery = Counter(m.delivery_id for m in s.scalars(select(OutboxMessage)))
            assert all(n <= 2 for n in per_delivery.values()), per_delivery
    final = servers(settings, "final")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not _finished(_snapshot(engine), PROGRAMS, DELIVERIES):
        assert final.proc.poll() is None, final.output()[-3000:]
        time.sleep(0.3)
    snap = _snapshot(engine)
    assert _finished(snap, PROGRAMS, DELIVERIES), (snap, kills, final.output()[-3000:])
    final.stop()
    _check_final(engine, n_anns)
    print("\n".join(kills))
    assert sum(": hit " in k for k in kills) >= 6, kills


def test_two_serve_processes_one_scheduler(settings, engine, servers):  # type: ignore[no-untyped-def]
    """A second `dalaba serve` serves web only; it takes over when the first one dies."""
    first = servers(settings, "first")
    first.wait_ready()
    assert "调度器已在本进程启动" in first.output()
    second = servers(settings, "second")
    second.wait_ready()
    assert "调度器由其他进程持有，本进程只提供网页服务" in second.output()
    with make_session_factory(engine)() as s:
        lease = s.get(SchedulerLease, "scheduler")
        assert lease is not None and f":{first.proc.pid}:" in lease.holder
    # Both serve the web app.
    for server in (first, second):
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/login", timeout=5) as r:
            assert r.status == 200
    # The lease stays with the first while it lives.
    time.sleep(4)
    with make_session_factory(engine)() as s:
        assert f":{first.proc.pid}:" in s.get(SchedulerLease, "scheduler").holder
    first.kill()
    deadline = time.monotonic() + 20
    holder = ""
    while time.monotonic() < deadline:
        with make_session_factory(engine)() as s:
            holder = s.get(SchedulerLease, "scheduler").holder
        if f":{second.proc.pid}:" in holder:
            break
        time.sleep(0.2)
    assert f":{second.proc.pid}:" in holder
    # A clean stop hands the lease over (expires now) instead of waiting for expiry.
    second.stop()
    with make_session_factory(engine)() as s:
        lease = s.get(SchedulerLease, "scheduler")
        assert lease.expires_at <= datetime.now(lease.expires_at.tzinfo)
