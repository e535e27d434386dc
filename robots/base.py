"""What the three robot channels share: one HTTP client, per-robot limits, the send loop.

Duplicates policy (as for Telegram, see :mod:`bot.channel`). Robot webhooks have no
idempotency key. A request whose answer is lost after it was written (read timeout, reset,
an answer that is not JSON) raises :class:`~cms.channels.OutcomeUnknown`: the delivery is
"uncertain" and never retried by itself. A request that never got out (connect errors) or
that the platform refused (throttled, 5xx) was not posted and is retried. Each part is
reported through ``progress`` as soon as the platform accepts it and a resumed delivery
skips the parts in ``notice.sent_ids``.

Limits. Each robot (one webhook) has its own sliding windows, e.g. 20 messages a minute;
a send waits for its robot's window only, under that robot's lock, so one robot's messages
go out in order and a busy robot never delays another (the dispatcher runs chats side by
side). A slot is recorded when the platform's answer arrives, so the platform, which counts
on arrival, never sees more than the limit in any window. A "too fast" answer anyway (the
platform counted messages we did not send) waits 1/20 of the window and asks again, doubling
the pause each time, up to one window.

Secrets. Webhook keys/tokens and signing secrets never appear in logs or error texts:
:func:`redact` scrubs every error message, and a filter on the ``httpx`` logger hides the
key in its request lines.

Reasons. Every sentence a robot composes is a message id (this package's catalogue, marked
``N_``) with parameters, carried by the channel errors as a
:class:`~cms.services.errors.Message` and shown in the reader's language; the platform's code
and its own words stay plain parameters. ``str(exc)`` is the same sentence in Chinese.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cms.channels import (
    ChannelError,
    ChatUnavailable,
    Notice,
    OutcomeUnknown,
    PermanentFailure,
    ProgressCallback,
    RateLimited,
    SendResult,
    TemporaryFailure,
)
from cms.services.errors import N_, Message
from robots.keys import secret_of, webhook_of

log = logging.getLogger(__name__)

__all__ = [
    "NO_WORDS",
    "Answer",
    "Part",
    "Redirected",
    "RobotChannel",
    "Throttled",
    "VoiceUnusable",
    "Window",
    "post_file",
    "post_json",
    "redact",
    "refusal",
    "split_text",
    "voice_unusable",
]

# httpx errors raised after the whole request was written: the platform may have acted on it.
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
_SECRET_IN_URL = re.compile(
    r"((?:key|access_token|token|sign)=)[^&\s\"']+|(/hook/)[^/?&\s\"']+", re.IGNORECASE
)
_SENTENCE_END = re.compile(r"(?<=[。！？!?；;…\n])")

_client: httpx.Client | None = None
_client_lock = threading.Lock()


class _RedactUrls(logging.Filter):
    """Hide webhook keys in the request lines httpx logs at INFO."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(
                _SECRET_IN_URL.sub(_stars, str(a)) if isinstance(a, (str, httpx.URL)) else a
                for a in (record.args if isinstance(record.args, tuple) else (record.args,))
            )
        return True


logging.getLogger("httpx").addFilter(_RedactUrls())


def _stars(match: re.Match[str]) -> str:
    return (match.group(1) or match.group(2)) + "***"


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without webhook keys, tokens or signing secrets."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _SECRET_IN_URL.sub(_stars, text)


