"""The Telegram chat channel: the scheduler's sender, and the bot's home when a token is set.

:func:`from_settings` is the ``dalaba.channels`` entry point. The channel owns the
python-telegram-bot Application and runs it on its own event loop in a background thread
(long polling, or a webhook when configured); :meth:`TelegramChannel.send` is called from
the scheduler's worker threads and hands coroutines to that loop.

Duplicates policy. The Bot API has no idempotency key, so a request whose answer is lost
(connection reset or read timeout after the request was written) may or may not have been
posted. Such a part raises :class:`~cms.channels.OutcomeUnknown`: the dispatcher records
the delivery as "uncertain" and never retries it by itself; an officer looks at the group
and retries by hand if needed. Everything else is safe to retry: a request that never got
out (connect errors, timeouts before the body was written, a full pool) or that Telegram
answered with an error (429, 5xx) was not posted. Each part's message id is reported
through ``progress`` as soon as Telegram accepts it, and a resumed delivery skips the parts
in ``notice.sent_ids``: a crash repeats at most the one part that was in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import random
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from telegram import Update
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.ext import Application

from bot.application import PLATFORM, build_application
from bot.config import check, has_token, telegram_config
from bot.sending import Part, plan, send_part
from cms.channels import (
    ChannelError,
    ChannelPlugin,
    ChatUnavailable,
    Notice,
    OutcomeUnknown,
    ProgressCallback,
    SendResult,
    TemporaryFailure,
)
from cms.services.errors import N_, Message
from cms.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["RejectedNotice", "TelegramChannel", "WebhookConfig", "from_settings", "plugin"]

# Why a notice waits (the channel errors carry these as messages, shown in the reader's language).
NOT_RUNNING = N_("Telegram 机器人未运行")
STOPPING = N_("Telegram 机器人正在停止")

# httpx errors raised after the whole request was written: Telegram may have acted on it.
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)
# BadRequest descriptions that mean the chat itself is gone, not this message.
_CHAT_GONE = (
    "chat not found",
    "group chat was deactivated",
    "not enough rights",
    "have no rights to send",
    "need administrator rights",
    "chat_write_forbidden",
    "peer_id_invalid",
)


class _ProgressFailed(Exception):
    """The caller's progress callback raised; the delivery stops before the next part."""


class RejectedNotice(ChannelError):
    """Telegram refused this message itself (a 400 that is not about the chat)."""


@dataclass(frozen=True)
class WebhookConfig:
    """Receive updates on ``url`` (public HTTPS) through a local listener."""

    url: str
    listen: str = "127.0.0.1"
    port: int = 8443
    secret_token: str | None = None


def webhook_from_settings(settings: Settings) -> WebhookConfig | None:
    """The webhook configuration, if ``DALABA_TELEGRAM_WEBHOOK_URL`` is set."""
    config = telegram_config(settings)
    if not config.webhook_url:
        return None
    host, _, port = config.webhook_listen.rpartition(":")
    return WebhookConfig(config.webhook_url, host, int(port), config.webhook_secret)


def from_settings(settings: Settings) -> TelegramChannel | None:
    """The channel factory: a running channel, or None without a token."""
    if not has_token(settings):
        return None
    webhook = webhook_from_settings(settings)
    channel = TelegramChannel(
        build_application(settings), updates="webhook" if webhook else "polling", webhook=webhook
    )
    channel.start()
    return channel


