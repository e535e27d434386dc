"""DingTalk (钉钉) custom robots: ``POST …/robot/send?access_token=TOKEN``.

Signed when the robot has a secret ("加签"): ``timestamp`` (ms) + "\\n" + secret, HMAC-SHA256
keyed with the secret, Base64, URL-encoded, added as ``&timestamp=&sign=``. A notice goes out
as ``markdown`` with the title, the text and a link to the share page for listening (robots
cannot send audio); a very long text is split at sentence ends.

Limit: 20 messages a minute per robot (https://open.dingtalk.com/document/orgapp/custom-robots-send-group-messages).
Answers: ``errcode`` 0 is success. 130101 ("send too fast, exceed 20 times per minute") is
throttling: the platform then blocks the robot for about 10 minutes, answering every request
with an HTTP 302 redirect to a DingTalk web page. Neither posted anything: the delivery goes
back to the queue and is sent again after the 10 minutes, never failed and never "uncertain".
410100 (the older "send too fast") waits briefly and sends again; 310000 (a security setting refused it: keyword, IP allow-list,
signature or timestamp) fails at once with the setting to change; 300001/300005 (the token
is gone) and 400102 (the robot is stopped) deactivate the chat; anything else fails with the
platform's ``errmsg``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from typing import Any
from urllib.parse import SplitResult, parse_qs, quote_plus, urlencode, urlunsplit

from cms.channels import (
    ChatUnavailable,
    Notice,
    PermanentFailure,
    RateLimited,
)
from cms.services.errors import N_, Message
from cms.settings import Settings
from robots.address import Shape, robot_plugin
from robots.base import (
    Part,
    Redirected,
    RobotChannel,
    Throttled,
    Window,
    errmsg,
    post_json,
    refusal,
    split_text,
)
from robots.keys import secret_of, webhook_of

__all__ = ["DingTalkChannel", "from_settings", "plugin", "sign"]

PLATFORM = "dingtalk"
MARKDOWN_BYTES = 18_000  # the platform takes about 20,000; leave room for the title and link
THROTTLED = 410100
TOO_FAST = 130101
BLOCKED_SECONDS = 600.0
"""How long DingTalk blocks a robot after it answered "send too fast" (about 10 minutes)."""
SECURITY = 310000
GONE = {300001, 300005, 400102}


_TOKEN = re.compile(r"[A-Za-z0-9]{16,128}")
_SECRET = re.compile(r"SEC[A-Za-z0-9]{16,128}")


def from_settings(settings: Settings) -> DingTalkChannel:
    """The channel factory (robots are configured per chat, not in settings)."""
    return DingTalkChannel()


def _key(parts: SplitResult, netloc: str) -> tuple[str, str] | None:
    token = parse_qs(parts.query).get("access_token", [""])[0]
    if parts.path != "/robot/send" or not _TOKEN.fullmatch(token):
        return None
    query = urlencode({"access_token": token})
    return token, urlunsplit((parts.scheme, netloc, parts.path, query, ""))


SHAPE = Shape(
    label=N_("钉钉"),
    hosts=frozenset({"oapi.dingtalk.com"}),
    key=_key,
    shape_error=N_(
        "钉钉机器人地址应形如 https://oapi.dingtalk.com/robot/send?access_token=…，请在机器人设置里复制完整的 Webhook"
    ),
    secret_error=lambda secret: (
        None
        if _SECRET.fullmatch(secret)
        else N_("钉钉的加签密钥以 SEC 开头，请在机器人安全设置的“加签”处复制")
    ),
)


def sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value (already URL-encoded)."""
    digest = hmac.new(
        secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256
    ).digest()
    return quote_plus(base64.b64encode(digest).decode())


def signed_url(webhook_url: str, secret: str | None, now: float | None = None) -> str:
    if not secret:
        return webhook_url
    timestamp = int((time.time() if now is None else now) * 1000)
    return f"{webhook_url}&timestamp={timestamp}&sign={sign(secret, timestamp)}"


class DingTalkChannel(RobotChannel):
    platform = PLATFORM
    name = N_("钉钉")
    windows = (Window(20, 60.0),)

    def plan(self, notice: Notice) -> list[Part]:
        tail = f"\n\n[收听语音]({notice.link})" if notice.link else ""
        pieces = split_text(notice.text, MARKDOWN_BYTES)
        parts = []
        for i, piece in enumerate(pieces):
            title = notice.title if i == 0 else f"{notice.title}（续）"
            text = f"#### {title}\n\n{piece}" + (tail if i == len(pieces) - 1 else "")
            parts.append(
                Part(
                    "markdown", {"msgtype": "markdown", "markdown": {"title": title, "text": text}}
                )
            )
        return parts

    def deliver_part(self, notice: Notice, part: Part) -> None:
        try:
            answer = post_json(signed_url(webhook_of(notice), secret_of(notice)), part.body)
        except Redirected as exc:
            raise RateLimited(
                Message(
                    N_(
                        "钉钉机器人发送太频繁，被暂时限制（{detail}）：没有发出，{minutes:.0f} 分钟后自动重发"
                    ),
                    {"detail": exc.message, "minutes": BLOCKED_SECONDS / 60},
                ),
                retry_after=BLOCKED_SECONDS,
            ) from exc
        _check(answer.body)


def _check(body: dict[str, Any]) -> None:
    code = body.get("errcode")
    if code == 0:
        return
    words = errmsg(body, "errmsg")
    said = refusal(code, words)
    if code == TOO_FAST:
        raise RateLimited(
            Message(
                N_(
                    "钉钉机器人发送太频繁（{code}：{message}）：没有发出，{minutes:.0f} 分钟后自动重发"
                ),
                {**said, "minutes": BLOCKED_SECONDS / 60},
            ),
            retry_after=BLOCKED_SECONDS,
        )
    if code == THROTTLED:
        raise Throttled(Message(N_("{code} {message}"), said))
    if code in GONE:
        raise ChatUnavailable(Message(N_("钉钉机器人已被删除或停用（{code}：{message}）"), said))
    if code == SECURITY:
        raise PermanentFailure(
            Message(
                N_("钉钉机器人的安全设置拒绝了消息：{advice}（{message}）"),
                {**said, "advice": Message(_advice(words))},
            )
        )
    raise PermanentFailure(Message(N_("钉钉拒绝了消息（{code}：{message}）"), said))


def _advice(message: str) -> str:
    """What to change in the robot's security settings (a message id)."""
    lowered = message.lower()
    if "keyword" in lowered:
        return N_(
            "消息里没有机器人“自定义关键词”中的词，请在钉钉群机器人的安全设置里改用“加签”或加上关键词"
        )
    if "ip" in lowered and ("whitelist" in lowered or "white" in lowered or "not in" in lowered):
        return N_(
            "本机的公网 IP 不在机器人的“IP 地址（段）”白名单里，请在安全设置里加上它或改用“加签”"
        )
    if "sign" in lowered or "timestamp" in lowered:
        return N_(
            "签名不对：请把机器人安全设置里“加签”的密钥（SEC 开头）重新复制到 dalaba，并检查电脑时间是否准确"
        )
    return N_("请检查钉钉群机器人的安全设置")


plugin = robot_plugin(
    PLATFORM,
    SHAPE,
    from_settings,
    hint=N_(
        "钉钉：在群设置→“机器人”→“添加机器人”→“自定义”，安全设置选“加签”，"
        "复制以 SEC 开头的密钥和 Webhook 地址（https://oapi.dingtalk.com/robot/send?access_token=…）。"
    ),
    order=20,
)
"""The ``dalaba.channels`` entry point: a robot is bound by its webhook address."""
