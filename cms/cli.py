"""The ``dalaba`` command: the composition root that wires settings, database, web and audio."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import click

from cms.cli_common import (
    DiskFullExit,
    checked_engine,
    cli_settings,
    load_settings,
    session_factory,
    upgraded_engine,
)
from cms.settings import Settings


class DalabaGroup(click.Group):
    """The command group: whatever a full disk breaks ends with one clear message."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            from cms.disk import DISK_FULL, is_disk_full

            if is_disk_full(exc):
                raise DiskFullExit(DISK_FULL) from exc
            raise


@click.group(cls=DalabaGroup)
@click.option("-v", "--verbose", is_flag=True, help="更详细的日志")
def cli(verbose: bool) -> None:
    """大喇叭 dalaba：一份稿子，发到大喇叭、移动音箱和群聊。"""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Migrations log every plugin they load at INFO: noise for someone starting dalaba.
        logging.getLogger("alembic").setLevel(logging.WARNING)


@cli.group()
def db() -> None:
    """数据库维护。"""


@db.command("upgrade", help="把数据库结构升级到最新版本。")
def db_upgrade() -> None:
    """Upgrade the database schema to the newest version."""
    from cms.migrate import current_revision, head_revision

    engine = upgraded_engine(load_settings(secret_key="unused-for-migrations"))
    click.echo(f"数据库已是最新版本：{current_revision(engine)}（head {head_revision()}）")


@cli.group()
def user() -> None:
    """用户管理。"""


@user.command("add", help="添加用户；密码在提示时输入，或从标准输入读一行。")
@click.argument("name")
@click.option(
    "--role", required=True, type=click.Choice(["admin", "editor", "reviewer", "operator"])
)
@click.option("--display-name", default="", help="显示的姓名")
@click.option(
    "--area",
    default="",
    help="所属区域（编号、完整路径如“云县/后箐乡”，或唯一的名称）；用户只能看到和处理该区域及其下级。"
    "不填：整个系统",
)
def user_add(name: str, role: str, display_name: str, area: str) -> None:
    """Add a user; the password is read from a prompt, or from stdin when piped."""
    from cms.db import transaction
    from cms.services import users
    from cms.services.chats import find_area
    from cms.services.errors import DomainError, ValidationError

    sessions = session_factory(cli_settings())  # a database behind ends here, before the prompt
    if sys.stdin.isatty():
        password = click.prompt("密码", hide_input=True, confirmation_prompt="再输一次")
    else:
        password = sys.stdin.readline().rstrip("\n")
    try:
        with transaction(sessions) as session:
            place = find_area(session, area) if area.strip() else None
            users.create_user(
                session,
                None,
                username=name,
                display_name=display_name or name,
                role=role,
                password=password,
                area_id=place.id if place else None,
            )
    except ValidationError as exc:
        raise click.ClickException("；".join(exc.render().values())) from exc
    except DomainError as exc:
        raise click.ClickException(exc.message.render()) from exc
    click.echo(f"已添加用户 {name}（{role}）" + (f"，区域：{area.strip()}" if area.strip() else ""))


@cli.command("api-token", help="为用户 USERNAME 生成一个新的 API 令牌（可在网页上吊销）。")
@click.argument("username")
@click.option("--label", default="", help="说明这个令牌的用途")
def api_token(username: str, label: str) -> None:
    """Print a new API token for USERNAME (revocable in the CMS)."""
    from cms.db import transaction
    from cms.services import users
    from cms.services.errors import DomainError, ValidationError

    try:
        with transaction(session_factory(cli_settings())) as session:
            token = users.issue_api_token(
                session, None, users.get_user_by_name(session, username), label
            )
    except ValidationError as exc:
        raise click.ClickException("；".join(exc.render().values())) from exc
    except DomainError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(token)


# Files and folders the server writes later (audio, programs, recordings) are not readable by
# other accounts; the group may read, so a front server (nginx with X-Accel-Redirect) can be
# given access through the data folder's group.
SERVER_UMASK = 0o027