class TelegramChannel:
    """Sends notices through the Bot API and runs the bot, on one background event loop."""

    platform = PLATFORM

    def __init__(
        self,
        application: Application,  # type: ignore[type-arg]
        *,
        updates: str = "polling",
        webhook: WebhookConfig | None = None,
        max_wait: float = 20.0,
        max_attempts: int = 3,
        backoff: float = 0.5,
        close_grace: float = 10.0,
        poll_timeout: float = 10.0,
        start_retry: float = 1.0,
    ) -> None:
        """
        Args:
            application: built by :func:`bot.application.build_application`.
            updates: "polling", "webhook" or "none" (send only).
            max_wait: longest time one part may wait in here (429s, backoff) before the
                channel gives the delivery back to the dispatcher with TemporaryFailure.
            max_attempts: tries per part for errors that are safe to retry.
            backoff: first delay between such tries (doubled each time, with jitter).
            close_grace: how long :meth:`close` lets in-flight deliveries finish.
            poll_timeout: getUpdates long-poll time; :meth:`close` waits for the poll in flight.
            start_retry: first delay before trying an unreachable Telegram again at start-up.
        """
        if updates not in {"polling", "webhook", "none"}:
            raise ValueError(f"updates must be polling, webhook or none, not {updates!r}")
        if updates == "webhook" and webhook is None:
            raise ValueError("webhook mode needs a WebhookConfig")
        self.application = application
        self.updates = updates
        self.webhook = webhook
        self.max_wait = max_wait
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.close_grace = close_grace
        self.poll_timeout = poll_timeout
        self.start_retry = start_retry
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._settled = threading.Event()  # started, or failed for good
        self._running = False
        self._startup_error: BaseException | None = None
        self._closing = False
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._webhook_runner: Any = None

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the loop thread and the bot; return once it runs, or after ``timeout``.

        Telegram out of reach (network, 5xx) is not an error: the bot keeps trying in the
        background and :meth:`send` raises TemporaryFailure until it is up. A rejected token
        is an error and is raised here.
        """
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="telegram-bot", daemon=True)
        self._thread.start()
        if not self._settled.wait(timeout):
            log.warning("Telegram not reachable yet; the bot keeps trying in the background")
            return
        if self._startup_error is not None:
            self._thread.join(timeout)
            self._thread = None
            raise self._startup_error

    @property
    def running(self) -> bool:
        return self._running and not self._closing

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        startup = loop.create_task(self._startup())
        startup.add_done_callback(self._started)
        try:
            loop.run_forever()
        finally:
            if not startup.done():
                startup.cancel()
                loop.run_until_complete(asyncio.gather(startup, return_exceptions=True))
            loop.run_until_complete(self._safe_shutdown())
            # Whatever PTB still had running (a held long poll, a retry's sleep) is cancelled
            # and awaited here, as asyncio.run does: a task left pending on a closed loop is
            # destroyed later by the garbage collector, in whatever thread happens to run.
            leftover = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in leftover:
                task.cancel()
            if leftover:
                loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _started(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            self._startup_error = error
            asyncio.get_running_loop().stop()
        else:
            self._running = True
        self._settled.set()

    async def _startup(self) -> None:
        application = self.application
        delay = self.start_retry
        while True:
            try:
                await application.initialize()
                break
            except InvalidToken:
                raise
            except NetworkError as exc:  # timeouts and 5xx included
                log.warning("Telegram unreachable (%s); trying again in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 300.0)
        if application.post_init is not None:
            await application.post_init(application)
        if self.updates == "polling":
            assert application.updater is not None
            await application.updater.start_polling(
                timeout=timedelta(seconds=self.poll_timeout),
                allowed_updates=Update.ALL_TYPES,
                error_callback=_polling_error,
            )
        elif self.updates == "webhook":
            from bot.webhook import start_webhook

            assert self.webhook is not None
            self._webhook_runner = await start_webhook(application, self.webhook)
        await application.start()
        log.info("Telegram bot @%s running (%s)", application.bot.username, self.updates)

    async def _safe_shutdown(self) -> None:
        application = self.application
        if self._in_flight:
            _done, pending = await asyncio.wait(set(self._in_flight), timeout=self.close_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        try:
            if application.updater is not None and application.updater.running:
                await application.updater.stop()
            if self._webhook_runner is not None:
                await self._webhook_runner.cleanup()
                self._webhook_runner = None
            if application.running:
                await application.stop()
            if application.post_stop is not None:
                await application.post_stop(application)
            await application.shutdown()
            if application.post_shutdown is not None:
                await application.post_shutdown(application)
        except Exception:
            log.exception("Telegram bot did not shut down cleanly")

    def close(self) -> None:
        """Stop receiving updates, let in-flight deliveries finish, shut the bot down."""
        self._closing = True
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(self.close_grace + 30)
        self._thread = None

    # --- sending ------------------------------------------------------------------------------

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        """Post ``notice``; blocks the calling (worker) thread, never the bot's loop.

        ``progress`` runs in the calling thread after each accepted part, and the next part
        waits for it, so a crash repeats at most the part that was in flight.
        """
        loop = self._loop
        if not self.running or loop is None or not loop.is_running():
            raise TemporaryFailure(Message(NOT_RUNNING), retry_after=30)
        events: queue.Queue[tuple[str, list[str], asyncio.Future[None] | None]] = queue.Queue()

        async def report(ids: list[str]) -> None:
            ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            events.put(("progress", ids, ack))
            await ack

        future = asyncio.run_coroutine_threadsafe(self._tracked(notice, report), loop)
        future.add_done_callback(lambda _f: events.put(("done", [], None)))
        failure: BaseException | None = None
        while True:
            kind, ids, ack = events.get()
            if kind == "done":
                break
            assert ack is not None
            try:
                progress(list(ids))
            except BaseException as exc:
                # Stop before the next part; the loop gets a plain error, the caller its own.
                failure = exc
                _call_soon(loop, _settle, ack, _ProgressFailed())
            else:
                _call_soon(loop, _settle, ack, None)
        if failure is not None:
            raise failure
        try:
            return future.result()
        except concurrent.futures.CancelledError as exc:
            raise TemporaryFailure(Message(STOPPING)) from exc

    async def _tracked(
        self, notice: Notice, report: Callable[[list[str]], Awaitable[None]]
    ) -> SendResult:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            return await self.deliver(notice, report)
        finally:
            self._in_flight.discard(task)

    async def deliver(
        self, notice: Notice, report: Callable[[list[str]], Awaitable[None]]
    ) -> SendResult:
        """Send the parts of ``notice`` not yet in ``notice.sent_ids``, reporting each."""
        parts = plan(notice.title, notice.text, notice.voice_path, notice.voice_duration)
        ids = list(notice.sent_ids)
        chat_id = notice.chat_id
        moved: str | None = None
        for part in parts[len(ids) :]:
            message_id, now_at = await self._send_part(chat_id, part)
            if now_at != chat_id:
                chat_id = moved = now_at
            ids.append(message_id)
            await report(list(ids))
        return SendResult(message_ids=ids, new_chat_id=moved)

    async def _send_part(self, chat_id: str, part: Part) -> tuple[str, str]:
        """Send one part, following migrations and waiting out short flood limits."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        attempts = migrations = 0
        in_flight = False
        try:
            while True:
                try:
                    in_flight = True
                    message = await send_part(self.application.bot, chat_id, part)
                    return str(message.message_id), chat_id
                except RetryAfter as exc:
                    in_flight = False
                    wait = _retry_after(exc)
                    if loop.time() + wait > deadline:
                        raise TemporaryFailure(
                            Message(N_("Telegram 限流，{seconds:.0f} 秒后再试"), {"seconds": wait}),
                            retry_after=wait,
                        ) from exc
                    log.info("429 for chat %s: waiting %.1f s", chat_id, wait)
                    await asyncio.sleep(wait)
                except ChatMigrated as exc:
                    in_flight = False
                    migrations += 1
                    if migrations > 3:
                        raise TemporaryFailure(Message(N_("群聊迁移次数过多"))) from exc
                    log.info("chat %s migrated to %s", chat_id, exc.new_chat_id)
                    chat_id = str(exc.new_chat_id)
                except Forbidden as exc:
                    raise ChatUnavailable(exc.message) from exc
                except InvalidToken as exc:
                    raise TemporaryFailure(
                        Message(N_("Telegram 令牌无效")), retry_after=300
                    ) from exc
                except BadRequest as exc:
                    if any(s in exc.message.lower() for s in _CHAT_GONE):
                        raise ChatUnavailable(exc.message) from exc
                    raise RejectedNotice(exc.message) from exc
                except NetworkError as exc:
                    in_flight = False
                    if isinstance(exc.__cause__, _ANSWER_LOST):
                        raise OutcomeUnknown(
                            Message(N_("Telegram 未应答：{detail}"), {"detail": exc.message})
                        ) from exc
                    attempts += 1
                    delay = self.backoff * 2 ** (attempts - 1) * random.uniform(0.8, 1.2)
                    if attempts >= self.max_attempts or loop.time() + delay > deadline:
                        raise TemporaryFailure(
                            Message(N_("网络错误：{detail}"), {"detail": exc.message})
                        ) from exc
                    await asyncio.sleep(delay)
                except TelegramError as exc:
                    raise TemporaryFailure(exc.message) from exc
                except OSError as exc:
                    # The voice file vanished (a rebuild, a cleanup): nothing was sent.
                    raise TemporaryFailure(
                        Message(N_("语音文件不可用：{detail}"), {"detail": str(exc)})
                    ) from exc
        except asyncio.CancelledError as exc:
            # Only a shutdown cancels us. A request on the wire may have been posted.
            if in_flight:
                raise OutcomeUnknown(Message(N_("发送中途停止，无法确认是否已送达"))) from exc
            raise TemporaryFailure(Message(STOPPING)) from exc


