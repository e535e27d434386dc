"""Feishu / Lark (飞书) custom bots: ``POST …/open-apis/bot/v2/hook/TOKEN``.

Signed when the bot has a secret ("签名校验"): the sign is HMAC-SHA256 keyed with
``timestamp + "\\n" + secret`` over an empty message, Base64; ``timestamp`` (seconds) and
``sign`` go in the JSON body. A notice goes out as a rich-text ``post`` with the title, the
text and a "收听" link to the share page; each request body stays under 20 KB (a long text
is split at sentence ends).

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
import time
from typing import Any

from cms.channels import ChatUnavailable, Notice, PermanentFailure
from cms.settings import Settings
from robots.base import Part, RobotChannel, Throttled, Window, errmsg, post_json, split_text

__all__ = ["FeishuChannel", "from_settings", "sign"]

PLATFORM = "feishu"
BODY_BYTES = 20 * 1024
TEXT_BYTES = 15_000  # the text of one post; the JSON around it stays well under 20 KB
THROTTLED = 9499
# Feishu's own flow-control answer for a custom bot over 5/s or 100/min.
FREQUENCY_LIMITED = 11232
SIGN_MISMATCH = 19021
IP_REFUSED = 19022
KEYWORD_MISSING = 19024
GONE = {19001}


def from_settings(settings: Settings) -> FeishuChannel:
    """The ``dalaba.channels`` factory (robots are configured per chat, not in settings)."""
    return FeishuChannel()


def sign(secret: str, timestamp: int) -> str:
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


class FeishuChannel(RobotChannel):
    platform = PLATFORM
    name = "飞书"
    windows = (Window(5, 1.0), Window(100, 60.0))

    def plan(self, notice: Notice) -> list[Part]:
        pieces = split_text(notice.text, TEXT_BYTES)
        parts = []
        for i, piece in enumerate(pieces):
            title = notice.title if i == 0 else f"{notice.title}（续）"
            content: list[list[dict[str, str]]] = [
                [{"tag": "text", "text": line}] for line in piece.split("\n") if line.strip()
            ]
            if notice.link and i == len(pieces) - 1:
                content.append([{"tag": "a", "text": "收听", "href": notice.link}])
            body = {
                "msg_type": "post",
                "content": {"post": {"zh_cn": {"title": title, "content": content}}},
            }
            if len(json.dumps(body, ensure_ascii=False).encode()) >= BODY_BYTES - 200:
                # Only a title of thousands of characters gets here: the text is split above.
                raise PermanentFailure("通知标题太长，飞书消息不能超过 20 KB")
            parts.append(Part("post", body))
        return parts

    def deliver_part(self, notice: Notice, part: Part) -> None:
        assert notice.webhook_url is not None
        body = dict(part.body)
        if notice.secret:
            timestamp = int(time.time())
            body.update(timestamp=str(timestamp), sign=sign(notice.secret, timestamp))
        _check(post_json(notice.webhook_url, body).body)


def _check(body: dict[str, Any]) -> None:
    code = body.get("code", body.get("StatusCode"))
    if code == 0:
        return
    message = errmsg(body, "msg", "StatusMessage") or "（无说明）"
    if code == FREQUENCY_LIMITED or (
        code == THROTTLED and ("too many" in message.lower() or "frequen" in message.lower())
    ):
        # 9499 also answers malformed requests ("Bad Request"): only "too many" waits.
        raise Throttled(f"{code} {message}")
    if code in GONE:
        raise ChatUnavailable(f"飞书机器人的 webhook 已失效或被删除（{code}：{message}）")
    if code == SIGN_MISMATCH:
        raise PermanentFailure(
            "飞书机器人的签名校验失败：请把机器人安全设置里“签名校验”的密钥重新复制到 dalaba，"
            f"并检查电脑时间是否准确（{code}：{message}）"
        )
    if code == IP_REFUSED:
        raise PermanentFailure(
            f"本机的公网 IP 不在飞书机器人的 IP 白名单里，请在安全设置里加上它（{code}：{message}）"
        )
    if code == KEYWORD_MISSING:
        raise PermanentFailure(
            f"消息里没有飞书机器人“自定义关键词”中的词，请改用签名校验或加上关键词（{code}：{message}）"
        )
    raise PermanentFailure(f"飞书拒绝了消息（{code}：{message}）")
