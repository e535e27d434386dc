"""A loopback DingTalk (钉钉) custom-robot API, for the real robots.dingtalk client.

``POST /robot/send?access_token=TOKEN[&timestamp=MS&sign=SIGN]`` with JSON ``{"msgtype":
"markdown", "markdown": {"title": …, "text": …}}`` (or ``text``). Answers HTTP 200 with
``errcode``/``errmsg``, as the platform does:

* unknown or removed token → 300001 "token is not exist";
* a robot with a signing secret ("加签"): missing or wrong ``sign`` → 310000 "sign not
  match"; a ``timestamp`` more than an hour away → 310000 "invalid timestamp"; the sign is
  Base64(HMAC-SHA256(key=secret, msg=timestamp + "\\n" + secret)), URL-encoded;
* a robot with a keyword ("自定义关键词") and a message without it → 310000 "keywords not
  in content";
* more than 20 messages in a minute to one robot → 130101 "send too fast, exceed 20 times
  per minute", and the robot is then blocked for about 10 minutes (:attr:`block_seconds`):
  every request to it is answered with an HTTP 302 redirect to a DingTalk web page, and
  nothing is posted. Documented at
  https://open.dingtalk.com/document/orgapp/custom-robots-send-group-messages ("每个机器人
  每分钟最多发送20条消息到群里，如果超过20条，会限流10分钟") and the error codes at
  https://open.dingtalk.com/document/orgapp/server-api-error-codes-1 ; the older answer
  410100 "send too fast" is still seen in the field (the ``THROTTLE`` fault).

Faults from :class:`~tests.fakes.robot_base.RobotFault` (``THROTTLE`` answers 410100,
``TOO_FAST`` answers 130101 and blocks the robot).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web

from tests.fakes.robot_base import FakeRobotServer, RobotFault, drop, garbage, server_error

__all__ = ["FakeDingTalk"]


def _err(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": message})


def expected_sign(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


BLOCKED_PAGE = "https://www.dingtalk.com/"
"""Where a blocked robot's requests are redirected (a web page, not the API)."""


class FakeDingTalk(FakeRobotServer):
    WINDOWS = ((20, 60.0),)

    def __init__(self, *, block_seconds: float = 600.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.block_seconds = block_seconds
        self.blocked_until: dict[str, float] = {}
        self.redirects = 0

    def unblock(self, token: str) -> None:
        """The 10 minutes are over."""
        with self.lock:
            self.blocked_until.pop(token, None)

    def _too_fast(self, token: str) -> web.Response:
        with self.lock:
            self.blocked_until[token] = time.monotonic() + self.block_seconds
        return _err(130101, "send too fast, exceed 20 times per minute")

    def webhook(self, token: str, *, secret: str | None = None, keyword: str | None = None) -> str:
        self.add_robot(token, secret=secret, keyword=keyword)
        return f"{self.base_url}/robot/send?access_token={token}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/robot/send", self._send)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        token = request.query.get("access_token", "")
        with self.lock:
            self.requests.append(("send", token))
        fault = self.take_rule(token, "send")
        if fault is RobotFault.DROP_BEFORE:
            return await drop(request)
        if fault is RobotFault.SERVER_ERROR:
            return server_error()
        robot = self.robots.get(token)
        if robot is None or robot.removed:
            return _err(300001, "token is not exist")
        with self.lock:
            blocked = self.blocked_until.get(token, 0.0) > time.monotonic()
            if blocked:
                self.redirects += 1
        if blocked:
            await request.read()
            raise web.HTTPFound(BLOCKED_PAGE)
        if robot.secret:
            timestamp, sign = request.query.get("timestamp", ""), request.query.get("sign", "")
            if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3_600_000:
                return _err(310000, "invalid timestamp")
            if not hmac.compare_digest(sign, expected_sign(robot.secret, timestamp)):
                return _err(
                    310000,
                    "sign not match, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
                )
        raw = await request.read()
        try:
            body: dict[str, Any] = json.loads(raw)
        except ValueError:
            return _err(300001, "param error")  # as observed: a body that is not JSON
        msgtype = body.get("msgtype")
        payload = body.get(msgtype) if isinstance(msgtype, str) else None
        if msgtype == "markdown":
            if not isinstance(payload, dict) or not payload.get("title") or not payload.get("text"):
                return _err(300001, "param error: markdown needs title and text")
            content = payload["title"] + payload["text"]
        elif msgtype == "text":
            if not isinstance(payload, dict) or not payload.get("content"):
                return _err(300001, "param error: text needs content")
            content = payload["content"]
        else:
            return _err(300001, "param error: unsupported msgtype")
        if robot.keyword and robot.keyword not in content:
            return _err(
                310000,
                "keywords not in content, more: [https://ding-doc.dingtalk.com/doc#/serverapi2/qf2nxq]",
            )
        if fault is RobotFault.THROTTLE:
            return _err(410100, "send too fast, exceed 20 times per minute")
        if fault is RobotFault.TOO_FAST or self.over_limit(robot):
            return self._too_fast(token)
        self.record(robot, msgtype, body, len(raw))
        if fault is RobotFault.DROP_AFTER:
            return await drop(request)
        if fault is RobotFault.GARBAGE:
            return garbage()
        return web.json_response({"errcode": 0, "errmsg": "ok"})
