"""A loopback WeChat Official Account API server, with a daily quota and injectable faults.

It answers the endpoints dalaba uses, as the platform documents them:

* ``POST /cgi-bin/stable_token`` (JSON ``grant_type``/``appid``/``secret``/``force_refresh``)
  and ``GET /cgi-bin/token?grant_type=client_credential&appid=&secret=``: an access token
  valid ``expires_in`` seconds (7200). In normal mode the stable token is the same until
  five minutes before it expires, then a new one (the old one keeps working until its own
  expiry); ``force_refresh`` gives a new one at once, invalidates the old, and is allowed
  20 times a day (45009 after that). Every fetch counts against a daily quota (45009 when
  spent). A wrong AppID answers 40013, a wrong secret 40125, a blocked IP 40164.
  https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/getStableAccessToken.html
* every other endpoint takes ``?access_token=``: missing 41001, unknown or replaced 40001,
  expired 42001.
* ``POST /cgi-bin/material/add_material?type=image``: a multipart ``media`` file, PNG or
  JPEG by its magic bytes (else 40004) → ``media_id``, ``url``.
* ``POST /cgi-bin/draft/add``: ``articles`` with ``title`` (at most 32 characters),
  ``author`` (16), ``digest`` (128), ``content`` (under 20,000 characters and 1 MB) and
  ``thumb_media_id`` (a known permanent material, else 40007; :meth:`FakeWechatApi.delete_material`
  deletes one, as an officer can in the back office) → ``media_id``; a field over its
  limit answers 45003 (title), 45110 (author), 45004 (digest), 45002 (content).
  https://developers.weixin.qq.com/doc/offiaccount/Draft_Box/Add_draft.html
* ``POST /cgi-bin/freepublish/submit`` (``media_id`` of a draft) → ``publish_id``; an
  unverified account answers 48001 ("api unauthorized"). ``POST /cgi-bin/freepublish/get``
  (``publish_id``) → ``publish_status`` 1 (publishing) for ``publishing_polls`` polls, then 0
  with ``article_detail.item[].article_url``, or the configured failure status and
  ``fail_idx`` (2–4: not published, the draft stays; 5 and 6: published, then deleted or
  blocked: the draft left the draft box when it was published). A published draft leaves
  the draft box. ``publishing_polls`` may be None: it stays "publishing" for ever.
  https://developers.weixin.qq.com/doc/offiaccount/Publish/Publish.html and
  https://developers.weixin.qq.com/doc/offiaccount/Publish/Get_status.html

Faults (:meth:`FakeWechatApi.fail`): 5xx, ``errcode -1`` (busy), a connection dropped before
or *after* the request took effect (the answer is lost), garbage instead of JSON, and a slow
answer (the window in which a crash test kills the client).

    with FakeWechatApi() as api:
        settings = settings.with_env(DALABA_WECHAT_API_URL=api.base_url)
        api.fail(Fault.DROP_AFTER, path="/cgi-bin/draft/add")
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import json
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["APP_ID", "APP_SECRET", "Fault", "FakeWechatApi"]

APP_ID = "wx0123456789abcdef"
APP_SECRET = "0123456789abcdef0123456789abcdef"
TOKEN_TTL = 7200
STABLE_RENEW = 300  # normal mode hands out a new stable token in its last five minutes
FORCED_PER_DAY = 20
LIMITS = {"title": (32, 45003), "author": (16, 45110), "digest": (128, 45004)}
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"


class Fault(enum.Enum):
    """A failure injected into the next matching requests."""

    SERVER_ERROR = "500"
    """Answer 500 (nothing done)."""
    BUSY = "busy"
    """Answer ``{"errcode": -1, "errmsg": "system error"}`` (nothing done)."""
    DROP_BEFORE = "drop-before"
    """Close the connection without doing anything or answering."""
    DROP_AFTER = "drop-after"
    """Do the work (a draft is created …), then close the connection: the answer is lost."""
    GARBAGE = "garbage"
    """Do the work, then answer 200 with something that is not JSON."""
    SLOW = "slow"
    """Do the work, then answer after :attr:`FakeWechatApi.slow_seconds` (a crash test's window)."""


@dataclass
class Draft:
    media_id: str
    articles: list[dict[str, Any]]
    raw: bytes


@dataclass
class Publish:
    publish_id: str
    media_id: str
    polls: int = 0


@dataclass
class _Fault:
    fault: Fault
    times: int
    path: str | None


@dataclass
class State:
    tokens: dict[str, float] = field(default_factory=dict)  # token → expiry (clock seconds)
    stable: str | None = None
    token_fetches: int = 0
    forced: int = 0
    materials: dict[str, bytes] = field(default_factory=dict)
    drafts: dict[str, Draft] = field(default_factory=dict)  # every draft ever made
    draft_box: set[str] = field(default_factory=set)  # those still in the draft box
    publishes: dict[str, Publish] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)


