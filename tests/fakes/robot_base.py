"""What the three group-robot fakes share: a loopback aiohttp server in a thread, robots
(webhooks) the test creates, per-robot sliding-window limits enforced server-side, the
messages each robot accepted, and fault injection.

Faults (:class:`RobotFault`), injected into the next matching requests:

* ``THROTTLE``: the platform's "too fast" answer (nothing recorded);
* ``SERVER_ERROR``: HTTP 502 with an HTML body (nothing recorded);
* ``DROP_BEFORE``: close the connection without recording or answering;
* ``DROP_AFTER``: record the message, then close the connection (the answer is lost);
* ``GARBAGE``: record the message, then answer HTTP 200 with a body that is not JSON;
* ``TOO_FAST``: DingTalk's throttling (130101, then the robot is blocked: HTTP 302).

A subclass adds its routes (:meth:`FakeRobotServer.routes`) and answers in the platform's
own shape; the base keeps the bookkeeping thread-safe, so the real (synchronous) client code
can call it from many worker threads.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

__all__ = ["FakeRobotServer", "Received", "Robot", "RobotFault"]


class RobotFault(enum.Enum):
    THROTTLE = "throttle"
    SERVER_ERROR = "5xx"
    DROP_BEFORE = "drop-before"
    DROP_AFTER = "drop-after"
    GARBAGE = "garbage"
    TOO_FAST = "too-fast"


@dataclass
class Received:
    """A message a robot accepted (what the group sees)."""

    robot: str
    msgtype: str
    body: dict[str, Any]
    size: int
    at: float


@dataclass
class Robot:
    token: str
    secret: str | None = None
    keyword: str | None = None
    removed: bool = False
    times: deque[float] = field(default_factory=lambda: deque(maxlen=1000))


@dataclass
class _Rule:
    fault: RobotFault
    times: int
    robot: str | None
    kind: str | None


class FakeRobotServer(LoopbackServer):
    """Base of the fakes; use as a context manager."""

    THREAD_NAME = "fake-robots"

    # (count, seconds) sliding windows per robot; the platform's by default.
    WINDOWS: tuple[tuple[int, float], ...] = ()

    def __init__(self, *, windows: tuple[tuple[int, float], ...] | None = None) -> None:
        super().__init__()
        self.windows = self.WINDOWS if windows is None else windows
        self.robots: dict[str, Robot] = {}
        self.messages: list[Received] = []
        self.requests: list[tuple[str, str]] = []  # (kind, robot token)
        self.refused = 0  # requests refused by the limits
        self.faults_fired: dict[RobotFault, int] = {f: 0 for f in RobotFault}
        self.lock = threading.Lock()
        self._rules: list[_Rule] = []

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- robots, faults, records ----------------------------------------------------------------

    def add_robot(
        self, token: str, *, secret: str | None = None, keyword: str | None = None
    ) -> Robot:
        with self.lock:
            robot = self.robots[token] = Robot(token, secret, keyword)
            return robot

    def remove_robot(self, token: str) -> None:
        """The group removed the robot: its webhook answers "invalid" from now on."""
        with self.lock:
            self.robots[token].removed = True

    def fail(
        self,
        fault: RobotFault,
        *,
        times: int = 1,
        robot: str | None = None,
        kind: str | None = None,
    ) -> None:
        """Inject ``fault`` into the next ``times`` requests to ``robot`` (any) of ``kind``
        ("send", "upload"; any)."""
        with self.lock:
            self._rules.append(_Rule(fault, times, robot, kind))

    def take_rule(self, robot: str, kind: str) -> RobotFault | None:
        with self.lock:
            for rule in self._rules:
                if rule.times <= 0:
                    continue
                if rule.robot not in (None, robot) or rule.kind not in (None, kind):
                    continue
                rule.times -= 1
                self.faults_fired[rule.fault] += 1
                return rule.fault
        return None

    def messages_to(self, token: str) -> list[Received]:
        with self.lock:
            return [m for m in self.messages if m.robot == token]

    def over_limit(self, robot: Robot) -> bool:
        """True (and counted) when one more message would break a window; else takes a slot."""
        now = time.monotonic()
        with self.lock:
            for count, seconds in self.windows:
                if len(robot.times) >= count and now - robot.times[-count] < seconds:
                    self.refused += 1
                    return True
            robot.times.append(now)
            return False

    def record(self, robot: Robot, msgtype: str, body: dict[str, Any], size: int) -> Received:
        with self.lock:
            received = Received(robot.token, msgtype, body, size, time.monotonic())
            self.messages.append(received)
            return received

    def max_in_window(self, token: str, count: int, seconds: float) -> int:
        """The most messages ``token`` accepted within any ``seconds`` (for limit checks)."""
        times = [m.at for m in self.messages_to(token)]
        most = 0
        for i, start in enumerate(times):
            most = max(most, sum(1 for t in times[i:] if t - start < seconds))
        return most


async def drop(request: web.Request) -> web.StreamResponse:
    """Close the connection with no HTTP answer at all."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return web.Response(status=204)


def server_error() -> web.Response:
    return web.Response(
        status=502, text="<html><body>502 Bad Gateway</body></html>", content_type="text/html"
    )


def garbage() -> web.Response:
    return web.Response(
        status=200, text="<html>upstream said {oops", content_type="application/json"
    )


AMR_MAGIC = b"#!AMR\n"
# AMR-NB frame sizes in bytes (without the 1-byte header) by frame type; 20 ms per frame.
_AMR_SIZES = [12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0]


def amr_seconds(data: bytes) -> float | None:
    """Length of an AMR-NB file (20 ms per frame), or None when it is not AMR-NB."""
    if not data.startswith(AMR_MAGIC):
        return None
    pos, frames = len(AMR_MAGIC), 0
    while pos < len(data):
        frame_type = (data[pos] >> 3) & 0x0F
        pos += 1 + _AMR_SIZES[frame_type]
        frames += 1
    return frames * 0.02


def is_mp3(data: bytes) -> bool:
    return data.startswith(b"ID3") or (len(data) > 1 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0)
