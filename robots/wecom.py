"""WeCom (企业微信) group robots: ``POST …/cgi-bin/webhook/send?key=KEY``.

A notice goes out as ``text`` split at sentence ends within 2,048 UTF-8 bytes per message,
or, when it has a share page link, as ``markdown`` (4,096 bytes) with the title in bold and
the link last. Then the voice: the clip is converted to AMR-NB (8 kHz mono,
``libopencore_amrnb`` from the imageio-ffmpeg build) and the converted file is measured
(https://developer.work.weixin.qq.com/document/path/91770: voice AMR at most 60 s and
2 MB); one that fits is uploaded with
``…/webhook/upload_media?key=KEY&type=voice`` (multipart field ``media``) and sent as
``voice``; a longer (or larger) one is uploaded as an MP3 ``file`` and sent as ``file``.

Limit: 20 messages a minute per robot. Answers: ``errcode`` 0 is success; 45009 (too fast)
waits and sends again; 93000 and the rest of the 930xx family (invalid, deleted or disabled
webhook) deactivate the chat with the reason; anything else fails the delivery at once
with the platform's ``errmsg``.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, urlencode, urlsplit, urlunsplit

from cms.channels import ChatUnavailable, Notice, PermanentFailure
from cms.services.errors import N_, Message
from cms.settings import Settings
from robots.address import Shape, robot_plugin
from robots.base import (
    Part,
    RobotChannel,
    Throttled,
    VoiceUnusable,
    Window,
    errmsg,
    post_file,
    post_json,
    refusal,
)
from robots.base import split_text as split_text
from robots.keys import webhook_of

if TYPE_CHECKING:
    from audio.master import MasteringProfile

__all__ = [
    "amr_seconds",
    "converted",
    "TEXT_BYTES",
    "MARKDOWN_BYTES",
    "VOICE_SECONDS",
    "WeComChannel",
    "from_settings",
    "plugin",
]

PLATFORM = "wecom"
TEXT_BYTES = 2048
MARKDOWN_BYTES = 4096
VOICE_SECONDS = 60.0
VOICE_BYTES = 2 * 1024 * 1024
SOURCE_SLACK = 2.0
"""A source up to this much over 60 s is converted and measured (its AMR may still fit);
a longer one goes as an MP3 file without converting it to AMR first."""
THROTTLED = 45009
AMR_MAGIC = b"#!AMR\n"
# AMR-NB frame sizes in bytes (without the 1-byte header) by frame type; 20 ms per frame.
_AMR_SIZES = (12, 13, 15, 17, 19, 20, 26, 31, 5, 0, 0, 0, 0, 0, 0, 0)


_KEY = re.compile(r"[A-Za-z0-9\-]{8,64}")


def from_settings(settings: Settings) -> WeComChannel:
    """The channel factory (robots are configured per chat, not in settings)."""
    return WeComChannel()


def _key(parts: SplitResult, netloc: str) -> tuple[str, str] | None:
    token = parse_qs(parts.query).get("key", [""])[0]
    if parts.path != "/cgi-bin/webhook/send" or not _KEY.fullmatch(token):
        return None
    return token, urlunsplit((parts.scheme, netloc, parts.path, urlencode({"key": token}), ""))


SHAPE = Shape(
    label=N_("企业微信"),
    hosts=frozenset({"qyapi.weixin.qq.com"}),
    key=_key,
    shape_error=N_(
        "企业微信机器人地址应形如 https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…，请在群机器人的资料页复制完整地址"
    ),
    secret_error=lambda _secret: N_("企业微信群机器人没有签名密钥，请留空"),
)


def upload_url(webhook_url: str, media_type: str) -> str:
    """``…/webhook/send?key=K`` → ``…/webhook/upload_media?key=K&type=voice``."""
    parts = urlsplit(webhook_url)
    key = parse_qs(parts.query).get("key", [""])[0]
    path = parts.path.rsplit("/", 1)[0] + "/upload_media"
    return urlunsplit(
        (parts.scheme, parts.netloc, path, urlencode({"key": key, "type": media_type}), "")
    )


class WeComChannel(RobotChannel):
    platform = PLATFORM
    name = N_("企业微信")
    windows = (Window(20, 60.0),)

    def plan(self, notice: Notice) -> list[Part]:
        parts: list[Part] = []
        if notice.link:
            head = f"**{notice.title}**\n"
            tail = f"\n[收听语音]({notice.link})"
            pieces = split_text(
                notice.text,
                MARKDOWN_BYTES - len(tail.encode()),
                MARKDOWN_BYTES - len(head.encode()) - len(tail.encode()),
            )
            for i, piece in enumerate(pieces):
                content = (head if i == 0 else "") + piece + (tail if i == len(pieces) - 1 else "")
                parts.append(
                    Part("markdown", {"msgtype": "markdown", "markdown": {"content": content}})
                )
        else:
            head = f"【{notice.title}】\n"
            for i, piece in enumerate(
                split_text(notice.text, TEXT_BYTES, TEXT_BYTES - len(head.encode()))
            ):
                content = (head if i == 0 else "") + piece
                parts.append(Part("text", {"msgtype": "text", "text": {"content": content}}))
        if notice.voice_path is not None:
            duration = notice.voice_duration
            if duration is None:
                duration = _measure(notice.voice_path)
            kind = "file"
            if duration <= VOICE_SECONDS + SOURCE_SLACK:
                # The limit is on the voice message WeCom gets: measure the AMR itself (its
                # frames can make it longer than the source), and its size.
                amr = converted(notice.voice_path, "amr")
                seconds = amr_seconds(amr)
                if seconds is not None and seconds <= VOICE_SECONDS and len(amr) <= VOICE_BYTES:
                    kind, duration = "voice", seconds
            parts.append(Part(kind, path=notice.voice_path, duration=duration))
        return parts

    def deliver_part(self, notice: Notice, part: Part) -> None:
        body = part.body
        if part.kind in ("voice", "file"):
            assert part.path is not None
            media_id = self._upload(notice, part.kind, part.path, notice.title)
            body = {"msgtype": part.kind, part.kind: {"media_id": media_id}}
        _check(post_json(webhook_of(notice), body).body)

    def _upload(self, notice: Notice, kind: str, path: Path, title: str) -> str:
        if kind == "voice":
            data, filename, mime = converted(path, "amr"), "notice.amr", "audio/amr"
        else:
            data, filename, mime = converted(path, "mp3"), f"{_safe(title)}.mp3", "audio/mpeg"
        answer = post_file(upload_url(webhook_of(notice), kind), "media", filename, data, mime)
        _check(answer.body)
        media_id = answer.body.get("media_id")
        if not media_id:
            raise PermanentFailure(Message(N_("企业微信上传语音后没有返回 media_id")))
        return str(media_id)


def _check(body: dict[str, Any]) -> None:
    code = body.get("errcode")
    if code == 0:
        return
    said = refusal(code, errmsg(body, "errmsg"))
    if code == THROTTLED:
        raise Throttled(Message(N_("{code} {message}"), said))
    if isinstance(code, int) and 93000 <= code <= 93099:
        raise ChatUnavailable(
            Message(N_("企业微信机器人 webhook 已失效或被删除（{code}：{message}）"), said)
        )
    raise PermanentFailure(Message(N_("企业微信拒绝了消息（{code}：{message}）"), said))


_CONVERTED: OrderedDict[tuple[str, str, int, int], bytes] = OrderedDict()
_CONVERTED_LOCK = threading.Lock()
CONVERTED_KEEP = 4
"""Converted clips kept in memory: one notice goes to many robots, converted once."""


def converted(path: Path, form: str) -> bytes:
    """``path`` as AMR (``form`` "amr") or MP3 ("mp3"), converted once per version of the file.

    One notice goes to every robot of its area: without this, each robot's voice message
    would run ffmpeg again on the same clip. The file's size and modification time are part
    of the key, so a re-rendered clip is converted again.
    """
    stat = path.stat()
    key = (str(path), form, stat.st_mtime_ns, stat.st_size)
    with _CONVERTED_LOCK:
        data = _CONVERTED.get(key)
        if data is not None:
            _CONVERTED.move_to_end(key)
            return data
    data = to_amr(path) if form == "amr" else to_mp3(path)
    with _CONVERTED_LOCK:
        _CONVERTED[key] = data
        while len(_CONVERTED) > CONVERTED_KEEP:
            _CONVERTED.popitem(last=False)
    return data


def amr_seconds(data: bytes) -> float | None:
    """The length of an AMR-NB file (20 ms a frame, RFC 4867 §5), None when it is not one."""
    if not data.startswith(AMR_MAGIC):
        return None
    pos, frames = len(AMR_MAGIC), 0
    while pos < len(data):
        pos += 1 + _AMR_SIZES[(data[pos] >> 3) & 0x0F]
        frames += 1
    return frames * 0.02


def _safe(title: str) -> str:
    return "".join(ch for ch in title if ch.isalnum() or ch in "-_ ").strip()[:40] or "notice"


def to_amr(source: Path) -> bytes:
    """AMR-NB, 8 kHz mono, 12.2 kbit/s (what WeCom plays as a voice message), held to the
    phone's loudness target and true-peak ceiling like every other file."""
    from audio.master import AMR_NB_VOICE

    return _remaster(source, AMR_NB_VOICE)


def to_mp3(source: Path) -> bytes:
    """A mono MP3 for clips longer than a voice message may be, held to the phone targets."""
    from audio.master import MP3_PHONE_FILE

    return _remaster(source, MP3_PHONE_FILE)


def _remaster(source: Path, spec: MasteringProfile) -> bytes:
    from audio.errors import AudioError
    from audio.master import master

    with tempfile.TemporaryDirectory(prefix="dalaba-wecom-") as tmp:
        out = Path(tmp) / f"out{spec.suffix}"
        try:
            master(source, out, spec)
        except AudioError as exc:
            raise VoiceUnusable(
                Message(N_("音频转换失败：{detail}"), {"detail": str(exc)})
            ) from exc
        return out.read_bytes()


def _measure(path: Path) -> float:
    from audio.master import ogg_opus_duration

    return ogg_opus_duration(path)


plugin = robot_plugin(
    PLATFORM,
    SHAPE,
    from_settings,
    hint=N_(
        "企业微信：在群聊右上角“…”→“群机器人”→“添加机器人”，新建后复制它的 Webhook 地址"
        "（https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=…）。企业微信机器人没有签名密钥。"
    ),
    order=10,
)
"""The ``dalaba.channels`` entry point: a robot is bound by its webhook address."""
