"""``dalaba chats``: bind, unbind and list group chats from the command line."""

from __future__ import annotations

import json

import click


def _session_factory():  # type: ignore[no-untyped-def]
    # Imported here: cms.cli imports this module while it registers commands.
    from cms.cli import _engine, _settings
    from cms.db import make_session_factory

    return make_session_factory(_engine(_settings(secret_key="unused-for-cli")))


@click.group()
def chats() -> None:
    """群聊：绑定、解绑、查看。"""


@chats.command("bind")
@click.option("--chat-id", required=True, help="群聊 ID（Telegram 群组为负数）")
@click.option("--area", required=True, help="区域 ID 或完整名称，例如 清水镇/石桥村/一组")
@click.option("--title", default="", help="群名（可选，便于在后台辨认）")
@click.option("--platform", default="telegram", show_default=True)
def bind(chat_id: str, area: str, title: str, platform: str) -> None:
    """Bind a known chat to AREA (a chat already known is re-bound and re-activated)."""
    from cms.db import transaction
    from cms.services.areas import full_name
    from cms.services.chats import bind_chat_cli
    from cms.services.errors import DomainError

    try:
        with transaction(_session_factory()) as session:
            chat = bind_chat_cli(session, chat_id, area, platform=platform, title=title)
            where = full_name(session, chat.area)
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"已绑定：群聊 {chat_id} → {where}")


@chats.command("unbind")
@click.option("--chat-id", required=True)
@click.option("--platform", default="telegram", show_default=True)
def unbind(chat_id: str, platform: str) -> None:
    """Stop posting to a chat (its delivery history is kept)."""
    from cms.db import transaction
    from cms.services import chats as svc

    with transaction(_session_factory()) as session:
        chat = svc.bound_chat(session, platform, chat_id.strip())
        if chat is None:
            raise click.ClickException(f"群聊 {chat_id} 没有绑定")
        svc.unbind_chat(session, None, chat)
    click.echo(f"已解除绑定：群聊 {chat_id}")


@chats.command("list")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON")
def list_(as_json: bool) -> None:
    """List chats with their area and state."""
    from cms.db import transaction
    from cms.services import chats as svc
    from cms.services.areas import full_name

    with transaction(_session_factory()) as session:
        rows = [
            {
                "id": c.id,
                "platform": c.platform,
                "chat_id": c.chat_id,
                "title": c.title,
                "area": full_name(session, c.area),
                "active": c.active,
                "reason": c.deactivated_reason,
            }
            for c in svc.list_chats(session)
        ]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("还没有绑定任何群聊")
    for r in rows:
        state = "正常" if r["active"] else f"已停用（{r['reason'] or ''}）"
        click.echo(f"{r['platform']}\t{r['chat_id']}\t{r['area']}\t{r['title']}\t{state}")


COMMANDS = [chats]
