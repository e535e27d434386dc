"""A loopback Feishu / Lark (飞书) custom-bot API, for the real robots.feishu client.

``POST /open-apis/bot/v2/hook/TOKEN`` with JSON ``{"msg_type": "post" | "text" |
"interactive", "content" | "card": …}`` and, for a bot with a secret ("签名校验"),
``timestamp`` (seconds) and ``sign`` = Base64(HMAC-SHA256(key=timestamp + "\\n" + secret,
msg="")). Answers as the platform does (HTTP 200, ``code``/``msg``; success also carries
``StatusCode``/``StatusMessage``):

* unknown or removed token → 19001 "param invalid: incoming webhook access token invalid";
* wrong or missing sign, or a timestamp more than an hour away → 19021 "sign match fail or
  timestamp is not within one hour from current time";
* a keyword set and missing from the message → 19024 "Key Words Not Found";
* a body of 20 KB or more → HTTP 400, 19002 "request body too large" (this fake's choice
  of code for the documented limit); a malformed message → HTTP 400, 9499 "Bad Request";
* more than 5 messages a second or 100 a minute to one bot → 11232 "frequency limited"
  (flow control); the ``THROTTLE`` fault answers the older 9499 "too many request".

Faults from :class:`~tests.fakes.robot_base.RobotFault` (``THROTTLE`` answers 9499).
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

__all__ = ["FakeFeishu"]

BODY_BYTES = 20 * 1024


def _err(code: int, message: str, status: int = 200) -> web.Response:
    return web.json_response({"code": code, "msg": message, "data": {}}, status=status)


def expected_sign(secret: str, timestamp: str) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _texts(value: Any) -> str:
    """Every string inside a message (for the keyword check)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_texts(v) for v in value.values())
    if isinstance(value, list):
        return " ".join(_texts(v) for v in value)
    return ""


class FakeFeishu(FakeRobotServer):
    WINDOWS = ((5, 1.0), (100, 60.0))

    def webhook(self, token: str, *, secret: str | None = None, keyword: str | None = None) -> str:
        self.add_robot(token, secret=secret, keyword=keyword)
        return f"{self.base_url}/open-apis/bot/v2/hook/{token}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/open-apis/bot/v2/hook/{token}", self._send)

    async def _send(self, request: web.Request) -> web.StreamResponse:
        token = request.match_info["token"]
        with self.lock:
            self.requests.append(("send", token))
        fault = self.take_rule(token, "send")
        if fault is RobotFault.DROP_BEFORE:
            return await drop(request)
        if fault is RobotFault.SERVER_ERROR:
            return server_error()
        robot = self.robots.get(token)
        if robot is None or robot.removed:
            return _err(19001, "param invalid: incoming webhook access token invalid")
        raw = await request.read()
        if len(raw) >= BODY_BYTES:
            return _err(19002, "request body too large", status=400)
        try:
            body: dict[str, Any] = json.loads(raw)
        except ValueError:
            return _err(9499, "Bad Request", status=400)
        if robot.secret:
            timestamp, sign = str(body.get("timestamp", "")), str(body.get("sign", ""))
            if (
                not timestamp.isdigit()
                or abs(time.time() - int(timestamp)) > 3600
                or not hmac.compare_digest(sign, expected_sign(robot.secret, timestamp))
            ):
                return _err(
                    19021, "sign match fail or timestamp is not within one hour from current time"
                )
        msg_type = body.get("msg_type")
        if msg_type == "post":
            post = (body.get("content") or {}).get("post") or {}
            if not any(isinstance(v, dict) and v.get("content") for v in post.values()):
                return _err(9499, "Bad Request", status=400)
        elif msg_type == "text":
            if not (body.get("content") or {}).get("text"):
                return _err(9499, "Bad Request", status=400)
        elif msg_type != "interactive":
            return _err(19002, "params error, msg_type need")
        if robot.keyword and robot.keyword not in _texts(body.get("content") or body.get("card")):
            return _err(19024, "Key Words Not Found")
        if fault is RobotFault.THROTTLE:
            return _err(9499, "too many request")
        if self.over_limit(robot):
            return _err(11232, "frequency limited")
        self.record(robot, msg_type, body, len(raw))
        if fault is RobotFault.DROP_AFTER:
            return await drop(request)
        if fault is RobotFault.GARBAGE:
            return garbage()
        return web.json_response(
            {"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"}
        )
