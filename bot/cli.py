"""``dalaba bot``: run the Telegram bot alone (long polling, or a webhook when configured).

``dalaba serve`` already runs the bot inside when a token is set; this command is for a
machine that runs only the bot (the scheduler then sends through its own channel).
"""

from __future__ import annotations

import signal
import threading

import click

from cms.cli_common import checked_engine, load_settings


@click.command(
    "bot", help="单独运行 Telegram 机器人（长轮询，或配置了 webhook 时用 webhook），Ctrl+C 停止。"
)
@click.option(
    "--webhook-url",
    envvar="DALABA_TELEGRAM_WEBHOOK_URL",
    default=None,
    help="公网 HTTPS 地址；设置后用 webhook 接收消息，否则用长轮询",
)
@click.option(
    "--listen",
    envvar="DALABA_TELEGRAM_WEBHOOK_LISTEN",
    default="127.0.0.1:8443",
    show_default=True,
    help="webhook 本地监听地址（由反向代理转发）",
)
@click.option(
    "--webhook-secret",
    envvar="DALABA_TELEGRAM_WEBHOOK_SECRET",
    default=None,
    help="webhook 密钥（默认每次启动随机生成）",
)
def bot(webhook_url: str | None, listen: str, webhook_secret: str | None) -> None:
    """Run the Telegram bot alone until Ctrl+C (configured by DALABA_* variables)."""
    from bot.application import build_application
    from bot.channel import TelegramChannel, WebhookConfig
    from bot.config import has_token

    settings = load_settings()
    if not has_token(settings):
        raise click.ClickException(
            "未设置 DALABA_TELEGRAM_TOKEN：请先向 @BotFather 申请机器人令牌，"
            "再设置环境变量 DALABA_TELEGRAM_TOKEN 后重试。"
        )
    webhook = None
    if webhook_url:
        host, _, port = listen.rpartition(":")
        if not port.isdigit():
            raise click.ClickException(f"--listen 应为 主机:端口（当前为 {listen!r}）")
        webhook = WebhookConfig(webhook_url, host or "127.0.0.1", int(port), webhook_secret)
    # Only `dalaba db upgrade` migrates: a database behind this version ends here (exit 78).
    checked_engine(settings).dispose()

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    channel = TelegramChannel(
        build_application(settings),
        updates="webhook" if webhook else "polling",
        webhook=webhook,
    )
    try:
        channel.start()
    except Exception as exc:
        raise click.ClickException(f"机器人启动失败：{exc}") from exc
    mode = f"webhook {webhook.url}" if webhook else "长轮询"
    click.echo(f"大喇叭机器人已启动（{mode}），Ctrl+C 停止")
    try:
        stop.wait()
    finally:
        channel.close()
    click.echo("机器人已停止")


if __name__ == "__main__":
    bot()