class FakeWechatApi:
    """The server; ``clock`` (seconds) decides token expiry, so tests move time, not sleep."""

    def __init__(
        self,
        *,
        verified: bool = True,
        daily_token_quota: int = 2000,
        publishing_polls: int | None = 1,
        publish_failure: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verified = verified
        self.draft_api = True  # False: draft/add answers 48001 (no permission for the API)
        self.daily_token_quota = daily_token_quota
        self.publishing_polls: int | None = publishing_polls
        self.publish_failure = publish_failure
        self.ip_blocked = False
        self.slow_seconds = 30.0
        self.clock = clock
        self.state = State()
        self._faults: list[_Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeWechatApi:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- controls ------------------------------------------------------------------------

    def fail(self, fault: Fault, times: int = 1, path: str | None = None) -> None:
        with self._lock:
            self._faults.append(_Fault(fault, times, path))

    def invalidate_tokens(self) -> None:
        """Every token issued so far stops working (as after a fetch elsewhere): 40001."""
        with self._lock:
            self.state.tokens.clear()
            self.state.stable = None

    def delete_material(self, media_id: str) -> None:
        """An officer deleted the image in the back office: its id answers 40007 from now on."""
        with self._lock:
            self.state.materials.pop(media_id, None)

    def calls(self, path: str) -> int:
        return sum(1 for p, _, _ in self.state.requests if p == path)

    # -- the server side -----------------------------------------------------------------

    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.path in (None, path) and f.times > 0:
                    f.times -= 1
                    if f.times == 0:
                        self._faults.remove(f)
                    return f.fault
        return None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}_{secrets.token_hex(6)}"

    def _issue(self) -> tuple[str, int]:
        token = "ACCESS_" + secrets.token_urlsafe(24)
        self.state.tokens[token] = self.clock() + TOKEN_TTL
        return token, TOKEN_TTL

    def handle(
        self, method: str, path: str, query: dict[str, str], body: bytes, ctype: str
    ) -> dict[str, Any]:
        with self._lock:
            self.state.requests.append((path, query, body))
            if path in ("/cgi-bin/stable_token", "/cgi-bin/token"):
                return self._token(path, query, body)
            token = query.get("access_token")
            if not token:
                return _err(41001, "access_token missing")
            expiry = self.state.tokens.get(token)
            if expiry is None:
                return _err(40001, "invalid credential, access_token is invalid or not latest")
            if expiry <= self.clock():
                return _err(42001, "access_token expired")
            handler = {
                "/cgi-bin/material/add_material": self._material,
                "/cgi-bin/draft/add": self._draft,
                "/cgi-bin/freepublish/submit": self._submit,
                "/cgi-bin/freepublish/get": self._get,
            }.get(path)
            if handler is None:
                return _err(40066, "invalid url")
            return handler(query, body, ctype)

    def _token(self, path: str, query: dict[str, str], body: bytes) -> dict[str, Any]:
        if path == "/cgi-bin/stable_token":
            try:
                req = json.loads(body)
            except ValueError:
                return _err(47001, "data format error")
            appid, secret, force = (
                req.get("appid"),
                req.get("secret"),
                bool(req.get("force_refresh")),
            )
        else:
            appid, secret, force = query.get("appid"), query.get("secret"), True
        if appid != APP_ID:
            return _err(40013, "invalid appid")
        if secret != APP_SECRET:
            return _err(40125, "invalid appsecret")
        if self.ip_blocked:
            return _err(40164, "invalid ip 203.0.113.7, not in whitelist")
        if self.state.token_fetches >= self.daily_token_quota:
            return _err(45009, "reach max api daily quota limit")
        if path == "/cgi-bin/stable_token" and force and self.state.forced >= FORCED_PER_DAY:
            return _err(45009, "reach max api daily quota limit, force_refresh")
        self.state.token_fetches += 1
        stable = self.state.stable
        if path == "/cgi-bin/stable_token" and not force and stable in self.state.tokens:
            left = int(self.state.tokens[stable] - self.clock())
            if left > STABLE_RENEW:
                return {"access_token": stable, "expires_in": left}
            if left > 0:
                # Its last minutes: a new stable token; the old one lives out its time.
                token, ttl = self._issue()
                self.state.stable = token
                return {"access_token": token, "expires_in": ttl}
        token, ttl = self._issue()
        if path == "/cgi-bin/stable_token":
            if force:
                self.state.forced += 1
            if stable is not None:
                self.state.tokens.pop(stable, None)
            self.state.stable = token
        return {"access_token": token, "expires_in": ttl}

    def _material(self, query: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
        if query.get("type") != "image":
            return _err(40004, "invalid media type")
        data = _multipart_file(body, ctype, "media")
        if data is None:
            return _err(41005, "media data missing")
        if not (data.startswith(PNG) or data.startswith(JPEG)):
            return _err(40004, "invalid media type")
        media_id = self._new_id("MAT")
        self.state.materials[media_id] = data
        return {"media_id": media_id, "url": f"http://mmbiz.qpic.cn/{media_id}/0"}

    def _draft(self, query: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
        if not self.draft_api:
            return _err(48001, "api unauthorized")
        try:
            articles = json.loads(body.decode("utf-8"))["articles"]
        except (ValueError, KeyError, UnicodeDecodeError):
            return _err(47001, "data format error")
        for a in articles:
            if not a.get("title") or not a.get("content"):
                return _err(44004, "empty content")
            for key, (limit, code) in LIMITS.items():
                if len(str(a.get(key) or "")) > limit:
                    return _err(code, f"{key} size out of limit")
            content = str(a["content"])
            if len(content) >= 20_000 or len(content.encode()) >= 1024 * 1024:
                return _err(45002, "content size out of limit")
            if a.get("thumb_media_id") not in self.state.materials:
                return _err(40007, "invalid media_id")
        media_id = self._new_id("DRAFT")
        self.state.drafts[media_id] = Draft(media_id, articles, body)
        self.state.draft_box.add(media_id)
        return {"media_id": media_id}

    def _submit(self, query: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
        if not self.verified:
            return _err(48001, "api unauthorized")
        media_id = json.loads(body).get("media_id")
        if media_id not in self.state.draft_box:
            return _err(40007, "invalid media_id")
        publish_id = str(100000000 + next(self._ids))
        self.state.publishes[publish_id] = Publish(publish_id, media_id)
        return {"errcode": 0, "errmsg": "ok", "publish_id": publish_id, "msg_data_id": 2247483000}

    def _get(self, query: dict[str, str], body: bytes, ctype: str) -> dict[str, Any]:
        publish = self.state.publishes.get(str(json.loads(body).get("publish_id")))
        if publish is None:
            return _err(40007, "invalid publish_id")
        publish.polls += 1
        base = {"publish_id": publish.publish_id}
        if self.publishing_polls is None or publish.polls <= self.publishing_polls:
            return {**base, "publish_status": 1}
        if self.publish_failure in (2, 3, 4):
            return {**base, "publish_status": self.publish_failure, "fail_idx": [1]}
        # Published (0), possibly then deleted (5) or blocked (6): out of the draft box.
        self.state.draft_box.discard(publish.media_id)
        if self.publish_failure is not None:
            return {**base, "publish_status": self.publish_failure, "fail_idx": []}
        return {
            **base,
            "publish_status": 0,
            "article_id": f"ART_{publish.publish_id}",
            "article_detail": {
                "count": 1,
                "item": [
                    {"idx": 1, "article_url": f"https://mp.weixin.qq.com/s/{publish.publish_id}"}
                ],
            },
            "fail_idx": [],
        }


def _err(errcode: int, errmsg: str) -> dict[str, Any]:
    return {"errcode": errcode, "errmsg": f"{errmsg} rid: {secrets.token_hex(4)}"}


def _multipart_file(body: bytes, ctype: str, name: str) -> bytes | None:
    match = re.search(r"boundary=([^;]+)", ctype)
    if not match:
        return None
    boundary = b"--" + match.group(1).strip('"').encode()
    for part in body.split(boundary):
        head, sep, data = part.partition(b"\r\n\r\n")
        if sep and f'name="{name}"'.encode() in head:
            return data[:-2] if data.endswith(b"\r\n") else data
    return None


def _handler(api: FakeWechatApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def _serve(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            fault = api._take_fault(url.path)
            if fault is Fault.DROP_BEFORE:
                self._drop()
                return
            if fault is Fault.SERVER_ERROR:
                self._send(500, b"<html>502 Bad Gateway</html>", "text/html")
                return
            if fault is Fault.BUSY:
                self._send(200, json.dumps(_err(-1, "system error")).encode())
                return
            answer = api.handle(
                self.command, url.path, query, body, self.headers.get("Content-Type", "")
            )
            if "errcode" in answer and answer["errcode"] != 0:
                api.state.refused.append((url.path, answer["errcode"]))
            if fault is Fault.DROP_AFTER:
                self._drop()
                return
            if fault is Fault.SLOW:
                time.sleep(api.slow_seconds)
            if fault is Fault.GARBAGE:
                self._send(200, b"<html>\xff not json")
                return
            self._send(200, json.dumps(answer, ensure_ascii=False).encode("utf-8"))

        def _send(
            self, status: int, data: bytes, ctype: str = "application/json; encoding=utf-8"
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        do_GET = _serve
        do_POST = _serve

    return Handler
