"""Tried as a new user would, in Chromium: a reviewer sends a 寒潮 break-in on approval, the
operator's phone shows it and plays it and says 已播放, a fake IP speaker fetches now.mp3,
and the month's ledger PDF shows the break-in (its pages saved as PNG to look at)."""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cms.demo import DEMO_PASSWORD
from tests.browser.conftest import SCREENSHOTS, LiveServer

pytestmark = pytest.mark.browser
TITLE = "寒潮蓝色预警"


def log_in(page: Any, username: str, language: str = "zh") -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.card button.primary")
    page.wait_for_url(re.compile(r"/$"))
    if language == "en":
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")


def urgent_in_review(server: LiveServer) -> tuple[int, str]:
    """A cold-wave warning for the whole township, written by 王丽 and waiting for review;
    and the private link of 石桥村's loudspeaker (its IP speaker polls now.mp3 there)."""
    from sqlalchemy import select

    from cms.models import Area, AreaKind, Outlet, User
    from cms.services import announcements, operators
    from cms.web import today

    with server.session() as session:
        editor = session.scalar(select(User).where(User.username == "wangli"))
        town = session.scalar(select(Area).where(Area.kind == AreaKind.TOWNSHIP))
        outlet = session.scalar(
            select(Outlet).join(Area).where(Area.name == "石桥村", Outlet.kind == "loudspeaker")
        )
        assert editor and town and outlet
        day = today(server.settings).isoformat()
        ann = announcements.create(
            session,
            editor,
            {
                "title": TITLE,
                "spoken_text": "",
                "topic_id": None,
                "priority": "urgent",
                "body": "县气象台发布寒潮蓝色预警：今夜起气温下降八到十度，请各户做好防寒保暖，"
                "关好门窗，注意用火用电安全。",
                "area_ids": [town.id],
                "to_loudspeaker": True,
                "to_chats": False,
                "start_date": day,
                "end_date": day,
                "repeats": 2,
                "chat_post_time": "",
                "voice": "zh-CN-XiaoxiaoNeural",
                "rate": 0,
            },  # fmt: skip
            today=today(server.settings),
        )
        announcements.submit(session, editor, ann)
        token = operators.issue_outlet_token(session, None, outlet)
        session.commit()
        return ann.id, token


def build_break_ins(server: LiveServer) -> None:
    """What the scheduler's break-in tick does (this server runs without a scheduler)."""
    from cms.channels import ChannelRegistry
    from cms.db import make_session_factory
    from cms.jobs import breakin
    from cms.jobs.context import Context

    ctx = Context(
        settings=server.settings,
        engine=server.engine,
        sessions=make_session_factory(server.engine),
        registry=ChannelRegistry(),
        worker="browser-test",
    )
    assert breakin.run_due(ctx) == 1


@pytest.mark.parametrize("language", ["zh", "en"])
def test_a_cold_wave_breaks_in_from_review_to_the_phone_the_box_and_the_ledger(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: LiveServer,
    screenshot: Callable[..., Path],
    language: str,
) -> None:
    ann_id, token = urgent_in_review(live_server)

    # The reviewer approves it with 立即插播.
    reviewer, _problems = new_page("phone")
    log_in(reviewer, "lishuji", language)
    reviewer.goto(f"/announcements/{ann_id}")
    reviewer.check("[data-testid=approve-breakin]")
    reviewer.click("form.review button.primary")
    reviewer.wait_for_url(re.compile(r"/breakins/$"))
    assert TITLE in reviewer.inner_text("main")
    build_break_ins(live_server)

    # The operator's phone: the banner, one tap plays it, one says it was played.
    phone, _problems = new_page("phone")
    log_in(phone, "shiqiao", language)
    phone.goto("/operator/")
    banner = phone.locator("section.breakin-banner")
    banner.wait_for()
    assert TITLE in banner.inner_text()
    box = banner.locator("[data-testid=breakin-play]").bounding_box()
    assert box and box["height"] >= 60 and box["width"] >= 60  # a thumb's target
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(phone, f"phone-breakin-banner-{language}", full_page=False)
    phone.click("[data-testid=breakin-play]")
    phone.wait_for_function(
        "() => { const a = document.querySelector('.breakin-audio');"
        " return a.readyState >= 2 && a.duration > 3; }"
    )
    phone.click("[data-testid=breakin-confirm]")
    phone.wait_for_selector("[data-testid=breakin-played]")
    screenshot(phone, f"phone-breakin-played-{language}", full_page=False)

    # A fake IP speaker polls the outlet link's now.mp3.
    with urllib.request.urlopen(f"{live_server.url}/o/{token}/now.mp3", timeout=30) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "audio/mpeg"
        assert r.headers["X-Dalaba-Breakin"].isdigit() and len(r.read()) > 20_000

    # The month's ledger, as PDF, lists the break-in.
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils (pdftotext, pdftoppm) are needed to read the PDF")
    reviewer.goto("/ledger/")
    assert TITLE in reviewer.inner_text("main")
    with reviewer.expect_download() as download:
        reviewer.click("[data-testid=ledger-pdf]")
    pdf = SCREENSHOTS / f"ledger-{language}.pdf"
    download.value.save_as(pdf)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert TITLE in text
    assert ("第 1 页" if language == "zh" else "Page 1 of") in text
    subprocess.run(
        ["pdftoppm", "-r", "70", "-png", str(pdf), str(SCREENSHOTS / f"ledger-{language}-page")],
        check=True,
    )
