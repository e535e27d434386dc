"""Feishu / Lark (飞书) custom bots: ``POST …/open-apis/bot/v2/hook/TOKEN``.

Signed when the bot has a secret ("签名校验"): the sign is HMAC-SHA256 keyed with
``timestamp + "\\n" + secret`` over an empty message, Base64; ``timestamp`` (seconds) and
``sign`` go in the JSON body. A notice goes out as a rich-text ``post`` with the title, the
text and a "收听" link to the share page; each request body stays under 20 KB, measured on
the JSON body's bytes (a long text is split at sentence ends).

Limits: 5 messages a second and 100 a minute per bot. Answers: ``code`` 0 is success; 11232
("frequency limited", the flow control) and 9499 "too many request" wait and send again; 19021 (sign mismatch or stale timestamp), 19022
(IP not allowed) and 19024 (keyword missing) fail at once with the setting to change;
19001 (the token is gone) deactivates the chat; anything else fails with the ``msg``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from typing import Any
from urllib.parse import SplitResult, urlunsplit

from cms.channels import ChatUnavailable, Notice, PermanentFailure
from cms.services.errors import N_, Message
from cms.settings import Settings
from robots.address import Shape, robot_plugin
from robots.base import (
    Part,
    RobotChannel,
    Throttled,
    Window,
    errmsg,
    post_json,
    refusal,
    split_text,
)
from robots.keys import secret_of, webhook_of

__all__ = ["FeishuChannel", "from_settings", "plugin", "sign"]

PLATFORM = "feishu"
BODY_BYTES = 20 * 1024
"""The platform's limit on the whole request body (https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot)."""
BODY_LIMIT = BODY_BYTES - 128
"""What a post may weigh before signing: ``timestamp`` and ``sign`` add under 80 bytes."""
TEXT_BYTES = 15_000  # a first cut of the text; each piece is then weighed as JSON
THROTTLED = 9499
# Feishu's own flow-control answer for a custom bot over 5/s or 100/min.
FREQUENCY_LIMITED = 11232
SIGN_MISMATCH = 19021
IP_REFUSED = 19022
KEYWORD_MISSING = 19024
GONE = {19001}


_HOOK = re.compile(r"/open-apis/bot/v2/hook/([A-Za-z0-9\-]{8,64})")
_SECRET = re.compile(r"[A-Za-z0-9]{8,128}")


def from_settings(settings: Settings) -> FeishuChannel:
    """The channel factory (robots are configured per chat, not in settings)."""
    return FeishuChannel()


def _key(parts: SplitResult, netloc: str) -> tuple[str, str] | None:
    match = _HOOK.fullmatch(parts.path)
    if match is None or parts.query:
        return None
    return match.group(1), urlunsplit((parts.scheme, netloc, parts.path, "", ""))


SHAPE = Shape(
    label=N_("飞书"),
    hosts=frozenset({"open.feishu.cn", "open.larksuite.com"}),
    key=_key,
    shape_error=N_(
        "飞书机器人地址应形如 https://open.feishu.cn/open-apis/bot/v2/hook/…，请在机器人设置里复制完整的 webhook 地址"
    ),
    secret_error=lambda secret: (
        None
        if _SECRET.fullmatch(secret)
        else N_("飞书的签名校验密钥只含字母和数字，请在机器人安全设置处复制")
    ),
)


def sign(secret: str, timestamp: int) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuChannel(RobotChannel):
    platform = PLATFORM
    name = N_("飞书")
    windows = (Window(5, 1.0), Window(100, 60.0))

    def plan(self, notice: Notice) -> list[Part]:
        """Rich-text posts whose whole JSON body (with the sign added) stays under 20 KB:
        the limit is on the body's bytes, so a text is split on what its JSON will weigh
        (escapes and the per-line structure count too), not on the text's own bytes."""
        pieces = _fitting(notice.title, notice.text, notice.link)
        return [
            Part(
                "post",
                _post(
                    notice.title if i == 0 else f"{notice.title}（续）",
                    piece,
                    notice.link if i == len(pieces) - 1 else None,
                ),
            )
            for i, piece in enumerate(pieces)
        ]

    def deliver_part(self, notice: Notice, part: Part) -> None:
        body = dict(part.body)
        secret = secret_of(notice)
        if secret:
            timestamp = int(time.time())
            body.update(timestamp=str(timestamp), sign=sign(secret, timestamp))
        _check(post_json(webhook_of(notice), body).body)


