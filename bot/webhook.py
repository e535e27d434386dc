"""Receive updates by webhook: a small aiohttp listener behind the public HTTPS address.

Telegram posts each update to ``WebhookConfig.url``; a reverse proxy forwards it to the
listener. The secret token Telegram echoes in ``X-Telegram-Bot-Api-Secret-Token`` proves
that a request came from Telegram, so nobody else can inject commands.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

if TYPE_CHECKING:
    from bot.channel import WebhookConfig

log = logging.getLogger(__name__)
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
MAX_UPDATE_BYTES = 1 << 20


async def start_webhook(
    application: Application,  # type: ignore[type-arg]
    config: WebhookConfig,
) -> web.AppRunner:
    """Listen on ``config.listen:config.port`` and register ``config.url`` with Telegram."""
    secret = config.secret_token or secrets.token_urlsafe(32)
    path = urlsplit(config.url).path or "/"

    async def receive(request: web.Request) -> web.Response:
        given = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return web.Response(status=403)
        try:
            payload = await request.json()
            update = Update.de_json(payload, application.bot)
        except Exception:
            log.warning("webhook: malformed update ignored")
            return web.Response(status=400)
        await application.update_queue.put(update)
        return web.Response(status=200)

    app = web.Application(client_max_size=MAX_UPDATE_BYTES)
    app.router.add_post(path, receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.listen, config.port)
    await site.start()
    await application.bot.set_webhook(
        config.url, secret_token=secret, allowed_updates=Update.ALL_TYPES
    )
    log.info("webhook listening on %s:%s for %s", config.listen, config.port, config.url)
    return runner
