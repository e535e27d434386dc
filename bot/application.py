"""The python-telegram-bot Application: handlers, one error handler, resources.

The database engine is opened in ``post_init`` and disposed in ``post_shutdown`` unless the
caller passes its own session factory (tests, or a process that already has one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from telegram import BotCommand
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    CallbackContext,
    ContextTypes,
    ExtBot,
)

from bot.config import telegram_config
from cms.db import unit_of_work
from cms.settings import Settings

log = logging.getLogger(__name__)

PLATFORM = "telegram"
DEFAULT_API_URL = "https://api.telegram.org"

# Telegram's documented flood limits, with a little headroom: about 30 messages a second
# overall and 20 a minute in one group.
OVERALL_RATE = 30.0
GROUP_RATE_PER_MINUTE = 20.0
RATE_HEADROOM = 0.97

COMMANDS = [
    ("today", "今天发给本群的通知（文字和语音）"),
    ("latest", "最新一条通知"),
    ("program", "广播员：今天的节目音频"),
    ("bind", "群管理员：用绑定码把本群绑定到村组"),
    ("unbind", "群管理员：解除本群绑定"),
    ("link", "广播员：私聊中用关联码关联账号"),
    ("help", "使用说明"),
]


@dataclass
class BotData:
    """What every handler needs, in ``context.bot_data``."""

    settings: Settings | None = None
    sessions: sessionmaker[Session] | None = None
    engine: Engine | None = None
    clock: Callable[[], datetime] | None = None  # None: the settings' clock
    extra: dict[str, Any] = field(default_factory=dict)

    def now(self) -> datetime:
        if self.clock is not None:
            return self.clock()
        assert self.settings is not None
        return self.settings.now()

    def today(self) -> date:
        assert self.settings is not None
        return self.now().astimezone(self.settings.tz).date()

    async def run(self, work: Callable[[Session], Any]) -> Any:
        """Run ``work(session)`` in one write transaction, in a worker thread (never on the loop).

        The unit goes through the one retry policy of :func:`cms.db.unit_of_work`: a lock
        that outlasts SQLite's busy timeout reruns it from the start.
        """
        assert self.sessions is not None, "post_init has not run"
        return await asyncio.to_thread(unit_of_work, self.sessions, work)


Context = CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]


def api_urls(api_url: str | None) -> tuple[str, str]:
    """``base_url`` and ``base_file_url`` for ``Bot`` from ``DALABA_TELEGRAM_API_URL``.

    Accepts the server's root ("http://127.0.0.1:8081") or PTB's own form ending in "/bot".
    """
    root = (api_url or DEFAULT_API_URL).rstrip("/")
    if root.endswith("/bot"):
        root = root[: -len("/bot")]
    return f"{root}/bot", f"{root}/file/bot"


@dataclass(frozen=True)
class Limits:
    """Client-side flood limits, kept just under the server's.

    Rates sit 3 % under Telegram's and bursts at half the server's bucket: the server then
    always has tokens in hand, so requests that reach it late (scheduling jitter) do not
    meet a 429, which would cost at least a second.
    """

    overall_per_second: float = OVERALL_RATE * RATE_HEADROOM
    overall_burst: float = OVERALL_RATE / 2
    group_max: float = GROUP_RATE_PER_MINUTE * RATE_HEADROOM
    group_period: float = 60.0
    group_burst: float = GROUP_RATE_PER_MINUTE / 2

    @classmethod
    def below(
        cls, overall_per_second: float, group_max: float, group_period: float = 60.0
    ) -> Limits:
        """Client limits for a server allowing ``overall_per_second`` and ``group_max`` per period."""
        return cls(
            overall_per_second=overall_per_second * RATE_HEADROOM,
            overall_burst=max(1.0, overall_per_second / 2),
            group_max=group_max * RATE_HEADROOM,
            group_period=group_period,
            group_burst=max(1.0, group_max / 2),
        )

    def limiter(self) -> AIORateLimiter:
        # aiolimiter's bucket holds max_rate and drains max_rate per time_period: a burst of
        # ``burst`` at ``rate`` a second is max_rate=burst, time_period=burst/rate.
        # max_retries=0: a 429 comes back to the channel, which waits within its own bound.
        return AIORateLimiter(
            overall_max_rate=self.overall_burst,
            overall_time_period=self.overall_burst / self.overall_per_second,
            group_max_rate=self.group_burst,
            group_time_period=self.group_burst * self.group_period / self.group_max,
            max_retries=0,
        )


def build_application(
    settings: Settings,
    *,
    sessions: sessionmaker[Session] | None = None,
    clock: Callable[[], datetime] | None = None,
    limits: Limits | None = None,
    updates: bool = True,
    connection_pool_size: int = 64,
) -> Application:  # type: ignore[type-arg]
    """Build (not start) the Application for the bot's token (``DALABA_TELEGRAM_TOKEN``).

    Args:
        sessions: a session factory to use; by default one is opened in ``post_init``.
        clock: returns the current UTC time; by default ``settings.clock`` (tests move it).
        limits: client-side flood limits (default: Telegram's, with headroom).
        updates: False for a send-only bot (no Updater, no getUpdates).
    """
    from bot import handlers

    config = telegram_config(settings)
    if not config.token:
        raise ValueError("DALABA_TELEGRAM_TOKEN is not set")
    base_url, base_file_url = api_urls(config.api_url)
    builder = (
        ApplicationBuilder()
        .token(config.token)
        .base_url(base_url)
        .base_file_url(base_file_url)
        .context_types(ContextTypes(bot_data=BotData))
        .rate_limiter((limits or Limits()).limiter())
        .job_queue(None)
        .connection_pool_size(connection_pool_size)
        .pool_timeout(30.0)
        .connect_timeout(10.0)
        .read_timeout(20.0)
        .write_timeout(20.0)
        .media_write_timeout(60.0)
        .get_updates_connection_pool_size(2)
        .get_updates_read_timeout(40.0)
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
        .concurrent_updates(8)
    )
    if not updates:
        builder = builder.updater(None)
    application = builder.build()
    data: BotData = application.bot_data
    data.settings = settings
    data.sessions = sessions
    data.clock = clock
    handlers.register(application)
    return application


async def _post_init(application: Application) -> None:  # type: ignore[type-arg]
    """Open the database (unless given) and publish the command list."""
    data: BotData = application.bot_data
    if data.sessions is None:
        from cms.db import make_engine, make_session_factory

        assert data.settings is not None
        data.engine = await asyncio.to_thread(
            make_engine, data.settings.database_url, data_dir=data.settings.data_dir
        )
        data.sessions = make_session_factory(data.engine, clock=data.settings.clock)
    try:
        await application.bot.set_my_commands([BotCommand(c, d) for c, d in COMMANDS])
    except TelegramError as exc:
        log.warning("could not publish the command list: %s", exc)


async def _post_shutdown(application: Application) -> None:  # type: ignore[type-arg]
    """Dispose of the engine opened in post_init."""
    data: BotData = application.bot_data
    if data.engine is not None:
        await asyncio.to_thread(data.engine.dispose)
        data.engine = None
        data.sessions = None