def _post(title: str, text: str, link: str | None) -> dict[str, Any]:
    content: list[list[dict[str, str]]] = [
        [{"tag": "text", "text": line}] for line in text.split("\n") if line.strip()
    ]
    if link:
        content.append([{"tag": "a", "text": "收听", "href": link}])
    return {
        "msg_type": "post",
        "content": {"post": {"zh_cn": {"title": title, "content": content}}},
    }


def body_bytes(body: dict[str, Any]) -> int:
    """The bytes of ``body`` as sent (UTF-8 JSON without ASCII escapes, see post_json)."""
    return len(json.dumps(body, ensure_ascii=False).encode())


def _fitting(title: str, text: str, link: str | None) -> list[str]:
    """``text`` in pieces each of whose posts (the longer "（续）" title and the link
    counted for every piece) weighs at most :data:`BODY_LIMIT` bytes."""
    worst_title = f"{title}（续）"
    bare = body_bytes(_post(worst_title, "", link))
    if bare > BODY_LIMIT - 200:
        # Nothing of the text would fit: say which part is too long.
        what = (
            N_("分享链接") if link and len(link.encode()) > len(title.encode()) else N_("通知标题")
        )
        raise PermanentFailure(
            Message(
                N_("飞书消息不能超过 20 KB：{what}太长（{bytes} 字节），请缩短后再发"),
                {"what": Message(what), "bytes": bare},
            )
        )
    pieces: list[str] = []
    todo = split_text(text, TEXT_BYTES)
    while todo:
        piece = todo.pop(0)
        size = body_bytes(_post(worst_title, piece, link))
        if size <= BODY_LIMIT:
            pieces.append(piece)
            continue
        # Escapes and line structure made it heavier than its text: split it smaller, in
        # proportion to what is over, and look again.
        own = len(piece.encode())
        smaller = max(own * (BODY_LIMIT - bare) // (size - bare + 1) - 64, 256)
        todo[:0] = split_text(piece, min(smaller, own - 1))
    return pieces or [""]


def _check(body: dict[str, Any]) -> None:
    code = body.get("code", body.get("StatusCode"))
    if code == 0:
        return
    words = errmsg(body, "msg", "StatusMessage")
    said = refusal(code, words)
    lowered = words.lower()
    if code == FREQUENCY_LIMITED or (
        code == THROTTLED and ("too many" in lowered or "frequen" in lowered)
    ):
        # 9499 also answers malformed requests ("Bad Request"): only "too many" waits.
        raise Throttled(Message(N_("{code} {message}"), said))
    if code in GONE:
        raise ChatUnavailable(
            Message(N_("飞书机器人的 webhook 已失效或被删除（{code}：{message}）"), said)
        )
    if code == SIGN_MISMATCH:
        raise PermanentFailure(
            Message(
                N_(
                    "飞书机器人的签名校验失败：请把机器人安全设置里“签名校验”的密钥重新复制到 dalaba，"
                    "并检查电脑时间是否准确（{code}：{message}）"
                ),
                said,
            )
        )
    if code == IP_REFUSED:
        raise PermanentFailure(
            Message(
                N_(
                    "本机的公网 IP 不在飞书机器人的 IP 白名单里，请在安全设置里加上它（{code}：{message}）"
                ),
                said,
            )
        )
    if code == KEYWORD_MISSING:
        raise PermanentFailure(
            Message(
                N_(
                    "消息里没有飞书机器人“自定义关键词”中的词，请改用签名校验或加上关键词（{code}：{message}）"
                ),
                said,
            )
        )
    raise PermanentFailure(Message(N_("飞书拒绝了消息（{code}：{message}）"), said))


plugin = robot_plugin(
    PLATFORM,
    SHAPE,
    from_settings,
    hint=N_(
        "飞书：在群设置→“群机器人”→“添加机器人”→“自定义机器人”，开启“签名校验”，"
        "复制 webhook 地址（https://open.feishu.cn/open-apis/bot/v2/hook/…）和密钥。"
    ),
    order=30,
)
"""The ``dalaba.channels`` entry point: a robot is bound by its webhook address."""