def _serve(settings: Settings, host: str, port: int) -> None:
    import os
    import signal

    from cms.channels import ChannelRegistry, load_channels
    from cms.web import create_app
    from cms.web.server import make_server

    engine = checked_engine(settings)
    if os.environ.get("DALABA_FAKE_NOW", "").strip():
        click.echo(
            f"注意：DALABA_FAKE_NOW 已设置，时钟从 {settings.now():%Y-%m-%d %H:%M} UTC 起走（仅供测试）"
        )
    app = create_app(settings, engine=engine)
    handle = None
    registry = load_channels(settings, ChannelRegistry())
    if settings.scheduler_enabled:
        from cms.scheduler.runner import start_scheduler, tuning_from_env

        try:
            tuning = tuning_from_env(os.environ)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        handle = start_scheduler(settings, engine, registry, **tuning)
        if handle.leader:
            click.echo("调度器已在本进程启动")
        else:
            click.echo("调度器由其他进程持有，本进程只提供网页服务")
    else:
        click.echo("调度器已关闭（--no-scheduler 或 DALABA_SCHEDULER=false），本进程只提供网页服务")
    # A service manager's SIGTERM stops as cleanly as Ctrl+C, handing the lease over at once.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    click.echo(f"大喇叭已启动：http://{host}:{port}/  （Ctrl+C 停止）")
    try:
        make_server(app, host, port, settings).run()
    finally:
        # Downloads of the last second are still in memory.
        app.extensions["dalaba.downloads"].close()
        if handle is not None:
            handle.stop()
        for channel in registry.channels.values():
            close = getattr(channel, "close", None)
            if callable(close):
                close()


@cli.command(
    help="生产环境运行：网页、调度器，设置了令牌时还有机器人（由 DALABA_* 环境变量配置）。"
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--no-scheduler",
    is_flag=True,
    help="只提供网页服务，不运行调度器（同 DALABA_SCHEDULER=false；县级部署的多个网页进程用）",
)
def serve(host: str, port: int, no_scheduler: bool) -> None:
    """Run dalaba in production (configured by DALABA_* environment variables)."""
    os.umask(SERVER_UMASK)
    settings = load_settings(scheduler_enabled=False) if no_scheduler else load_settings()
    _serve(settings, host, port)


@cli.command()
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--data", "data_dir", default="dalaba-data", show_default=True, type=click.Path(file_okay=False)
)
@click.option("--seed-only", is_flag=True, help="只创建演示数据，不启动服务")
def demo(port: int, data_dir: str, seed_only: bool) -> None:
    """Create a demo township in DATA and serve it on 127.0.0.1."""
    from cms.db import make_session_factory, transaction
    from cms.demo import seed

    os.umask(SERVER_UMASK)
    settings = load_settings(
        demo=True, data_dir=Path(data_dir), base_url=f"http://127.0.0.1:{port}"
    )
    # The demo owns its database: it creates it, so it also brings its schema up to date.
    engine = upgraded_engine(settings)
    with transaction(make_session_factory(engine, clock=settings.clock)) as session:
        accounts = seed(session, settings)
    if accounts:
        click.echo(f"演示数据已创建：{settings.data_dir}")
        click.echo("演示账号（用户名 / 密码 / 角色）：")
        for username, password, role in accounts:
            click.echo(f"  {username:<10} {password:<14} {role}")
    else:
        click.echo(
            f"使用已有的演示数据：{settings.data_dir}（账号见首次运行时的输出，密码均为 dalaba-demo）"
        )
    if not seed_only:
        _serve(settings, "127.0.0.1", port)


def _register_commands() -> None:
    """Add the commands of the other parts; installed plugins add theirs by entry point."""
    from importlib.metadata import entry_points

    from cms.cli_audio import say
    from cms.cli_chats import COMMANDS as chat_commands
    from cms.cli_scheduler import COMMANDS as scheduler_commands
    from cms.cli_voices import COMMANDS as voice_commands

    cli.add_command(say)
    for command in [*scheduler_commands, *chat_commands, *voice_commands]:
        cli.add_command(command)
    for ep in entry_points(group="dalaba.commands"):
        try:
            cli.add_command(ep.load(), ep.name)
        except Exception as exc:  # a broken plugin must not take the whole CLI down
            logging.getLogger(__name__).warning("command %s unavailable: %s", ep.name, exc)


_register_commands()


def main() -> None:
    cli(prog_name="dalaba")


if __name__ == "__main__":
    main()
