"""Through `dalaba serve`: a notice aimed at 石桥村 → 三组 plays on the village's loudspeaker
(named "（三组）" in its program and run sheet) and goes to the village chat; a notice whose
channels reach nothing is refused at submission."""

from __future__ import annotations

import http.cookiejar
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cms.db import make_session_factory
from cms.models import Area, Delivery, DeliveryState, OutboxMessage, Outlet, Program, User
from cms.settings import Settings
from tests.scheduler.test_processes import Server


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    started: list[Server] = []

    def start(settings: Settings, name: str, *args: str) -> Server:
        server = Server(settings, tmp_path, name, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _api(
    server: Server, method: str, path: str, token: str, payload: Any = None
) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/api/v1{path}",
        method=method,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _publish(server: Server, body: dict[str, Any], editor_token: str, reviewer_token: str) -> int:
    """An editor creates and submits ``body`` through the API, a reviewer approves it: its id."""
    status, created = _api(server, "POST", "/announcements", editor_token, body)
    assert status == 201, created
    ann_id = int(created["id"])
    assert _api(server, "POST", f"/announcements/{ann_id}/submit", editor_token)[0] == 200
    status, approved = _api(
        server, "POST", f"/announcements/{ann_id}/approve", reviewer_token, {"comment": "同意"}
    )
    assert status == 200 and approved["status"] == "approved", approved
    return ann_id


def _browser(server: Server, username: str, password: str) -> Callable[[str], str]:
    """A logged-in web session (cookies and the login form's CSRF token), as a person has."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{server.port}"
    page = opener.open(f"{base}/login", timeout=20).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token is not None
    form = {"username": username, "password": password, "csrf_token": token.group(1)}
    opener.open(f"{base}/login", urllib.parse.urlencode(form).encode(), timeout=20).read()

    def get(path: str) -> str:
        with opener.open(f"{base}{path}", timeout=20) as r:
            return str(r.read().decode())

    return get


def test_a_group_notice_is_built_into_its_village_loudspeakers_program(  # type: ignore[no-untyped-def]
    settings: Settings, engine: Engine, session: Session, servers
) -> None:
    from cms.demo import DEMO_PASSWORD, seed
    from cms.services import users

    now = datetime.now(UTC)
    today = now.astimezone(settings.tz).date()
    # Installed yesterday: every slot of today and tomorrow applies.
    seed(session, settings, today=today, now=now - timedelta(days=1))
    editor = session.scalars(select(User).where(User.username == "wangli")).one()
    reviewer = session.scalars(select(User).where(User.username == "lishuji")).one()
    editor_token = users.issue_api_token(session, None, editor, "reach")
    reviewer_token = users.issue_api_token(session, None, reviewer, "reach")
    village = session.scalars(select(Area).where(Area.name == "石桥村")).one()
    group = session.scalars(
        select(Area).where(Area.name == "三组", Area.parent_id == village.id)
    ).one()
    xinhua = session.scalars(select(Area).where(Area.name == "新华村")).one()
    speaker = session.scalars(select(Outlet).where(Outlet.name == "石桥村村委会大喇叭")).one()
    session.commit()

    server = servers(settings, "reach")
    server.wait_ready(timeout=90)
    body = {
        "title": "三组户长会通知",
        "body": "三组各户户长今晚七点到组活动室开会，商量修路的事。",
        "area_ids": [group.id],
        "channels": ["loudspeaker", "chats"],
        "start_date": today.isoformat(),
        "end_date": (today + timedelta(days=1)).isoformat(),
        "repeats": 1,
        "chat_post_time": "00:00",
    }
    ann_id = _publish(server, body, editor_token, reviewer_token)
    approved_at = time.monotonic()

    # A chats-only notice for 新华村 (a loudspeaker, but no chat bound) reaches nothing.
    refused_body = {**body, "title": "新华村群通知", "area_ids": [xinhua.id], "channels": ["chats"]}
    status, draft = _api(server, "POST", "/announcements", editor_token, refused_body)
    assert status == 201
    status, refused = _api(server, "POST", f"/announcements/{draft['id']}/submit", editor_token)
    assert status == 400
    assert "没有可用于所选渠道的大喇叭或群聊" in refused["error"]["fields"]["area_ids"]

    sessions = make_session_factory(engine)
    wanted = "三组户长会通知（三组）"
    built_after = posted_after = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (built_after is None or posted_after is None):
        with sessions() as s:
            programs = s.scalars(
                select(Program).where(
                    Program.outlet_id == speaker.id, Program.manifest.is_not(None)
                )
            ).all()
            if built_after is None and any(
                item.get("title") == wanted
                for p in programs
                for item in (p.manifest or {}).get("announcements", [])
            ):
                built_after = time.monotonic() - approved_at
            posts = s.scalars(select(Delivery).where(Delivery.state == DeliveryState.SENT)).all()
            if posted_after is None and any(d.revision.announcement_id == ann_id for d in posts):
                posted_after = time.monotonic() - approved_at
        assert server.proc.poll() is None, server.output()[-3000:]
        time.sleep(0.5)
    assert built_after is not None, server.output()[-3000:]
    assert posted_after is not None, server.output()[-3000:]
    print(
        f"RESULT approval_to_program_s={built_after:.1f} approval_to_chat_post_s={posted_after:.1f}"
    )

    with sessions() as s:
        deliveries = s.scalars(
            select(Delivery)
            .join(Delivery.revision)
            .where(Delivery.revision.has(announcement_id=ann_id))
        ).all()
        assert {d.chat_group.title for d in deliveries} == {"石桥村村民群"}
        outbox = s.scalars(
            select(OutboxMessage).where(OutboxMessage.text.contains("三组户长会通知"))
        ).all()
        assert outbox and all(m.chat_group_id == deliveries[0].chat_group_id for m in outbox)
        other = s.scalars(
            select(Program).where(Program.outlet_id != speaker.id, Program.manifest.is_not(None))
        ).all()
        for p in other:
            titles = [i.get("title", "") for i in (p.manifest or {}).get("announcements", [])]
            # The village's mobile speaker plays it too; no other village's outlet does.
            if p.outlet.area_id == village.id:
                continue
            assert not any("三组户长会通知" in t for t in titles), (p.outlet.name, titles)

    # Seen from outside, as the officer sees it: the run sheet and the notice's page.
    get = _browser(server, "wangli", DEMO_PASSWORD)
    tomorrow = (today + timedelta(days=1)).isoformat()
    sheet = get(f"/schedule/outlets/{speaker.id}/{tomorrow}/runsheet")
    assert wanted in sheet
    page = get(f"/announcements/{ann_id}")
    assert 'data-testid="outcome"' in page and "石桥村村委会大喇叭" in page and "（三组）" in page
    assert "石桥村村民群" in page and "已发送" in page
