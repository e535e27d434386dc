"""`dalaba build-day`, `dalaba programs --json` and `dalaba status` on a seeded database."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from cms.cli import cli
from cms.scheduler import priority


def _env(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {
        "DALABA_DATA_DIR": str(settings.data_dir),
        "DALABA_DATABASE_URL": settings.database_url,
        "DALABA_TTS_ENGINE": "offline",
    }


def test_build_day_programs_and_status(  # type: ignore[no-untyped-def]
    settings, engine, grid, make_outlet, make_announcement
):
    make_outlet(grid["v1"], "07:30 10, 19:30 1", name="石桥大喇叭")
    make_outlet(grid["v2"], "12:00 10", name="柳林大喇叭")
    tomorrow = datetime.now(settings.tz).date() + timedelta(days=1)
    make_announcement(
        "approved", title="防火通知", body="天干物燥，小心火烛。", repeats=2,
        area_ids=[grid["v1"].id], to_chats=False,
        start_date=tomorrow.isoformat(), end_date=tomorrow.isoformat(),
    )  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(cli, ["build-day", "--date", tomorrow.isoformat()], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "石桥大喇叭  07:30  已生成" in result.output
    assert "柳林大喇叭  12:00  无内容" in result.output
    assert "共 3 个节目：新生成 2 个，失败 0 个" in result.output
    # A batch of renders and builds yields the CPU: it lowered itself (DALABA_WORK_NICE, 10).
    if sys.platform.startswith("linux"):
        assert priority.current_nice() == 10
    # Again: nothing changed, nothing rebuilt.
    again = runner.invoke(cli, ["build-day", "--date", tomorrow.isoformat()], env=_env(settings))
    assert again.exit_code == 0 and "新生成 0 个" in again.output and "无变化" in again.output

    listed = runner.invoke(
        cli, ["programs", "--date", tomorrow.isoformat(), "--json"], env=_env(settings)
    )
    assert listed.exit_code == 0, listed.output
    entries = json.loads(listed.stdout)
    assert [(e["outlet"], e["slot"]) for e in entries] == [
        ("柳林大喇叭", "12:00"),
        ("石桥大喇叭", "07:30"),
        ("石桥大喇叭", "19:30"),
    ]
    stone = entries[1]
    assert Path(stone["path"]).exists() and stone["duration"] > 5
    assert [i["title"] for i in stone["manifest"]["items"]] == ["防火通知"]
    assert stone["manifest"]["items"][0]["repeats"] == 2
    assert entries[0]["path"] is None and entries[0]["duration"] == 0
    # Unchanged inputs but the file gone from disk: rebuilt, not reported unchanged.
    Path(stone["path"]).unlink()
    third = runner.invoke(cli, ["build-day", "--date", tomorrow.isoformat()], env=_env(settings))
    assert third.exit_code == 0 and "新生成 1 个" in third.output, third.output
    assert Path(stone["path"]).exists()

    status = runner.invoke(cli, ["status"], env=_env(settings))
    assert status.exit_code == 0, status.output
    assert "调度器：从未运行" in status.output
    assert "节目队列：done 3" in status.output

    bad = runner.invoke(cli, ["build-day", "--date", "tomorrow"], env=_env(settings))
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output