def _retry_after(exc: RetryAfter) -> float:
    # PTB 22 keeps a timedelta privately; the public attribute warns until PTB 23 changes its type.
    value = getattr(exc, "_retry_after", None)
    if not isinstance(value, timedelta):
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[..., None], *args: Any) -> None:
    # A loop closed under us (a shutdown) has already cancelled the waiting delivery.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(fn, *args)


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _polling_error(exc: TelegramError) -> None:
    if isinstance(exc, Conflict):
        # Another process polls with the same token (a second `dalaba serve`, or `dalaba bot`):
        # Telegram hands each update to one of them, and both can answer it.
        log.info("another process is polling with this token: %s", exc)
        return
    log.warning("getUpdates failed: %s", exc)


def chat_id_error(chat_id: str) -> str | None:
    """A Telegram chat id is a number (a group's begins with -) or a public @username."""
    if re.fullmatch(r"-?[0-9]{1,20}|@[A-Za-z0-9_]{4,40}", chat_id):
        return None
    return N_("群聊 ID 应为数字（群组以 - 开头）或 @用户名：{id}")


plugin = ChannelPlugin(
    platform=PLATFORM,
    label=N_("Telegram"),
    channel=from_settings,
    reach_label=N_("Telegram 群"),
    # After the work robots: Telegram needs special networking in mainland China.
    order=90,
    ready=has_token,
    check=check,
    chat_id_error=chat_id_error,
    # The package's own English catalogue.
    translations=Path(__file__).resolve().parent / "translations",
    badge=N_("中国大陆无法直接访问"),
    note=N_(
        "Telegram 在中国大陆需要特殊网络才能使用，一般乡镇请用上面的企业微信、钉钉或飞书机器人。"
    ),
    not_ready_note=N_(
        "未设置 Telegram 机器人令牌（DALABA_TELEGRAM_TOKEN）：群聊消息不会真正发出，而是记录在本地发件箱中。"
        "设置令牌并重启后，机器人会把通知发到已绑定的群。"
    ),
    link_note=N_("广播员私聊机器人发送 /link 关联码 后，可用 /program 领取当天节目并点“已播放”。"),
)
"""The ``dalaba.channels`` entry point: chats are bound by ``/bind CODE`` in the group."""
