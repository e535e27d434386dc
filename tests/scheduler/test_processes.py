"""Real `dalaba serve` processes: SIGKILL at several points of a day's work (group robots
included), and two at once; on SQLite and on PostgreSQL (a private schema each)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from cms.db import make_session_factory
from cms.models import (
    ChatGroup,
    Clip,
    ClipProfile,
    Delivery,
    DeliveryState,
    JobState,
    OutboxMessage,
    Program,
    SchedulerLease,
)
from cms.services import chats
from cms.settings import Settings
from tests.fakes.dingtalk_api import FakeDingTalk
from tests.fakes.feishu_api import FakeFeishu
from tests.fakes.robot_base import FakeRobotServer, Received, Robot, drop
from tests.fakes.wecom_api import FakeWeCom
from tests.pg import BACKENDS, settings_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CHATS = 40  # Telegram groups (no bot token: their notices go to the local outbox)
# Group robots on loopback fakes: (platform, key or token, signing secret, area). Bound
# before the other chats, so that the dispatcher (which takes chats in the order of their
# first due delivery, four at a time) reaches them first while their first notice is due.
ROBOTS = (
    ("feishu", "kill-feishu-01", "killfeishusecret01", "g2"),
    ("dingtalk", "killdingtalk00000001", "SECkilldingtalksecret0001", "v1"),
    ("wecom", "kill-wecom-01", "", "g1"),
    ("dingtalk", "killdingtalk00000002", "SECkilldingtalksecret0002", "town"),
    ("wecom", "kill-wecom-02", "", "v2"),
    ("wecom", "kill-wecom-03", "", "v1"),
)
ROBOT_PLATFORMS = ("wecom", "dingtalk", "feishu")
# What a robot delivery records as sent: WeCom a markdown message (the notice has a share
# page) and the voice note; DingTalk markdown and Feishu a rich-text post, with the link.
ROBOT_PARTS = {"wecom": ["markdown-1", "voice-2"], "dingtalk": ["markdown-1"], "feishu": ["post-1"]}
OUTBOX_DELIVERIES = 3 * CHATS
DELIVERIES = 3 * (CHATS + len(ROBOTS))
PROGRAMS = 2 * 2 * 2  # two outlets, two slots, today and tomorrow


@pytest.fixture(params=BACKENDS)
def settings(request, settings):  # type: ignore[no-untyped-def]
    """Every test here runs on SQLite and on PostgreSQL (a private schema)."""
    return settings_for(request, settings)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One `dalaba serve` process on the test's database."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        name: str,
        *args: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.log_path = log_dir / f"{name}.log"
        environ = {
            **os.environ,
            "DALABA_DATA_DIR": str(settings.data_dir),
            "DALABA_DATABASE_URL": settings.database_url,
            "DALABA_SECRET_KEY": "crash-test-secret",
            "DALABA_TTS_ENGINE": "offline",
            "DALABA_BUILD_TIME": "00:00",
            "DALABA_SCHEDULER_TICK": "0.3",
            "DALABA_SCHEDULER_LEASE": "3",
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        environ.pop("DALABA_TELEGRAM_TOKEN", None)
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cms.cli", "serve", "--port", str(self.port), *args],
            cwd=ROOT,
            env=environ,
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
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(settings: Settings, name: str, *args: str) -> Server:
        server = Server(settings, tmp_path, name, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.stop()


# --- Group robots: loopback fakes that can hold one request while the test kills the sender ---

_recorded: ContextVar[Received | None] = ContextVar("recorded", default=None)


class Gate:
    """Catches one robot request and holds it until the test has killed the process that
    sent it, so that a kill lands inside a robot send at a chosen point:

    * ``before``: before the platform acts on the message (nothing recorded: the restart
      sends the part again and the group sees it once);
    * ``after``: the platform recorded the message and the answer is held (the documented
      lost-answer window: the restart sends the part again and the group sees it twice);
    * ``upload``: a WeCom voice upload, before the platform acts on it.

    Once it has caught its request, every other robot request waits too (so that nothing
    moves between the catch and the kill), and the ones still waiting at the kill are
    dropped unanswered: their sender is gone.
    """

    def __init__(self, platform: str, point: str, msgtype: str | None = None) -> None:
        self.platform = platform
        self.point = point
        self.msgtype = msgtype
        self.caught = threading.Event()
        self.released = threading.Event()
        self.message: Received | None = None  # the message held at ``after``
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return " ".join(filter(None, (self.platform, self.point, self.msgtype)))

    def take(
        self, platform: str, point: str, msgtype: str | None, message: Received | None = None
    ) -> bool:
        with self._lock:
            if self.caught.is_set() or (platform, point) != (self.platform, self.point):
                return False
            if self.msgtype is not None and msgtype != self.msgtype:
                return False
            self.message = message
            self.caught.set()
            return True

    async def wait(self) -> None:
        """Until the test has killed the sender."""
        while not self.released.is_set():
            await asyncio.sleep(0.01)


class _Gated(FakeRobotServer):
    """A robot fake whose requests pass the test's :class:`Gate`, when one is set."""

    platform = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate: Gate | None = None
        self.busy = 0  # requests being handled

    def record(self, robot: Robot, msgtype: str, body: dict[str, Any], size: int) -> Received:
        received = super().record(robot, msgtype, body, size)
        _recorded.set(received)  # seen by this request's handler in _send below
        return received

    async def _held(self, point: str, msgtype: str | None) -> bool:
        """True when the request is to go unanswered: held until the kill."""
        gate = self.gate
        if gate is None or not (gate.take(self.platform, point, msgtype) or gate.caught.is_set()):
            return False
        await gate.wait()
        return True

    @contextmanager
    def _busy(self) -> Iterator[None]:
        with self.lock:
            self.busy += 1
        try:
            yield
        finally:
            with self.lock:
                self.busy -= 1

    async def _send(self, request: web.Request) -> web.StreamResponse:
        with self._busy():
            if self.gate is not None and await self._held("before", await _msgtype(request)):
                return await drop(request)
            _recorded.set(None)
            response = await super()._send(request)  # type: ignore[misc]
            received, gate = _recorded.get(), self.gate
            if (
                received is not None
                and gate is not None
                and gate.take(self.platform, "after", received.msgtype, received)
            ):
                await gate.wait()
            return response


