"""Proof from every box: fake terminals (an IP speaker, a 4G column, a PC player …) fetch
through their own links from a real waitress server on a schedule, some in ranges, some
cut short; each fetch is recorded per terminal off the request path and every slot's
status comes out right; a box silent for a day raises an alert; a revoked link is dead."""

from __future__ import annotations

import http.client
import socket
import time as wall
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Alert, Outlet, Program, Role, Terminal, TerminalFetch, User
from cms.services import terminals as svc
from cms.settings import Settings
from tests.conftest import login
from tests.operators.conftest import Clock, write_program

pytestmark = pytest.mark.slow


@pytest.fixture
def terminal_clock(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The terminal views read the injected clock, as the operator views do."""
    return clock


def get(
    port: int, path: str, headers: dict[str, str] | None = None, *, read: int | None = None
) -> tuple[int, bytes, Any]:
    """One request; ``read``: stop after that many bytes of the body and hang up."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    if read is not None:
        # A tiny receive window, so that the server cannot push the whole file into it.
        conn.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read(read) if read is not None else response.read()
    status, heads = response.status, response.headers
    response.close()  # the socket closes only when its file is closed too
    conn.close()
    return status, body, heads


def wait_fetches(app: Any, session: Session, count: int) -> list[TerminalFetch]:
    """The download log writes when the server has closed each response: wait for it."""
    from cms.web.downloads import flush_downloads

    deadline = wall.monotonic() + 20
    while True:
        flush_downloads(app)
        session.rollback()  # a new read transaction sees what the writer committed
        rows = list(session.scalars(select(TerminalFetch).order_by(TerminalFetch.id)))
        if len(rows) >= count or wall.monotonic() > deadline:
            return rows
        wall.sleep(0.05)


def test_fake_boxes_fetch_on_a_schedule_and_their_statuses_come_out_right(
    app: Any,
    session: Session,
    settings: Settings,
    make_outlet: Callable[..., Outlet],
    make_program: Callable[..., Program],
    make_user: Callable[..., User],
    terminal_clock: Clock,
    day: date,
    waitress_port: Callable[..., int],
) -> None:
    clock = terminal_clock
    admin = make_user(Role.ADMIN)
    outlet = make_outlet(slots=(time(7, 30), time(19, 0)))
    morning = make_program(outlet, day, 0, seconds=2.0)
    evening = make_program(outlet, day, 1, seconds=2.0, frequency=660)
    size = Path(morning.path or "").stat().st_size
    boxes: dict[str, tuple[Terminal, str]] = {}
    for name, kind in (
        ("speaker", "ip_speaker"),
        ("column", "column_4g"),
        ("pc", "pc_player"),
        ("late", "ip_speaker"),
    ):
        boxes[name] = svc.register(session, admin, outlet, kind=kind, name=name)
    session.commit()
    port = waitress_port()

    def url(name: str, rest: str) -> str:
        return f"/t/{boxes[name][1]}/{rest}"

    # 07:00: the speaker takes today.mp3 (the 07:30 program) whole; the column takes it in
    # two ranges ten minutes apart; the PC player starts and never resumes.
    clock.set(day, 7, 0)
    status, body, heads = get(port, url("speaker", "today.mp3"))
    assert status == 200 and len(body) == size
    assert get(port, url("column", "today.mp3"), {"Range": "bytes=0-999"})[0] == 206
    assert get(port, url("pc", f"{day.isoformat()}/0730.mp3"), {"Range": "bytes=0-4999"})[0] == 206
    # A fetch is stamped when the server has sent its last byte (it closes the response a
    # moment after the client has read it): the clock moves on only once it is recorded.
    wait_fetches(app, session, 3)
    clock.set(day, 7, 10)
    status, rest, _h = get(port, url("column", "today.mp3"), {"Range": "bytes=1000-"})
    assert status == 206 and len(rest) == size - 1000
    wait_fetches(app, session, 4)
    # 08:00, after the slot began: the late box takes the morning program whole.
    clock.set(day, 8, 0)
    assert get(port, url("late", f"{day.isoformat()}/0730.mp3"))[0] == 200
    # A revalidation sends nothing and is no fetch of bytes.
    assert get(port, url("speaker", f"{day.isoformat()}/0730.mp3"),
               {"If-None-Match": heads["ETag"]})[0] == 304  # fmt: skip

    rows = wait_fetches(app, session, 5)
    by_box = {t.id: name for name, (t, _tok) in boxes.items()}
    got = [(by_box[r.terminal_id], r.ranges, r.complete) for r in rows if r.bytes_sent]
    assert got == [
        ("speaker", f"0-{size - 1}", True),
        ("column", "0-999", False),
        ("pc", "0-4999", False),
        ("column", f"1000-{size - 1}", False),
        ("late", f"0-{size - 1}", True),
    ]
    assert all(r.program_id == morning.id for r in rows)

    statuses = {
        box.terminal.name: [s for _p, s, _r in box.slots]
        for box in svc.day_statuses(session, [outlet.id], day, settings.tz)
    }
    assert statuses == {
        "speaker": ["full", "none"],
        "column": ["full", "none"],  # two ranges, together the whole file, before 07:30
        "pc": ["partial", "none"],
        "late": ["late", "none"],
    }
    assert evening.id not in {r.program_id for r in rows}
    # The county report counts programs some box fetched whole (late ones too).
    assert svc.whole_programs(session, [morning.id, evening.id]) == {morning.id}

    # 督查 shows them per box beside the manual confirmations; so does the outlet's day page.
    client = app.test_client()
    login(client, admin)
    page = client.get("/compliance").get_data(as_text=True)
    assert page.count('data-testid="box-status"') == 8 and "只下载了一部分" in page
    page = client.get(f"/schedule/outlets/{outlet.id}/{day.isoformat()}").get_data(as_text=True)
    assert page.count('data-testid="box-status"') == 8 and "开播后才下载完" in page

    # Revoked: the link is dead at once, the history stays.
    session.rollback()  # end the read transaction: a write begins afresh (see cms/db.py)
    svc.revoke(session, admin, boxes["pc"][0])
    session.commit()
    assert get(port, url("pc", "today.mp3"))[0] == 404


def test_a_download_cut_short_counts_only_what_went_out(
    app: Any,
    session: Session,
    settings: Settings,
    make_outlet: Callable[..., Outlet],
    make_program: Callable[..., Program],
    make_user: Callable[..., User],
    terminal_clock: Clock,
    day: date,
    waitress_port: Callable[..., int],
) -> None:
    admin = make_user(Role.ADMIN)
    outlet = make_outlet(slots=(time(19, 0),))
    program = make_program(outlet, day, 0)
    # A long program (the bytes need not be audio for this): far more than socket buffers.
    big = 24 * 1024 * 1024
    write_program(Path(program.path or ""), b"\xff\xfb" * (big // 2))
    terminal, token = svc.register(session, admin, outlet, kind="column_4g", name="音柱")
    session.commit()
    port = waitress_port()
    terminal_clock.set(day, 12, 0)
    status, body, _h = get(port, f"/t/{token}/today.mp3", read=64 * 1024)
    assert status == 200 and len(body) == 64 * 1024
    (row,) = wait_fetches(app, session, 1)
    assert row.terminal_id == terminal.id and row.size == big
    assert 64 * 1024 <= row.bytes_sent < big and not row.complete
    box = svc.day_statuses(session, [outlet.id], day, settings.tz)[0]
    assert [s for _p, s, _r in box.slots] == ["partial"]


def test_a_box_silent_for_a_day_raises_an_alert(
    session: Session,
    make_outlet: Callable[..., Outlet],
    make_user: Callable[..., User],
    settings: Settings,
) -> None:
    from cms.channels import ChannelRegistry
    from cms.clock import ManualClock
    from cms.db import make_session_factory
    from cms.jobs import terminals as check
    from cms.jobs.context import Context

    admin = make_user(Role.ADMIN)
    outlet = make_outlet()
    quiet, _ = svc.register(session, admin, outlet, kind="ip_speaker", name="村口音箱")
    busy, _ = svc.register(session, admin, outlet, kind="column_4g", name="广场音柱")
    new, _ = svc.register(session, admin, outlet, kind="pc_player", name="新电脑")
    now = datetime.now(UTC)
    quiet.created_at = busy.created_at = now - timedelta(days=3)
    session.add(
        TerminalFetch(
            terminal_id=busy.id, outlet_id=outlet.id, day=now.date(), kind="mp3",
            at=now - timedelta(hours=5), size=10, bytes_sent=10, complete=True, ranges="0-9",
        )
    )  # fmt: skip
    session.commit()
    ctx = Context(
        settings=settings,
        engine=session.get_bind(),  # type: ignore[arg-type]
        sessions=make_session_factory(session.get_bind()),  # type: ignore[arg-type]
        registry=ChannelRegistry(),
        worker="test",
        clock=ManualClock(now),
    )
    assert check.check_silent(ctx) == 1
    assert check.check_silent(ctx) == 0  # once a day
    alert = session.scalar(select(Alert).where(Alert.kind == "terminal_silent"))
    assert alert is not None and alert.object_id == quiet.id and new.id != alert.object_id


def test_a_terminal_gets_the_rss_zip_and_loop_feeds_and_its_idle_polls_keep_it_alive(
    app: Any,
    session: Session,
    settings: Settings,
    make_outlet: Callable[..., Outlet],
    make_program: Callable[..., Program],
    make_user: Callable[..., User],
    terminal_clock: Clock,
    day: date,
    waitress_port: Callable[..., int],
) -> None:
    import io
    import zipfile
    from xml.etree import ElementTree as ET

    admin = make_user(Role.ADMIN)
    outlet = make_outlet(slots=(time(19, 0),))
    program = make_program(outlet, day, 0, seconds=2.0)
    terminal, token = svc.register(session, admin, outlet, kind="column_4g", name="音柱")
    noon = terminal_clock.set(day, 12, 0)
    # Registered two days ago: a day without any sign of life would make it silent.
    terminal.created_at = noon - timedelta(days=2)
    session.commit()
    port = waitress_port()

    status, body, heads = get(port, f"/t/{token}/feed.xml")
    assert status == 200 and heads["Content-Type"].startswith("application/rss+xml")
    enclosures = [e.get("url") or "" for e in ET.fromstring(body).iter("enclosure")]
    assert enclosures == [f"{settings.base_url}/t/{token}/{day.isoformat()}/1900.mp3"]
    assert "/o/" not in body.decode("utf-8")
    status, body, _h = get(port, f"/t/{token}/{day.isoformat()}.zip")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert len(archive.namelist()) == 1
    status, loop, _h = get(port, f"/t/{token}/loop.mp3")
    assert status == 200 and len(loop) > Path(program.path or "").stat().st_size
    assert get(port, f"/t/{token}/{day.isoformat()}/1900/loop.mp3")[0] == 200
    assert get(port, f"/t/{token}/{day.isoformat()}.m3u")[0] == 200
    assert get(port, "/t/not-a-token/feed.xml")[0] == 404
    assert get(port, f"/t/{token}/2020-13-01.zip")[0] == 404

    rows = wait_fetches(app, session, 5)
    assert sorted(r.kind for r in rows) == ["loop", "loop", "m3u", "rss", "zip"]
    assert all(r.terminal_id == terminal.id and r.complete for r in rows)
    # Feeds and loops are not the slot's own file: the slot's status stays its program's.
    assert all(r.program_id is None for r in rows)
    box = svc.day_statuses(session, [outlet.id], day, settings.tz)[0]
    assert [s for _p, s, _r in box.slots] == ["none"]

    # A day later the box has only polled now.mp3 (nothing playing: 204) and fetched nothing.
    session.execute(TerminalFetch.__table__.delete())
    session.commit()
    later = terminal_clock.set(day + timedelta(days=1), 12, 0)
    assert [t.id for t in svc.silent(session, later)] == [terminal.id]
    for _ in range(3):
        assert get(port, f"/t/{token}/now.mp3")[0] == 204
    (idle,) = wait_fetches(app, session, 1)  # polls close together are one sign of life
    assert idle.kind == svc.IDLE_KIND and idle.program_id is None and not idle.complete
    assert idle.at == later
    assert svc.silent(session, later) == []
    box = svc.day_statuses(session, [outlet.id], day + timedelta(days=1), settings.tz)[0]
    assert box.slots == [] or [s for _p, s, _r in box.slots] == ["none"]
    assert svc.month_counts(session, [outlet.id], day, day + timedelta(days=1))["fetches"] == 0
    # Ten minutes on, a poll is noted again.
    terminal_clock.set(day + timedelta(days=1), 12, 11)
    assert get(port, f"/t/{token}/now.mp3")[0] == 204
    assert len(wait_fetches(app, session, 2)) == 2
