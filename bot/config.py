"""The Telegram bot's own configuration keys (``DALABA_TELEGRAM_*``), read through the port.

cms keeps the ``DALABA_*`` variables as it read them and never looks at these: the bot owns
them, checks them at start-up (``cms.channels.check_config``) and reads them here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cms.settings import ConfigError, Settings

TOKEN = "DALABA_TELEGRAM_TOKEN"
API_URL = "DALABA_TELEGRAM_API_URL"
WEBHOOK_URL = "DALABA_TELEGRAM_WEBHOOK_URL"
WEBHOOK_LISTEN = "DALABA_TELEGRAM_WEBHOOK_LISTEN"
WEBHOOK_SECRET = "DALABA_TELEGRAM_WEBHOOK_SECRET"
DEFAULT_LISTEN = "127.0.0.1:8443"


@dataclass(frozen=True)
class TelegramConfig:
    """The bot's keys: a token (none: chats wait in the local outbox), the Bot API's address
    (a proxy, or a loopback fake in tests) and, for a public HTTPS address, the webhook."""

    token: str | None = field(default=None, repr=False)
    api_url: str | None = None
    # A public HTTPS address makes the bot receive updates by webhook instead of long polling.
    webhook_url: str | None = None
    webhook_listen: str = DEFAULT_LISTEN
    webhook_secret: str | None = field(default=None, repr=False)


def telegram_config(settings: Settings) -> TelegramConfig:
    """The bot's keys from ``settings``.

    Raises:
        ConfigError: a malformed listen address, or a webhook address that is not https.
    """
    config = TelegramConfig(
        token=settings.plugin_env(TOKEN) or None,
        api_url=settings.plugin_env(API_URL) or None,
        webhook_url=settings.plugin_env(WEBHOOK_URL) or None,
        webhook_listen=settings.plugin_env(WEBHOOK_LISTEN, DEFAULT_LISTEN),
        webhook_secret=settings.plugin_env(WEBHOOK_SECRET) or None,
    )
    host, _, port = config.webhook_listen.rpartition(":")
    if not (host and port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError(f"{WEBHOOK_LISTEN} 应为 主机:端口（当前为 {config.webhook_listen!r}）")
    if config.webhook_url and not config.webhook_url.startswith("https://"):
        raise ConfigError(f"{WEBHOOK_URL} 必须是 https:// 开头的公网地址")
    return config


def check(settings: Settings) -> None:
    """The plugin's start-up check of its keys (raises ConfigError)."""
    telegram_config(settings)


def has_token(settings: Settings) -> bool:
    """Whether the bot can run here: without a token chats wait in the local outbox."""
    return bool(settings.plugin_env(TOKEN))