def _wait_idle(fakes: dict[str, _Gated]) -> None:
    """Until the fakes have been idle for a moment (a request the killed sender wrote just
    before it died may still be read and acted on): only then do their records show all
    that the killed process got posted."""
    deadline = time.monotonic() + 10
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < 0.3:
        if any(f.busy for f in fakes.values()):
            assert time.monotonic() < deadline, {p: f.busy for p, f in fakes.items()}
            idle_since = time.monotonic()
        time.sleep(0.01)


class GatedWeCom(_Gated, FakeWeCom):
    platform = "wecom"

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        with self._busy():
            if self.gate is not None and await self._held("upload", request.query.get("type")):
                return await drop(request)
            return await super()._upload(request)


class GatedDingTalk(_Gated, FakeDingTalk):
    platform = "dingtalk"


class GatedFeishu(_Gated, FakeFeishu):
    platform = "feishu"


async def _msgtype(request: web.Request) -> str | None:
    try:
        body = json.loads(await request.read())  # read() keeps the body for the fake
    except ValueError:
        return None
    return (body.get("msgtype") or body.get("msg_type")) if isinstance(body, dict) else None


@pytest.fixture
def robot_fakes() -> Iterator[dict[str, _Gated]]:
    with GatedWeCom() as wecom, GatedDingTalk() as dingtalk, GatedFeishu() as feishu:
        yield {"wecom": wecom, "dingtalk": dingtalk, "feishu": feishu}