def client() -> httpx.Client:
    """The one HTTP client every robot shares (thread-safe, pooled)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = httpx.Client(
                timeout=httpx.Timeout(15.0, connect=5.0),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                headers={"User-Agent": "dalaba-robots"},
            )
        return _client


# --- Answers and the HTTP calls ---------------------------------------------------------------


# What a refusal shows when the platform gave no words of its own.
NO_WORDS = N_("（无说明）")


class _Said(Exception):
    """An answer the send loop acts on, with what it says as a message (see the module)."""

    def __init__(self, message: str | Message) -> None:
        self.message = message if isinstance(message, Message) else Message(message)
        super().__init__(str(self.message))


class Throttled(_Said):
    """The platform said "too fast": wait, then send the same part again."""

    def __init__(self, message: str | Message, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class _Retryable(_Said):
    """Not posted (no connection, 5xx): safe to send again after a pause."""


class Redirected(_Retryable):
    """The platform answered with a redirect instead of its JSON: nothing was posted."""

    def __init__(self, message: str | Message, location: str) -> None:
        super().__init__(message)
        self.location = location


def _http(response: httpx.Response) -> Message:
    """An HTTP status as the platform gave it, e.g. "HTTP 502（Bad Gateway）"."""
    return Message(
        N_("HTTP {status}（{phrase}）"),
        {"status": response.status_code, "phrase": response.reason_phrase},
    )


def refusal(code: object, words: str) -> dict[str, object]:
    """A platform's error code and its own words, as the parameters of a refusal message."""
    return {"code": code, "message": words or Message(NO_WORDS)}


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]


