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
* more than 20 messages in a minute to one robot → 410100 "send too fast, exceed 20
  times per minute".

Faults from :class:`~tests.fakes.robot_base.RobotFault` (``THROTTLE`` answers 410100).
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


class FakeDingTalk(FakeRobotServer):
    WINDOWS = ((20, 60.0),)

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
        if fault is RobotFault.THROTTLE or self.over_limit(robot):
            return _err(410100, "send too fast, exceed 20 times per minute")
        self.record(robot, msgtype, body, len(raw))
        if fault is RobotFault.DROP_AFTER:
            return await drop(request)
        if fault is RobotFault.GARBAGE:
            return garbage()
        return web.json_response({"errcode": 0, "errmsg": "ok"})