def _bind_robots(session: Session, grid, fakes: dict[str, _Gated]) -> dict[int, tuple[str, str]]:  # type: ignore[no-untyped-def]
    """Bind every robot through the real service, as `dalaba chats bind` does; returns
    each robot's platform and token by chat row id."""
    robots: dict[int, tuple[str, str]] = {}
    for platform, token, secret, area in ROBOTS:
        fake: Any = fakes[platform]
        webhook = fake.webhook(token, secret=secret) if secret else fake.webhook(token)
        chat = chats.bind_robot(
            session,
            None,
            platform=platform,
            webhook=webhook,
            secret=secret,
            area=grid[area],
            title=f"{platform}机器人{token[-1]}",
            allow_local=True,  # the fakes listen on loopback
        )
        session.flush()
        robots[chat.id] = (platform, token)
    session.commit()
    return robots


def _identity(fakes: dict[str, _Gated], m: Received) -> tuple[str, str]:
    """What a group sees of a message: a text, or which voice clip (by its bytes)."""
    if m.msgtype in ("voice", "file"):
        media = fakes["wecom"].media[m.body[m.msgtype]["media_id"]]  # type: ignore[attr-defined]
        return m.msgtype, media["sha256"]
    # Feishu carries its sign and timestamp in the body: only the content counts.
    payload = m.body["content"] if "msg_type" in m.body else m.body[m.msgtype]
    return m.msgtype, json.dumps(payload, ensure_ascii=False, sort_keys=True)


class Ledger:
    """The robot parts caught in the lost-answer window by each kill: parts a robot's fake
    has recorded while the delivery, still "sending", has not noted them as sent. Each
    such part is posted again after the restart; these are the only duplicates allowed."""

    def __init__(
        self, engine: Engine, fakes: dict[str, _Gated], robots: dict[int, tuple[str, str]]
    ) -> None:
        self.engine = engine
        self.fakes = fakes
        self.robots = robots
        self.windows: Counter[tuple[str, tuple[str, str]]] = Counter()  # (token, part)
        self._copies: dict[tuple[str, tuple[str, str]], int] = {}  # accounted for so far
        self.amr: dict[str, str] = {}  # voice clip path -> SHA-256 of its AMR

    def voice(self, clip: Clip | None) -> str | None:
        """The SHA-256 of the AMR WeCom gets for ``clip`` (converted as the robot does)."""
        from robots.wecom import to_amr

        if clip is None or clip.state is not JobState.DONE or not clip.path:
            return None
        if clip.path not in self.amr:
            self.amr[clip.path] = hashlib.sha256(to_amr(Path(clip.path))).hexdigest()
        return self.amr[clip.path]

    def after_kill(self) -> int:
        """Note the parts newly caught in the window (the sender was just killed and the
        fakes are idle); returns how many. A part still in the window from an earlier kill
        (its resend never got out) counts again only if the fake has one more copy of it."""
        found = 0
        with make_session_factory(self.engine)() as s:
            sending = s.scalars(
                select(Delivery)
                .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
                .where(
                    Delivery.state == DeliveryState.SENDING,
                    ChatGroup.platform.in_(ROBOT_PLATFORMS),
                )
            ).all()
            for d in sending:
                platform, token = self.robots[d.chat_group_id]
                done = len(d.message_ids or [])
                if done >= len(ROBOT_PARTS[platform]):
                    continue
                kind = ROBOT_PARTS[platform][done].rsplit("-", 1)[0]
                title = d.revision.title
                digest = self.voice(
                    s.scalar(
                        select(Clip).where(
                            Clip.revision_id == d.revision_id, Clip.profile == ClipProfile.VOICE
                        )
                    )
                )
                posted = Counter(
                    _identity(self.fakes, m) for m in self.fakes[platform].messages_to(token)
                )
                for key, copies in posted.items():
                    if kind == "voice":
                        this_part = key == ("voice", digest)
                    else:
                        this_part = key[0] == kind and title in key[1]
                    if this_part:
                        new = copies - self._copies.get((token, key), 0)
                        self._copies[(token, key)] = copies
                        self.windows[(token, key)] += new
                        found += new
        return found


# --- Seeding, snapshots and checks ------------------------------------------------------------


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


