"""One injected clock for web, services and scheduler; township dates at any hour.

From 16:00 to 24:00 UTC the township (Asia/Shanghai) is already on the next date. Every
part reads ``settings.clock``; ``DALABA_FAKE_NOW`` sets it for a whole `dalaba serve`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from cms.channels import ChannelRegistry
from cms.clock import ManualClock, OffsetClock, SystemClock, clock_of, parse_fake_now
from cms.db import make_session_factory
from cms.jobs.context import Context
from cms.models import Announcement, Role, SchedulerLease
from cms.services import users
from cms.settings import ConfigError, Settings
from tests.clock import ANY_HOUR, SuiteClock
from tests.conftest import login

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("moment", "township_day"),
    [
        ("2026-12-04T00:30:00+00:00", date(2026, 12, 4)),
        ("2026-12-04T15:59:00+00:00", date(2026, 12, 4)),
        ("2026-12-04T16:01:00+00:00", date(2026, 12, 5)),
        ("2026-12-04T23:59:00+00:00", date(2026, 12, 5)),
        ("2026-12-04T08:00:00+08:00", date(2026, 12, 4)),
    ],
)
def test_today_is_the_townships_date(tmp_path: Path, moment: str, township_day: date) -> None:
    clock = ManualClock(parse_fake_now(moment))
    settings = Settings.from_env({}, data_dir=tmp_path, secret_key="k", clock=clock)
    assert settings.now() == parse_fake_now(moment)
    assert settings.today() == township_day
    other = Settings.from_env(
        {"DALABA_TIMEZONE": "Europe/London"}, data_dir=tmp_path, secret_key="k", clock=clock
    )
    assert other.today() == parse_fake_now(moment).astimezone(other.tz).date()


def test_fake_now_starts_the_clock_there_and_it_runs_on(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"DALABA_FAKE_NOW": "2031-03-01T16:01:00Z"}, data_dir=tmp_path, secret_key="k"
    )
    assert isinstance(settings.clock, OffsetClock)
    first = settings.now()
    assert abs(first - datetime(2031, 3, 1, 16, 1, tzinfo=UTC)) < timedelta(minutes=1)
    assert settings.today() == date(2031, 3, 2)
    assert settings.now() >= first  # it runs: leases and login timeouts keep working


def test_without_fake_now_the_clock_is_the_real_one(tmp_path: Path) -> None:
    settings = Settings.from_env({"DALABA_FAKE_NOW": " "}, data_dir=tmp_path, secret_key="k")
    assert isinstance(settings.clock, SystemClock)


@pytest.mark.parametrize("value", ["tomorrow", "2031-03-01T16:01", "2031-13-01T00:00Z"])
def test_a_bad_fake_now_names_the_variable(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="DALABA_FAKE_NOW"):
        Settings.from_env({"DALABA_FAKE_NOW": value}, data_dir=tmp_path, secret_key="k")


def test_sessions_carry_the_clock_of_their_edge(engine: Engine) -> None:
    clock = ManualClock(datetime(2031, 3, 1, 16, 1, tzinfo=UTC))
    with make_session_factory(engine, clock=clock)() as session:
        assert clock_of(session) is clock
    with make_session_factory(engine, write=True, clock=clock)() as session:
        assert clock_of(session) is clock
    with make_session_factory(engine)() as session:
        assert isinstance(clock_of(session), SystemClock)


def test_rows_are_stamped_on_the_clock_of_the_session_that_writes_them(engine: Engine) -> None:
    clock = ManualClock(datetime(2031, 3, 1, 16, 1, tzinfo=UTC))
    with make_session_factory(engine, write=True, clock=clock)() as session:
        user = users.create_user(
            session, None, username="stamped", display_name="盖章", role="editor",
            password="correct-horse-1", area_id=None,
        )  # fmt: skip
        session.commit()
        assert user.created_at == clock.now()
    # The pooled connection forgets that clock: the next writer without one reads real time.
    with make_session_factory(engine)() as session:
        other = users.create_user(
            session, None, username="real", display_name="真时", role="editor",
            password="correct-horse-1", area_id=None,
        )  # fmt: skip
        session.commit()
        assert abs(other.created_at - datetime.now(UTC)) < timedelta(minutes=5)


def test_the_suite_runs_its_date_sensitive_tests_either_side_of_both_midnights() -> None:
    hours = [SuiteClock.at_utc(h).now() for h in ANY_HOUR]
    days = [h.astimezone(ZoneInfo(Settings.timezone)).date() - h.date() for h in hours]
    # Twice on the same date as UTC, twice on the next one.
    assert days == [timedelta(0), timedelta(0), timedelta(days=1), timedelta(days=1)]


@pytest.mark.any_hour
def test_app_services_and_scheduler_read_one_clock(  # type: ignore[no-untyped-def]
    app, client, settings, engine, injected_clock, make_announcement, make_user, content, today
):
    """The injected clock reaches every edge: views, the services they call, the scheduler."""
    assert injected_clock.pinned
    now = injected_clock.now()
    assert today == now.astimezone(settings.tz).date()
    assert app.extensions["dalaba.settings"].clock is injected_clock
    for name in ("dalaba.sessions", "dalaba.write_sessions"):
        with app.extensions[name]() as session:
            assert clock_of(session) is injected_clock
    ctx = Context(settings, engine, make_session_factory(engine), ChannelRegistry(), "test")
    assert ctx.now() == now and ctx.today() == today

    # A service's stamp through a view: the reviewer approves at the injected time.
    editor, reviewer = make_user(Role.EDITOR), make_user(Role.REVIEWER)
    ann = make_announcement("in_review", author=editor, end_date=today.isoformat())
    login(client, reviewer)
    response = client.post(f"/announcements/{ann.id}/approve", data={"comment": "同意"})
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:500]
    with app.extensions["dalaba.sessions"]() as session:
        approved = session.get(Announcement, ann.id)
        assert approved is not None and approved.reviewed_at == now
        # Row stamps too: created and updated on the same clock (cms.models.stamp).
        assert approved.created_at == now and approved.updated_at == now
    # The form's "today" is the township's: a notice that ended yesterday there is refused,
    # one that ends today there is taken, whatever the UTC date is.
    login(client, editor)
    for day, taken in ((today - timedelta(days=1), False), (today, True)):
        form = {**content(start_date=day.isoformat(), end_date=day.isoformat()), "action": "draft"}
        form["to_loudspeaker"], form["to_chats"] = "on", "on"
        response = client.post("/announcements/new", data=form)
        assert (response.status_code == 302) is taken, day
        if not taken:
            assert "结束日期已经过去" in response.get_data(as_text=True)


def _serve(tmp_path: Path, port: int, fake_now: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DALABA_")}
    env.update(
        DALABA_DATA_DIR=str(tmp_path / "data"),
        DALABA_SECRET_KEY="clock-test-secret",
        DALABA_TTS_ENGINE="offline",
        DALABA_SCHEDULER_TICK="0.3",
        DALABA_FAKE_NOW=fake_now,
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "serve.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "cms.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _api(port: int, path: str, token: str, payload: Any) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1{path}",
        method="POST",
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_serve_runs_on_the_fake_clock(  # type: ignore[no-untyped-def]
    tmp_path, settings, engine, session: Session, make_user, grid, topic
):
    """`dalaba serve` with DALABA_FAKE_NOW: its web app and its scheduler both live then."""
    from tests.scheduler.test_processes import free_port

    editor = make_user(Role.EDITOR)
    token = users.issue_api_token(session, None, editor, "clock")
    session.commit()
    engine.dispose()
    port = free_port()
    # 16:01 UTC, years from now: the township is on 2031-03-02 already.
    proc = _serve(tmp_path, port, "2031-03-01T16:01:00+00:00")
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2):
                    break
            except OSError:
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "dalaba serve did not start"
                time.sleep(0.2)
        body = {
            "title": "停水通知",
            "body": "明天上午停水。",
            "topic_id": topic.id,
            "area_ids": [grid["v1"].id],
            "channels": ["loudspeaker"],
            "repeats": 1,
        }
        # The UTC date is the township's yesterday: a notice ending then has ended.
        status, answer = _api(
            port,
            "/announcements",
            token,
            {**body, "start_date": "2031-03-01", "end_date": "2031-03-01"},
        )
        assert status == 400 and answer["error"]["fields"]["end_date"] == "结束日期已经过去", answer
        status, answer = _api(
            port,
            "/announcements",
            token,
            {**body, "start_date": "2031-03-02", "end_date": "2031-03-02"},
        )
        assert status == 201, answer
        # The scheduler ticks on the same clock.
        last_tick = None
        while time.monotonic() < deadline and last_tick is None:
            with make_session_factory(engine)() as s:
                lease = s.get(SchedulerLease, "scheduler")
                last_tick = (lease.info or {}).get("last_tick") if lease else None
            time.sleep(0.2)
        assert last_tick is not None, (tmp_path / "serve.log").read_text()[-3000:]
        assert datetime.fromisoformat(last_tick).date() == date(2031, 3, 1)
        assert "DALABA_FAKE_NOW 已设置，时钟从 2031-03-01 16:0" in (
            tmp_path / "serve.log"
        ).read_text(encoding="utf-8")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
