"""One HTTP request to the Official Account API, its failures mapped to the publisher errors.

Plain ``http.client``: it logs nothing (the access token rides in the query string, as the
platform requires), and it tells a connection that never opened (safe to retry) from one
that broke after the request went out (the answer is lost).
"""

from __future__ import annotations

import http.client
import json
import secrets
import socket
from typing import Any
from urllib.parse import urlencode, urlsplit

from cms.publishers import NotVerified, PublishLost, PublishRefused, PublishRetry
from cms.services.errors import N_, Message

TIMEOUT_S = 20.0

BUSY = N_("公众号系统繁忙，稍后重试")
UNREACHABLE = N_("无法连接公众号接口（{reason}），稍后重试")
LOST_ANSWER = N_(
    "请求已发出但公众号接口没有回答（{reason}），可能已经生效：请到公众号后台查看草稿箱和发表记录，再决定是否重试"
)
HTTP_ERROR = N_("公众号接口暂时不可用（HTTP {status}），稍后重试")
GARBLED = N_("公众号接口的回答无法识别，稍后重试")
QUOTA = N_("公众号接口今天的调用次数已用完（{errcode}），明天自动重试")
BAD_APPID = N_("公众号 AppID 不正确，请在 管理 → 微信公众号 中检查")
BAD_SECRET = N_("公众号 AppSecret 不正确或已重置，请在 管理 → 微信公众号 中重新填写")
IP_BLOCKED = N_(
    "本机的公网 IP 不在公众号的 IP 白名单中：请在公众号后台 设置与开发 → 基本配置 中添加"
)
NOT_VERIFIED = N_("公众号未认证，无法通过接口发布；草稿已保存在公众号后台，请在公众号后台手动发布")
DRAFT_UNAUTHORIZED = N_(
    "公众号接口没有权限（48001，创建草稿时）：草稿没有保存。请确认公众号已认证并开通了草稿箱接口权限"
)
COVER_UNAUTHORIZED = N_(
    "公众号接口没有权限（48001，上传封面图片时）：草稿没有保存。请确认公众号已认证并开通了素材管理接口权限"
)
MEDIA_UNKNOWN = N_("公众号不认识这个素材 ID（40007，可能已在公众号后台删除）")
REFUSED = N_("公众号接口拒绝了请求：{errcode} {errmsg}")
TOKEN_REFUSED = N_("公众号接口不接受访问令牌（{errcode}），已重新获取一次仍失败，稍后重试")

TOKEN_ERRORS = frozenset({40001, 40014, 42001})
QUOTA_ERRORS = frozenset({45009, 45011})


class MediaUnknown(PublishRefused):
    """40007: a media id the platform does not know (e.g. deleted in the back office)."""


class TokenRejected(Exception):
    """The access token was refused (invalid or expired): fetch a new one and try once more."""

    def __init__(self, errcode: int) -> None:
        super().__init__(errcode)
        self.errcode = errcode


class Api:
    """The Official Account API at ``base_url`` (``https://api.weixin.qq.com`` or a proxy)."""

    def __init__(self, base_url: str, timeout: float = TIMEOUT_S) -> None:
        parts = urlsplit(base_url)
        self.https = parts.scheme == "https"
        self.host = parts.hostname or ""
        self.port = parts.port
        self.prefix = parts.path.rstrip("/")
        self.timeout = timeout

    def _connection(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes | None = None,
        content_type: str = "application/json; charset=utf-8",
        *,
        repeatable: bool,
        hide: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Send one request; returns the decoded JSON answer with ``errcode`` 0 (or none).

        ``repeatable``: whether sending it twice is harmless; if not, a broken answer raises
        :class:`PublishLost` instead of :class:`PublishRetry`. ``hide``: credentials that
        must not appear in any message (the platform's ``errmsg`` is shown to officers).

        Raises:
            TokenRejected: 40001/40014/42001.
            PublishRetry, PublishLost, PublishRefused, NotVerified: see :mod:`cms.publishers`.
        """
        url = self.prefix + path + (f"?{urlencode(query)}" if query else "")
        conn = self._connection()
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise PublishRetry(Message(UNREACHABLE, {"reason": _reason(exc)})) from None
            try:
                headers = {"Content-Type": content_type} if body is not None else {}
                conn.request(method, url, body=body, headers=headers)
                response = conn.getresponse()
                status, raw = response.status, response.read()
            except (OSError, http.client.HTTPException) as exc:
                reason = _reason(exc)
                if repeatable:
                    raise PublishRetry(Message(UNREACHABLE, {"reason": reason})) from None
                raise PublishLost(Message(LOST_ANSWER, {"reason": reason})) from None
        finally:
            conn.close()
        if status >= 500:
            raise PublishRetry(Message(HTTP_ERROR, {"status": status}))
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            if status >= 400 or repeatable:
                raise PublishRetry(
                    Message(HTTP_ERROR if status >= 400 else GARBLED, {"status": status})
                ) from None
            raise PublishLost(Message(LOST_ANSWER, {"reason": "garbled answer"})) from None
        check(data, hide, path)
        return data


def check(data: dict[str, Any], hide: tuple[str, ...] = (), path: str = "") -> None:
    """Raise the error an answer's ``errcode`` stands for (0 or none: nothing).

    ``path``: the endpoint that answered; 48001 (no permission for this API) means another
    thing for the officer at each step: before ``draft/add`` succeeded no draft exists.
    """
    try:
        errcode = int(data.get("errcode") or 0)
    except (TypeError, ValueError):
        errcode = -1
    if errcode == 0:
        return
    if errcode in TOKEN_ERRORS:
        raise TokenRejected(errcode)
    if errcode == -1:
        raise PublishRetry(Message(BUSY), retry_after=60)
    if errcode in QUOTA_ERRORS:
        raise PublishRetry(Message(QUOTA, {"errcode": errcode}), retry_after=3600)
    if errcode == 40013:
        raise PublishRefused(Message(BAD_APPID))
    if errcode in (40125, 41004):
        raise PublishRefused(Message(BAD_SECRET))
    if errcode == 40164 or errcode == 61004:
        raise PublishRefused(Message(IP_BLOCKED))
    if errcode == 48001:
        if path.endswith("/draft/add"):
            raise PublishRefused(Message(DRAFT_UNAUTHORIZED))
        if path.endswith("/material/add_material"):
            raise PublishRefused(Message(COVER_UNAUTHORIZED))
        raise NotVerified(Message(NOT_VERIFIED))
    if errcode == 40007:
        raise MediaUnknown(Message(MEDIA_UNKNOWN))
    errmsg = str(data.get("errmsg") or "")[:300]
    for secret in hide:
        if secret:
            errmsg = errmsg.replace(secret, "***")
    raise PublishRefused(Message(REFUSED, {"errcode": errcode, "errmsg": errmsg}))


def _reason(exc: BaseException) -> str:
    # The class name only: some exception texts carry the address, and with it the token.
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timeout"
    return type(exc).__name__


def multipart(field: str, filename: str, content_type: str, data: bytes) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with one file; returns it and its content type."""
    boundary = "----dalaba" + secrets.token_hex(12)
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return (
        head + data + f"\r\n--{boundary}--\r\n".encode(),
        f"multipart/form-data; boundary={boundary}",
    )
