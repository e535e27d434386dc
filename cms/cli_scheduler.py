"""``dalaba build-day``, ``dalaba programs`` and ``dalaba status``: the scheduler from a terminal."""

from __future__ import annotations

import json
import sys
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING

import click

from cms import publishers
from cms.cli_common import DiskFullExit, checked_engine, cli_settings

if TYPE_CHECKING:
    from cms.jobs.context import Context


def _context() -> Context:
    from cms.channels import ChannelRegistry
    from cms.db import make_session_factory
    from cms.jobs.context import Context
    from cms.lease import make_holder_id

    settings = cli_settings()
    engine = checked_engine(settings)
    return Context(
        settings=settings,
        engine=engine,
        sessions=make_session_factory(engine, clock=settings.clock),
        registry=ChannelRegistry(),
        worker=f"cli:{make_holder_id()}",
    )


def _parse_day(value: str | None, ctx: Context) -> date:
    if not value:
        return ctx.today()
    from cms.services.text import MAX_DATE, MIN_DATE, in_date_range, parse_date

    day = parse_date(value)
    if day is None:
        raise click.BadParameter("日期应为 YYYY-MM-DD", param_hint="--date")
    if not in_date_range(day):
        raise click.BadParameter(f"日期应在 {MIN_DATE} 到 {MAX_DATE} 之间", param_hint="--date")
    return day


OUTCOME_LABELS = {
    "built": "已生成",
    "unchanged": "无变化",
    "empty": "无内容",
    "failed": "失败",
    "retry": "失败（稍后重试）",
    "waiting": "等待音频",
    "no_space": "磁盘空间不足，等待清理",
    "skipped": "由调度器处理中",
}


@click.command("build-day")
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="哪一天（默认今天）")
def build_day(day_text: str | None) -> None:
    """为某一天生成（或更新）每个广播点的节目。"""
    from cms import disk
    from cms.scheduler import priority
    from cms.scheduler.core import Scheduler

    ctx = _context()
    day = _parse_day(day_text, ctx)
    # A batch of renders and builds: it yields the CPU to the web (cms.scheduler.priority).
    priority.lower_this_process(ctx.settings.work_nice)
    space = disk.check(ctx.settings)
    if space.short:
        raise DiskFullExit(space.reason().render())
    scheduler = Scheduler(ctx)
    click.echo(f"正在准备 {day} 的节目（生成所需音频）…", err=True)
    ids = scheduler.prepare_day(day)
    if not ids:
        click.echo(f"{day} 没有需要生成的节目（没有启用的广播点或时段）")
        return
    lines = []
    if sys.stdout.isatty():
        with click.progressbar(
            scheduler.build_listed(ids), length=len(ids), label="生成节目"
        ) as bar:
            lines = list(bar)
    else:
        lines = list(scheduler.build_listed(ids))
    failed = 0
    for line in lines:
        duration = f"{line.duration:.1f} 秒" if line.duration else "—"
        flag = "  ⚠ 超出时段长度" if line.overrun else ""
        click.echo(
            f"{line.outlet}  {line.slot}  {OUTCOME_LABELS.get(line.outcome, line.outcome)}"
            f"  {duration}  {line.path or ''}{flag}"
        )
        failed += line.outcome in {"failed", "retry", "no_space"}
    built = sum(line.outcome == "built" for line in lines)
    click.echo(f"共 {len(lines)} 个节目：新生成 {built} 个，失败 {failed} 个")
    if failed:
        sys.exit(1)


@click.command("programs")
@click.option("--date", "day_text", metavar="YYYY-MM-DD", help="哪一天（默认今天）")
@click.option("--json", "as_json", is_flag=True, help="输出 JSON 列表")
def programs(day_text: str | None, as_json: bool) -> None:
    """列出某一天各广播点的节目。"""
    from sqlalchemy import select

    from cms.models import Outlet, Program, Slot

    ctx = _context()
    day = _parse_day(day_text, ctx)
    with ctx.sessions() as session:
        rows = session.scalars(
            select(Program)
            .join(Outlet, Outlet.id == Program.outlet_id)
            .join(Slot, Slot.id == Program.slot_id)
            .where(Program.day == day)
            .order_by(Outlet.name, Outlet.id, Slot.at)
        ).all()
        entries = [
            {
                "outlet": p.outlet.name,
                "outlet_id": p.outlet_id,
                "slot": p.slot.label,
                "slot_minutes": p.slot.minutes,
                "day": p.day.isoformat(),
                "state": p.state.value,
                "path": p.path,
                "duration": p.duration,
                "overrun": p.overrun,
                "missed": p.missed,
                "built_at": p.built_at.isoformat() if p.built_at else None,
                "manifest": p.manifest,
            }
            for p in rows
        ]
    if as_json:
        click.echo(json.dumps(entries, ensure_ascii=False, indent=1))
        return
    if not entries:
        click.echo(f"{day} 还没有节目（可运行 dalaba build-day --date {day}）")
        return
    for e in entries:
        duration = f"{e['duration']:.1f} 秒" if e["duration"] else "—"
        click.echo(f"{e['outlet']}  {e['slot']}  {e['state']}  {duration}  {e['path'] or ''}")


@click.command("status")
def status() -> None:
    """显示调度器的状态和各队列的长度。"""
    from cms import lease
    from cms.queue import queue_lengths
    from cms.services.alerts import open_alerts

    ctx = _context()
    state = lease.read(ctx.engine)
    now = ctx.now()
    tz = ctx.settings.tz
    if state.holder is None:
        click.echo("调度器：从未运行")
    elif state.alive(now):
        click.echo(f"调度器：运行中，由 {state.holder} 持有")
    else:
        click.echo(f"调度器：未运行（上次由 {state.holder} 持有）")
    if state.heartbeat_at:
        click.echo(f"最后心跳：{_local(state.heartbeat_at, tz)}")
    last_tick = state.info.get("last_tick")
    if last_tick:
        click.echo(f"最后一次调度：{_local(datetime.fromisoformat(last_tick), tz)}")
    with ctx.sessions() as session:
        lengths = queue_lengths(session)
        alerts = open_alerts(session)
    names = {
        "clips": "音频",
        "programs": "节目",
        "deliveries": "群聊发送",
        # Every installed publisher's articles, by its noun.
        "articles": "、".join(dict.fromkeys(publishers.nouns())) + "文章",
    }
    for key, label in names.items():
        counts = lengths.get(key, {})
        text = "、".join(f"{name} {n}" for name, n in sorted(counts.items())) or "无"
        click.echo(f"{label}队列：{text}")
    click.echo(f"未处理的提醒：{len(alerts)}")
    from cms.services.errors import Message

    for alert in alerts[:10]:
        click.echo(f"  - {Message.loads(alert.message).render()}")


def _local(when: datetime, tz: tzinfo) -> str:
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


COMMANDS = [build_day, programs, status]