def _snapshot(engine: Engine, fakes: dict[str, _Gated] | None = None) -> dict[str, Any]:
    with make_session_factory(engine)() as s:
        robot_sending = s.scalar(
            select(func.count())
            .select_from(Delivery)
            .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
            .where(Delivery.state == DeliveryState.SENDING, ChatGroup.platform.in_(ROBOT_PLATFORMS))
        )
        return {
            "clips": Counter(c.value for c in s.scalars(select(Clip.state))),
            "programs": Counter(p.value for p in s.scalars(select(Program.state))),
            "deliveries": Counter(d.value for d in s.scalars(select(Delivery.state))),
            "outbox": s.scalar(select(func.count()).select_from(OutboxMessage)),
            "robots": sum(len(f.messages) for f in (fakes or {}).values()),
            "robot_sending": robot_sending,
        }


def _progress(snap: dict[str, Any]) -> int:
    return (
        snap["clips"].get("done", 0)
        + snap["programs"].get("done", 0)
        + snap["outbox"]
        + snap["robots"]
    )


def _in_flight(snap: dict[str, Any]) -> bool:
    return bool(
        snap["clips"].get("running")
        or snap["programs"].get("running")
        or snap["deliveries"].get("sending")
    )


def _finished(snap: dict[str, Any], n_programs: int, n_deliveries: int) -> bool:
    return (
        set(snap["clips"]) == {"done"}
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
    """The outbox deliveries (the Telegram groups'): exactly once."""
    deliveries = s.scalars(
        select(Delivery)
        .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
        .where(ChatGroup.platform.not_in(ROBOT_PLATFORMS))
    ).all()
    assert len(deliveries) == OUTBOX_DELIVERIES
    per_delivery = Counter(m.delivery_id for m in s.scalars(select(OutboxMessage)))
    assert sum(per_delivery.values()) == 2 * OUTBOX_DELIVERIES
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


def _check_robots(engine: Engine, ledger: Ledger, gates: list[Gate]) -> int:
    """Every robot got every notice (WeCom with its voice note, after its text); a message
    shows more than once only for a part a kill caught in the lost-answer window, once per
    such kill. Returns the number of duplicates."""
    fakes = ledger.fakes
    with make_session_factory(engine)() as s:
        deliveries = s.scalars(
            select(Delivery)
            .join(ChatGroup, ChatGroup.id == Delivery.chat_group_id)
            .where(ChatGroup.platform.in_(ROBOT_PLATFORMS))
        ).all()
        assert len(deliveries) == 3 * len(ROBOTS)
        for d in deliveries:
            assert d.state is DeliveryState.SENT, (d.id, d.state, d.last_error)
            assert d.message_ids == ROBOT_PARTS[d.chat_group.platform], (d.id, d.message_ids)
        # Which voice clip is which notice (WeCom gets it as AMR).
        voices = {
            ledger.voice(c): c.revision.title
            for c in s.scalars(select(Clip).where(Clip.profile == ClipProfile.VOICE))
        }
        titles = sorted({d.revision.title for d in deliveries})
    assert len(voices) == len(titles) == 3
    duplicates = 0
    for platform, token, _secret, _area in ROBOTS:
        seen = [_identity(fakes, m) for m in fakes[platform].messages_to(token)]
        counts = Counter(seen)
        for key, n in counts.items():
            # Nothing twice, but for a part a kill found posted and not yet noted as sent:
            # once more for each such kill.
            assert n - 1 == ledger.windows[(token, key)], (token, key, n, ledger.windows)
            duplicates += n - 1
        texts = [key for key in counts if key[0] not in ("voice", "file")]
        # Each notice reached the group as one text (nothing lost, nothing mixed up).
        assert len(texts) == len(titles), (token, texts)
        assert sorted(t for t in titles for key in texts if t in key[1]) == titles, (token, texts)
        if platform == "wecom":
            sent_voices = [key for key in counts if key[0] != "markdown"]
            assert sorted(voices[key[1]] for key in sent_voices) == titles, (token, sent_voices)
            assert {key[0] for key in sent_voices} == {"voice"}
            for key in sent_voices:
                text_at = next(i for i, k in enumerate(seen) if voices[key[1]] in k[1])
                assert seen.index(key) > text_at, (token, seen)
        else:
            assert {key[0] for key in counts} == {"markdown" if platform == "dingtalk" else "post"}
    for fake in fakes.values():
        assert fake.refused == 0, "a robot was sent more than its per-minute limit"
    # The part held at each "after" kill was in the window and went out again.
    for gate in gates:
        if gate.point == "after":
            assert gate.message is not None
            key = _identity(fakes, gate.message)
            assert ledger.windows[(gate.message.robot, key)] >= 1, str(gate)
            assert (
                Counter(
                    _identity(fakes, m)
                    for m in fakes[gate.platform].messages_to(gate.message.robot)
                )[key]
                >= 2
            ), str(gate)
    return duplicates


def test_sigkill_during_a_days_work_loses_and_duplicates_nothing(  # type: ignore[no-untyped-def]
    settings,
    engine,
    session,
    today,
    grid,
    make_outlet,
    make_chat,
    make_announcement,
    servers,
    robot_fakes,
):
    """Kills `dalaba serve` with SIGKILL at several points; each restart resumes from the
    rows. The Telegram groups (through the local outbox) get every part exactly once; the
    group robots get every part, twice only where a kill lost the platform's answer."""
    ledger = Ledger(engine, robot_fakes, _bind_robots(session, grid, robot_fakes))
    n_anns = _seed(settings, today, make_outlet, make_chat, make_announcement, grid)
    # Kill after a few units of progress each time (a clip rendered, a program built, an
    # outbox row written, a robot message posted), in a shuffled order of small steps, so
    # the kills land during rendering, building and sending alike; half of them as soon as
    # a row is in flight. Before and between them, kills inside a robot send at a chosen
    # point (see Gate), each platform's early on, while its robots still have work.
    steps = [1, 2, 3, 5, 8, 13, 20, 30]
    random.Random(20261128).shuffle(steps)
    gates = [
        Gate("feishu", "after"),
        Gate("dingtalk", "before"),
        Gate("dingtalk", "after"),
        Gate("wecom", "before"),
        Gate("wecom", "upload"),
        Gate("wecom", "after", "voice"),
    ]
    plan: list[int | Gate] = [
        gates[0], gates[1], gates[2], steps[0], gates[3], steps[1], gates[4], gates[5],
        *steps[2:],
    ]  # fmt: skip
    kills: list[str] = []
    robot_sends_killed = 0  # robot deliveries a kill caught mid-send (each may repeat a part)
    for number, run in enumerate(plan):
        before = _progress(_snapshot(engine, robot_fakes))
        gate = run if isinstance(run, Gate) else None
        for fake in robot_fakes.values():
            fake.gate = gate
        server = servers(settings, f"run{number}")
        started = time.monotonic()
        hit = False
        while time.monotonic() - started < 90:
            if server.proc.poll() is not None:
                raise AssertionError(server.output()[-3000:])
            if gate is not None:
                if gate.caught.wait(0.02):
                    hit = True
                    break
                continue
            snap = _snapshot(engine, robot_fakes)
            if _finished(snap, PROGRAMS, DELIVERIES):
                break
            delta = _progress(snap) - before
            odd = steps.index(run) % 2  # type: ignore[arg-type]
            if delta >= run or (odd and delta >= 1 and _in_flight(snap)):  # type: ignore[operator]
                hit = True
                break
            time.sleep(0.005)
        server.kill()
        for fake in robot_fakes.values():
            fake.gate = None
        if gate is not None:
            gate.released.set()
        after = _snapshot(engine, robot_fakes)
        robot_sends_killed += after["robot_sending"]
        _wait_idle(robot_fakes)
        in_window = ledger.after_kill()
        kills.append(
            f"kill {number + 1} ({gate or f'step {run}'}): {'hit' if hit else 'missed'} "
            f"in flight={_in_flight(after)} robot parts in the window={in_window} {after}"
        )
        assert gate is None or hit, f"no {gate} request came: {kills}"
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
    duplicates = _check_robots(engine, ledger, gates)
    print("\n".join(kills))
    print(
        f"robot duplicates={duplicates} parts in the window={ledger.windows.total()} "
        f"robot sends killed={robot_sends_killed}"
    )
    # Duplicates only from the window: at least the held answers, at most one per robot
    # send a kill interrupted.
    assert duplicates == ledger.windows.total()
    assert sum(g.point == "after" for g in gates) <= duplicates <= robot_sends_killed
    assert sum(": hit " in k for k in kills) >= 6 + len(gates), kills
    # Webhook keys and signing secrets never reach the logs.
    logs = "".join(
        Path(p).read_text(errors="replace") for p in sorted(settings.data_dir.parent.glob("*.log"))
    )
    for _platform, token, secret, _area in ROBOTS:
        assert token not in logs and (not secret or secret not in logs)


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


def _api(server: Server, method: str, path: str, token: str, payload: Any = None) -> Any:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/v1{path}",
        method=method,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as r:
        return r.status, json.loads(r.read() or b"null")


def test_web_only_processes_beside_one_scheduler(  # type: ignore[no-untyped-def]
    settings, engine, session, make_user, content, servers, village_loudspeaker
):
    """The county shape: `serve --no-scheduler` web processes and one scheduler process on one
    database. Both serve pages and take writes; only the scheduler process holds the lease,
    and it works on what was written through the other."""
    from cms.models import Role
    from cms.services import users

    editor, reviewer = make_user(Role.EDITOR), make_user(Role.REVIEWER)
    editor_token = users.issue_api_token(session, None, editor, "county")
    reviewer_token = users.issue_api_token(session, None, reviewer, "county")
    data = content()
    session.commit()
    web = [servers(settings, f"web{i}", "--no-scheduler") for i in (1, 2)]
    scheduler = servers(settings, "scheduler")
    for server in (*web, scheduler):
        server.wait_ready()
    for server in web:
        assert "调度器已关闭（--no-scheduler" in server.output()
    assert "调度器已在本进程启动" in scheduler.output()
    ids = []
    for number, server in enumerate((*web, scheduler)):
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/login", timeout=5) as r:
            assert r.status == 200 and "登录".encode() in r.read()
        # A write through each process: an editor drafts and submits, a reviewer approves.
        body = {
            **{k: data[k] for k in ("body", "topic_id", "area_ids", "start_date", "end_date")},
            "title": f"县里的通知{number}",
            "channels": ["loudspeaker"],
            "repeats": 1,
        }
        status, created = _api(server, "POST", "/announcements", editor_token, body)
        assert status == 201, created
        ids.append(created["id"])
        assert (
            _api(server, "POST", f"/announcements/{created['id']}/submit", editor_token)[0] == 200
        )
    # Approvals through the other processes: each sees what another one wrote.
    for server, ann_id in zip((scheduler, web[0], web[1]), ids, strict=True):
        status, approved = _api(
            server, "POST", f"/announcements/{ann_id}/approve", reviewer_token, {"comment": "同意"}
        )
        assert status == 200 and approved["status"] == "approved", approved
    # The scheduler process renders the clips of all three; the web processes never hold the lease.
    deadline = time.monotonic() + 90
    states: Counter[str] = Counter()
    while time.monotonic() < deadline:
        with make_session_factory(engine)() as s:
            states = Counter(c.value for c in s.scalars(select(Clip.state)))
            holder = s.get(SchedulerLease, "scheduler").holder
        assert f":{scheduler.proc.pid}:" in holder
        if states and set(states) == {"done"} and states.total() >= len(ids):
            break
        time.sleep(0.3)
    assert set(states) == {"done"} and states.total() >= len(ids), states
    for server in web:
        assert "调度器" not in server.output().replace("调度器已关闭", "", 1), server.output()
        assert server.proc.poll() is None
