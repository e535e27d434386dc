"""``dalaba chats``: bind, unbind and list group chats from the command line."""

from __future__ import annotations

import json
from typing import Any

import click

from cms.cli_common import cli_settings, session_factory


@click.group()
def chats() -> None:
    """群聊：绑定、解绑、查看。"""


FIELD = "field_"  # the prefix of a plugin field's parameter name (``--webhook`` → field_webhook)


class _BindCommand(click.Command):
    """``bind``, with an option for each field the address-bound platforms' plugins declare
    (the robots' ``--webhook`` and ``--secret``), read from the installed plugins."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        from cms.channels import FormField, plugins

        fields: dict[str, FormField] = {}
        for found in plugins().values():
            for f in found.fields if found.by_address else ():
                fields.setdefault(f.name, f)
        options = [
            click.Option(
                [f"--{f.name}", f"{FIELD}{f.name}"], default="", envvar=f.envvar, help=f.help
            )
            for f in fields.values()
        ]
        first, *rest = super().get_params(ctx)  # --chat-id first, as it always was
        return [first, *options, *rest]


def _required(platform: str) -> list[tuple[str, str]]:
    """The fields ``platform``'s plugin requires: (name, label)."""
    from cms.channels import plugin

    found = plugin(platform)
    return [(f.name, f.label) for f in (found.fields if found is not None else ()) if f.required]


@chats.command("bind", cls=_BindCommand)
@click.option("--chat-id", default="", help="群聊 ID（Telegram 群组为负数）")
@click.option("--area", required=True, help="区域 ID 或完整名称，例如 清水镇/石桥村/一组")
@click.option("--title", default="", help="群名（可选，便于在后台辨认）")
@click.option(
    "--platform",
    default="telegram",
    show_default=True,
    help="telegram、wecom（企业微信）、dingtalk（钉钉）或 feishu（飞书）",
)
def bind(chat_id: str, area: str, title: str, platform: str, **given: Any) -> None:
    """Bind a chat or a group robot to AREA (a known one is re-bound and re-activated)."""
    from cms.db import transaction
    from cms.services.areas import full_name
    from cms.services.chats import ROBOT_PLATFORMS, bind_chat_cli, bind_robot_cli
    from cms.services.errors import DomainError, ValidationError

    robot = platform in ROBOT_PLATFORMS
    # The robot's fields (its address, a secret …) go to its plugin as they are.
    values = {k.removeprefix(FIELD): str(v or "") for k, v in given.items()}
    missing = [(name, label) for name, label in _required(platform) if not values.get(name)]
    if robot and missing:
        name, label = missing[0]
        raise click.UsageError(f"--platform {platform} 需要 --{name}（{label}）")
    if not robot and not chat_id:
        raise click.UsageError("请给出 --chat-id（群机器人请用 --platform 和 --webhook）")
    try:
        with transaction(session_factory(cli_settings())) as session:
            if robot:
                chat = bind_robot_cli(session, platform, values, area, title=title)
            else:
                chat = bind_chat_cli(session, chat_id, area, platform=platform, title=title)
            where = full_name(session, chat.area)
            shown_id, row_id = chat.chat_id, chat.id
    except ValidationError as exc:
        raise click.ClickException("；".join(exc.render().values())) from exc
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    if robot:
        click.echo(f"已绑定：{platform} 机器人 {shown_id}（编号 {row_id}）→ {where}")
        click.echo(f"发送测试消息：dalaba chats test {row_id}")
    else:
        click.echo(f"已绑定：群聊 {chat_id} → {where}")


@chats.command("test")
@click.argument("chat_group_id", type=click.IntRange(1, 2**62))
def test(chat_group_id: int) -> None:
    """Post a short test message to a group robot and print the platform's answer."""
    from cms.channels import load_channel
    from cms.db import transaction
    from cms.services import chats as svc
    from cms.services.errors import DomainError

    settings = cli_settings()
    try:
        with transaction(session_factory(settings)) as session:
            chat = svc.get_chat(session, chat_group_id)
            if chat.platform not in svc.ROBOT_PLATFORMS:
                raise click.ClickException(
                    f"群聊 {chat_group_id} 不是群机器人（{chat.platform}）：请在群里发 /today 试试"
                )
            answer = svc.send_test_message(
                session, None, chat, load_channel(settings, chat.platform)
            )
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(str(answer.message))
    if not answer.ok:
        raise SystemExit(1)


@chats.command("unbind")
@click.option("--chat-id", required=True)
@click.option("--platform", default="telegram", show_default=True)
def unbind(chat_id: str, platform: str) -> None:
    """Stop posting to a chat (its delivery history is kept)."""
    from cms.db import transaction
    from cms.services import chats as svc

    with transaction(session_factory(cli_settings())) as session:
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
    from cms.services import errors
    from cms.services.areas import full_name

    with transaction(session_factory(cli_settings())) as session:
        rows = [
            {
                "id": c.id,
                "platform": c.platform,
                "chat_id": c.chat_id,
                "title": c.title,
                "area": full_name(session, c.area),
                "active": c.active,
                "reason": errors.Message.loads(c.deactivated_reason).render()
                if c.deactivated_reason
                else None,
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