def _answer(response: httpx.Response, *, posts: bool) -> Answer:
    if 300 <= response.status_code < 400:
        # The webhook API never redirects a message it accepted (DingTalk sends a blocked
        # robot's requests to a web page): nothing was posted.
        raise Redirected(_http(response), response.headers.get("Location", ""))
    if response.status_code == 429:
        raise Throttled(_http(response))
    if response.status_code >= 500:
        raise _Retryable(_http(response))
    try:
        body = response.json()
        if not isinstance(body, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        if response.status_code >= 400:
            raise PermanentFailure(
                Message(N_("平台拒绝了请求：{http}"), {"http": _http(response)})
            ) from exc
        if posts:
            raise OutcomeUnknown(Message(N_("平台的应答无法解析，消息可能已送达"))) from exc
        raise _Retryable(Message(N_("平台的应答无法解析"))) from exc
    return Answer(response.status_code, body)


def network_words(exc: httpx.HTTPError) -> Message:
    """What went wrong on the network, in words a township officer reads (no class names)."""
    match exc:
        case httpx.ConnectTimeout():
            return Message(N_("没能连上平台：连接超时，请检查这台电脑的网络"))
        case httpx.ConnectError():
            return Message(N_("没能连上平台：网络不通或地址无法访问，请检查这台电脑的网络"))
        case httpx.PoolTimeout():
            return Message(N_("没能连上平台：同时发出的请求太多，稍后再试"))
        case httpx.ReadTimeout():
            return Message(N_("平台迟迟没有应答"))
        case httpx.RemoteProtocolError() | httpx.ReadError():
            return Message(N_("连接在平台应答前断开了"))
        case httpx.WriteTimeout() | httpx.WriteError():
            return Message(N_("没能连上平台：消息没能发完，连接中断了"))
        case _:
            return Message(N_("没能连上平台：网络出错"))


def _call(request: httpx.Request, *, posts: bool) -> Answer:
    try:
        response = client().send(request)
    except _ANSWER_LOST as exc:
        if posts:
            raise OutcomeUnknown(
                Message(N_("{reason}，消息可能已送达"), {"reason": network_words(exc)})
            ) from exc
        raise _Retryable(Message(N_("上传语音时{reason}"), {"reason": network_words(exc)})) from exc
    except httpx.HTTPError as exc:
        # Connect errors, pool timeouts, a body not fully written: nothing was posted.
        raise _Retryable(network_words(exc)) from exc
    return _answer(response, posts=posts)


def post_json(url: str, body: dict[str, Any]) -> Answer:
    """POST a JSON message (UTF-8, no ASCII escapes: limits count the bytes as sent)."""
    data = json.dumps(body, ensure_ascii=False).encode()
    request = client().build_request(
        "POST", url, content=data, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    return _call(request, posts=True)


def post_file(url: str, field_name: str, filename: str, data: bytes, mime: str) -> Answer:
    """POST one file as multipart/form-data (an upload: a lost answer posted nothing)."""
    request = client().build_request("POST", url, files={field_name: (filename, data, mime)})
    return _call(request, posts=False)


# --- Limits -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """At most ``count`` messages in any ``seconds`` (a sliding window)."""

    count: int
    seconds: float


class _Robot:
    """One robot's lock and recent send times."""

    def __init__(self, windows: tuple[Window, ...]) -> None:
        self.lock = threading.Lock()
        self.windows = windows
        self.times: deque[float] = deque(maxlen=max(w.count for w in windows))

    def wait(self, now: float) -> float:
        """Seconds until one more message fits every window."""
        longest = 0.0
        for w in self.windows:
            if len(self.times) >= w.count:
                oldest = self.times[-w.count]
                longest = max(longest, oldest + w.seconds - now)
        return max(0.0, longest)

    def record(self, at: float) -> None:
        self.times.append(at)


# --- Text --------------------------------------------------------------------------------------


def split_text(text: str, limit: int, first_limit: int | None = None) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-8 bytes (the first ``first_limit``),
    split at sentence ends where possible, else at a character boundary."""
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    pieces: list[str] = []
    current = ""

    def budget() -> int:
        return first_limit if (first_limit is not None and not pieces) else limit

    def size(s: str) -> int:
        return len(s.encode())

    for sentence in sentences:
        while sentence:
            if size(current + sentence) <= budget():
                current += sentence
                sentence = ""
            elif current:
                pieces.append(current.strip())
                current = ""
            else:
                # One sentence longer than a whole message: cut it at a character boundary.
                cut = sentence.encode()[: budget()].decode("utf-8", errors="ignore")
                pieces.append(cut)
                sentence = sentence[len(cut) :]
    if current.strip() or not pieces:
        pieces.append(current.strip())
    return pieces


# --- The channel --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One message of a notice, in sending order."""

    kind: str  # text | markdown | post | voice | file
    body: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    duration: float | None = None


class RobotChannel:
    """Sends notices to one platform's robots; subclasses say how (plan, url, answer)."""

    platform = ""
    name = ""  # shown in error texts (a message id, as ``label``): 企业微信 / 钉钉 / 飞书
    windows: tuple[Window, ...] = ()

    def __init__(
        self,
        *,
        windows: Iterable[Window] | None = None,
        max_wait: float = 70.0,
        throttle_wait: float | None = None,
        max_attempts: int = 3,
        backoff: float = 1.0,
    ) -> None:
        """
        Args:
            windows: the per-robot limits (the platform's by default).
            max_wait: longest time one part may wait in here (limits, throttling, backoff)
                before the delivery goes back to the dispatcher with TemporaryFailure.
            throttle_wait: how long to wait after the platform first says "too fast" (it
                says nothing about how long); doubled at each further "too fast" for the
                same part, up to the longest window. By default 1/20 of the longest window
                (3 s for 20 a minute).
            max_attempts: tries per part for errors that are safe to retry.
            backoff: first delay between such tries (doubled each time, with jitter).
        """
        if windows is not None:
            self.windows = tuple(windows)
        self.max_wait = max_wait
        longest = max((w.seconds for w in self.windows), default=60.0)
        self.longest_window = longest
        self.throttle_wait = longest / 20 if throttle_wait is None else throttle_wait
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._robots: dict[str, _Robot] = {}
        self._robots_lock = threading.Lock()

    # Subclasses -----------------------------------------------------------------------------

    def plan(self, notice: Notice) -> list[Part]:
        raise NotImplementedError

    def deliver_part(self, notice: Notice, part: Part) -> None:
        """Send one part; raise Throttled, _Retryable or a ChannelError."""
        raise NotImplementedError

    # The send loop --------------------------------------------------------------------------

    def _robot(self, key: str) -> _Robot:
        with self._robots_lock:
            robot = self._robots.get(key)
            if robot is None:
                robot = self._robots[key] = _Robot(self.windows)
            return robot

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        """Post the parts of ``notice`` not yet in ``notice.sent_ids``, reporting each."""
        if not webhook_of(notice):
            raise PermanentFailure(
                Message(N_("{label}机器人没有 webhook 地址，请重新绑定"), {"label": self.name})
            )
        try:
            parts = self.plan(notice)
        except OSError as exc:
            raise TemporaryFailure(voice_unusable(exc)) from exc
        robot = self._robot(notice.chat_id)
        ids = list(notice.sent_ids)
        with robot.lock:
            for index in range(len(ids), len(parts)):
                try:
                    self._send_part(robot, notice, parts[index])
                except ChannelError as exc:
                    raise _scrubbed(exc, notice) from exc.__cause__
                ids.append(f"{parts[index].kind}-{index + 1}")
                progress(list(ids))
        return SendResult(message_ids=ids)

    def _send_part(self, robot: _Robot, notice: Notice, part: Part) -> None:
        deadline = time.monotonic() + self.max_wait
        attempts = throttled = 0
        while True:
            now = time.monotonic()
            wait = robot.wait(now)
            if wait:
                if now + wait > deadline:
                    raise RateLimited(
                        Message(
                            N_("{label}机器人每分钟消息数已达上限，{seconds:.0f} 秒后再发"),
                            {"label": self.name, "seconds": wait},
                        ),
                        retry_after=wait,
                    )
                time.sleep(wait)
            try:
                self.deliver_part(notice, part)
                robot.record(time.monotonic())
                return
            except Throttled as exc:
                # Our own count said there was room, so the platform counts messages we did
                # not send (another tool on the same webhook) or counts differently. When its
                # window frees up is unknown (at most one window away): wait a little and
                # ask again, doubling the pause, rather than always waiting a whole window.
                # A refused message is not counted against our window (the platform does
                # not count it either).
                throttled += 1
                if exc.wait is not None:
                    pause = exc.wait
                else:
                    pause = min(
                        self.throttle_wait * 2 ** (throttled - 1),
                        max(self.longest_window, self.throttle_wait),
                    )
                if time.monotonic() + pause > deadline:
                    raise RateLimited(
                        Message(
                            N_("{label}限流：{detail}，{seconds:.0f} 秒后再试"),
                            {"label": self.name, "detail": exc.message, "seconds": pause},
                        ),
                        retry_after=pause,
                    ) from exc
                log.info(
                    "%s robot %s throttled: waiting %.1f s", self.platform, notice.chat_id, pause
                )
                time.sleep(pause)
            except OSError as exc:
                # The voice file vanished or would not convert: nothing was sent.
                raise TemporaryFailure(voice_unusable(exc)) from exc
            except _Retryable as exc:
                attempts += 1
                delay = self.backoff * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
                if attempts >= self.max_attempts or time.monotonic() + delay > deadline:
                    raise TemporaryFailure(exc.message) from exc
                time.sleep(delay)


class VoiceUnusable(OSError):
    """The voice file could not be made into what the platform takes (its reason a message)."""

    def __init__(self, message: Message) -> None:
        self.message = message
        super().__init__(str(message))


def voice_unusable(exc: OSError) -> Message:
    """Why the voice file cannot be sent (a missing file's error is technical detail)."""
    detail = exc.message if isinstance(exc, VoiceUnusable) else str(exc)
    return Message(N_("语音文件不可用：{detail}"), {"detail": detail})


def _scrubbed(exc: ChannelError, notice: Notice) -> ChannelError:
    message = _redacted(exc.message, webhook_of(notice), secret_of(notice))
    if isinstance(exc, TemporaryFailure):
        return type(exc)(message, retry_after=exc.retry_after)
    if isinstance(exc, (ChatUnavailable, PermanentFailure, OutcomeUnknown)):
        return type(exc)(message)
    return ChannelError(message)


def _redacted(message: Message, *secrets: str | None) -> Message:
    """``message`` with :func:`redact` applied to its text and every text parameter."""
    params = {
        name: _redacted(value, *secrets)
        if isinstance(value, Message)
        else redact(value, *secrets)
        if isinstance(value, str)
        else value
        for name, value in message.params.items()
    }
    return Message(redact(message.msgid, *secrets), params)


def errmsg(body: dict[str, Any], *keys: str) -> str:
    """The platform's error text from an answer, shortened."""
    for key in keys:
        value = body.get(key)
        if value:
            return str(value)[:300]
    return ""
