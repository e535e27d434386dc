"""立即插播 through a real `dalaba serve`: a reviewer approves a 寒潮 warning with 立即插播,
the scheduler builds it, a box polling ``now.mp3`` gets it, the operator's page shows the
banner and takes 已播放, and the reviewer ends it (the box gets 204 again)."""

from __future__ import annotations

import http.cookiejar
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import Announcement, AuditLog, BreakInOutlet, Outlet, Role, Slot, User
from cms.services import operators as operator_svc
from cms.settings import Settings
from tests.conftest import PASSWORD
from tests.scheduler.helpers import LONG_AGO
from tests.scheduler.test_processes import Server

pytestmark = pytest.mark.slow
CSRF = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


class Browser:
    """One person's cookies against the server, CSRF tokens read from each form page."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar())
        )

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.headers, exc.read()

    def post(self, page: str, path: str, data: dict[str, str]) -> tuple[int, str]:
        _status, _headers, body = self.get(page)
        token = CSRF.search(body.decode())
        assert token, f"no form on {page}"
        encoded = urllib.parse.urlencode({"csrf_token": token.group(1), **data}).encode()
        with self.opener.open(self.base + path, data=encoded, timeout=30) as response:
            return response.status, response.read().decode()

    def login(self, user: User) -> None:
        status, _page = self.post(
            "/login", "/login", {"username": user.username, "password": PASSWORD}
        )
        assert status == 200


@pytest.fixture
def server(settings: Settings, tmp_path: Any) -> Iterator[Callable[[], Server]]:
    started: list[Server] = []

    def start() -> Server:
        server = Server(settings, tmp_path, "serve")
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def test_a_cold_wave_breaks_in_through_dalaba_serve(
    session: Session,
    grid: dict[str, Any],
    make_user: Callable[..., User],
    make_announcement: Callable[..., Announcement],
    server: Callable[[], Server],
) -> None:
    reviewer, operator = make_user(Role.REVIEWER), make_user(Role.OPERATOR)
    outlet = Outlet(name="石桥村大喇叭", kind="loudspeaker", area_id=grid["g1"].id)
    outlet.created_at = LONG_AGO
    from datetime import time as clock_time

    outlet.slots = [Slot(at=clock_time(7, 30), minutes=10), Slot(at=clock_time(19, 0))]
    outlet.operators.append(operator)
    session.add(outlet)
    session.flush()
    token = operator_svc.issue_outlet_token(session, None, outlet)
    ann = make_announcement(
        "in_review",
        title="寒潮蓝色预警",
        body="今夜到明天气温下降八到十度，请各户做好防寒，注意用火用电安全。",
        priority="urgent",
        area_ids=[grid["v1"].id],
    )
    session.commit()
    serve = server()

    box = Browser(serve.port)  # an IP speaker: no cookies it cares about
    status, headers, body = box.get(f"/o/{token}/now.mp3")
    assert (status, body, headers["X-Dalaba-Breakin"]) == (204, b"", "none")
    assert headers["Retry-After"]
    status, headers, body = box.get(f"/o/{token}/now.mp3?idle=silence")
    assert status == 200 and headers["Content-Type"] == "audio/mpeg" and body[:1] == b"\xff"

    officer = Browser(serve.port)
    officer.login(reviewer)
    page = f"/announcements/{ann.id}"
    status, text = officer.post(
        page, f"/announcements/{ann.id}/approve", {"comment": "同意", "breakin": "1"}
    )
    assert status == 200 and "寒潮蓝色预警" in text  # redirected to the break-ins page
    approved_at = time.monotonic()

    # The box polls until the insert is there (the scheduler ticks every 0.3 s here).
    deadline = time.monotonic() + 90
    while True:
        status, headers, body = box.get(f"/o/{token}/now.mp3")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200, serve.output()[-3000:]
    ready_s = time.monotonic() - approved_at
    assert headers["Content-Type"] == "audio/mpeg" and len(body) > 20_000
    assert body[:3] == b"ID3"
    print(f"break-in ready at the box {ready_s:.1f} s after approval")
    etag = headers["ETag"]
    # A box that remembers what it played is told so, and can resume a cut download.
    status, _h, again = box.get(f"/o/{token}/now.mp3", {"If-None-Match": etag})
    assert (status, again) == (304, b"")
    status, _h, part = box.get(f"/o/{token}/now.mp3", {"Range": "bytes=100-"})
    assert status == 206 and part == body[100:]

    # The operator's phone: the banner, its audio, and 已播放.
    phone = Browser(serve.port)
    phone.login(operator)
    status, _h, mine = phone.get("/operator/")
    html = mine.decode()
    assert status == 200 and "breakin-banner" in html and "寒潮蓝色预警" in html
    audio = re.search(r'src="(/operator/breakins/\d+\.mp3)"', html)
    assert audio is not None
    status, _h, played = phone.get(audio.group(1))
    assert status == 200 and played == body
    copy_path = audio.group(1).removesuffix(".mp3") + "/played"
    status, after = phone.post("/operator/", copy_path, {})
    assert status == 200 and 'data-testid="breakin-played"' in after

    # The reviewer ends it: the box is told there is nothing to play again.
    status, listing = officer.post("/breakins/", "/breakins/1/end", {})
    assert status == 200
    status, headers, body = box.get(f"/o/{token}/now.mp3")
    assert (status, body) == (204, b"")
    status, _h, mine = phone.get("/operator/")
    assert "breakin-banner" not in mine.decode()

    session.expire_all()
    copy = session.scalar(select(BreakInOutlet))
    assert copy is not None and copy.played_at is not None and copy.via == "web"
    actions = [
        a
        for a in session.scalars(select(AuditLog.action).order_by(AuditLog.id))
        if a.startswith(("announcement.", "breakin."))
    ]
    assert actions[-4:] == [
        "announcement.approve", "breakin.start", "breakin.played", "breakin.end"
    ]  # fmt: skip
