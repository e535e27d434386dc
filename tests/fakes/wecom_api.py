"""A loopback WeCom (企业微信) group-robot API, for the real robots.wecom client.

Documented requests it answers (all answers HTTP 200 with ``errcode``/``errmsg``):

* ``POST /cgi-bin/webhook/send?key=KEY`` with JSON ``{"msgtype": "text", "text":
  {"content": …}}`` (content at most 2,048 UTF-8 bytes), ``markdown`` (4,096 bytes),
  ``voice`` / ``file`` (``{"media_id": …}`` from an upload to the same robot);
* ``POST /cgi-bin/webhook/upload_media?key=KEY&type=voice|file`` (multipart, field
  ``media``): ``voice`` must be AMR (``#!AMR\\n``), at most 2 MB and 60 s; ``file`` at most
  20 MB (this fake also checks the MP3 magic, the only file dalaba uploads). Answers
  ``{"errcode": 0, "errmsg": "ok", "type": …, "media_id": …, "created_at": …}``. Each
  upload is kept in ``media`` by id with its SHA-256, so a test can tell which voice
  message carried which clip (and that two messages carried the same one).

Errors as the platform gives them: an unknown or removed key → 93000 "invalid webhook
url"; more than 20 messages in a minute to one robot → 45009 "api freq out of limit";
content too long → 40058; bad media → 40004 (type) / 40006 (size) / 40007 (media_id);
a voice longer than 60 s → 40005 (this fake's choice of code for the documented limit).
Faults from :class:`~tests.fakes.robot_base.RobotFault` (``THROTTLE`` answers 45009).

    with FakeWeCom() as api:
        url = api.webhook("k-1")            # a robot's webhook address
        api.fail(RobotFault.THROTTLE, robot="k-1")
        api.remove_robot("k-1")             # 93000 from now on
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

from aiohttp import web

from tests.fakes.robot_base import (
    AMR_MAGIC,
    FakeRobotServer,
    RobotFault,
    amr_seconds,
    drop,
    garbage,
    is_mp3,
    server_error,
)

__all__ = ["FakeWeCom"]

TEXT_BYTES = 2048
MARKDOWN_BYTES = 4096
VOICE_BYTES = 2 * 1024 * 1024
VOICE_SECONDS = 60.0
FILE_BYTES = 20 * 1024 * 1024


def _err(code: int, message: str) -> web.Response:
    return web.json_response({"errcode": code, "errmsg": f"{message}, hint: [fake]"})


class FakeWeCom(FakeRobotServer):
    WINDOWS = ((20, 60.0),)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.media: dict[str, dict[str, Any]] = {}
        self.uploads: list[dict[str, Any]] = []
        self._media_ids = itertools.count(1)

    def webhook(self, key: str) -> str:
        if key not in self.robots:
            self.add_robot(key)
        return f"{self.base_url}/cgi-bin/webhook/send?key={key}"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/cgi-bin/webhook/send", self._send)
        app.router.add_post("/cgi-bin/webhook/upload_media", self._upload)

    def _robot(self, request: web.Request) -> Any:
        robot = self.robots.get(request.query.get("key", ""))
        return robot if robot is not None and not robot.removed else None

    async def _send(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "")
        with self.lock:
            self.requests.append(("send", key))
        fault = self.take_rule(key, "send")
        if fault is RobotFault.DROP_BEFORE:
            return await drop(request)
        if fault is RobotFault.SERVER_ERROR:
            return server_error()
        robot = self._robot(request)
        if robot is None:
            return _err(93000, "invalid webhook url")
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError:
            return _err(40016, "invalid request body")
        if fault is RobotFault.THROTTLE or self.over_limit(robot):
            return _err(45009, "api freq out of limit")
        msgtype = body.get("msgtype")
        if msgtype in ("text", "markdown"):
            content = (body.get(msgtype) or {}).get("content", "")
            limit = TEXT_BYTES if msgtype == "text" else MARKDOWN_BYTES
            if not content:
                return _err(44004, "empty content")
            if len(content.encode()) > limit:
                return _err(40058, f"content exceed max length {limit}")
        elif msgtype in ("voice", "file"):
            media = self.media.get((body.get(msgtype) or {}).get("media_id", ""))
            if media is None or media["key"] != key or media["type"] != msgtype:
                return _err(40007, "invalid media_id")
        else:
            return _err(40008, "invalid message type")
        self.record(robot, msgtype, body, len(raw))
        if fault is RobotFault.DROP_AFTER:
            return await drop(request)
        if fault is RobotFault.GARBAGE:
            return garbage()
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _upload(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "")
        with self.lock:
            self.requests.append(("upload", key))
        fault = self.take_rule(key, "upload")
        if fault is RobotFault.DROP_BEFORE:
            return await drop(request)
        if fault is RobotFault.SERVER_ERROR:
            return server_error()
        if self._robot(request) is None:
            return _err(93000, "invalid webhook url")
        media_type = request.query.get("type", "")
        if media_type not in ("voice", "file") or not request.content_type.startswith("multipart/"):
            return _err(40004, "invalid media type")
        data, filename = b"", ""
        reader = await request.multipart()
        async for part in reader:
            if part.name == "media":  # type: ignore[union-attr]
                filename = part.filename or ""  # type: ignore[union-attr]
                data = await part.read()  # type: ignore[union-attr]
        if not data:
            return _err(40004, "invalid media type")
        if media_type == "voice":
            if not data.startswith(AMR_MAGIC):
                return _err(40004, "invalid media type: voice must be amr")
            if len(data) > VOICE_BYTES:
                return _err(40006, "invalid media size")
            seconds = amr_seconds(data) or 0.0
            if seconds > VOICE_SECONDS:
                return _err(40005, "voice too long")
        else:
            if len(data) > FILE_BYTES:
                return _err(40006, "invalid media size")
            if not is_mp3(data):
                return _err(40005, "invalid file type")
            seconds = None
        media_id = f"media-{next(self._media_ids)}"
        with self.lock:
            self.media[media_id] = {
                "key": key,
                "type": media_type,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            self.uploads.append(
                {
                    "key": key,
                    "type": media_type,
                    "filename": filename,
                    "size": len(data),
                    "seconds": seconds,
                }
            )
        if fault is RobotFault.DROP_AFTER:
            return await drop(request)
        if fault is RobotFault.GARBAGE:
            return garbage()
        return web.json_response(
            {
                "errcode": 0,
                "errmsg": "ok",
                "type": media_type,
                "media_id": media_id,
                "created_at": "1380000000",
            }
        )
