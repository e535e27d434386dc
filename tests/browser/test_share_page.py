"""The share page and the 转发到微信群 panel on a phone, in Chinese and English."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cms.models import Announcement, Clip, ClipProfile, JobState, Outlet, Role, Status, User
from cms.services import announcements
from cms.services import operators as operator_svc
from tests.browser.test_officer_path import log_in
from tests.operators.conftest import encode_tone

pytestmark = pytest.mark.browser

SRT = "1\n00:00:00,000 --> 00:00:01,000\n各位村民请注意\n"


def prepare(live_server: Any) -> tuple[int, str, str]:
    """A live demo notice for 石桥村 with a rendered clip, and 石桥村's operator link.

    Returns the announcement id, its share path and the operator link path.
    """
    folder: Path = live_server.settings.data_dir / "audio" / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    with live_server.session() as session:
        today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
        ann = next(
            a
            for a in session.scalars(
                select(Announcement)
                .where(Announcement.status == Status.APPROVED)
                .order_by(Announcement.id)
            )
            if any(area.name in {"石桥村", "清水镇"} for area in a.approved_revision.areas)
            and a.approved_revision.end_date >= today
        )
        rev_id = ann.approved_revision_id
        mp3 = encode_tone(folder / f"share-{rev_id}.mp3", 1.0, 440)
        srt = folder / f"share-{rev_id}.srt"
        srt.write_text(SRT, encoding="utf-8")
        session.add(
            Clip(
                revision_id=rev_id,
                profile=ClipProfile.LOUDSPEAKER,
                state=JobState.DONE,
                path=str(mp3),
                subtitles_path=str(srt),
                duration=1.0,
            )
        )
        village = next(
            o
            for o in session.scalars(select(Outlet).where(Outlet.active).order_by(Outlet.id))
            if o.area.name == "石桥村"
        )
        token = operator_svc.issue_outlet_token(session, None, village)
        session.commit()
        return ann.id, f"/s/{ann.share_token}", f"/o/{token}/"


def fits(page: Any) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"{page.url} is {width} px wide on a {viewport} px phone"


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_share_page_and_panel_on_a_phone(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    from playwright.sync_api import expect  # the browser fixture has checked it is there

    ann_id, share_path, link_path = prepare(live_server)
    page, problems = new_page("phone")
    if lang == "en":
        page.goto("/login")
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")

    # The public page: what a villager sees after tapping the link in a WeChat group.
    page.goto(share_path)
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == ("en" if lang == "en" else "zh-CN")
    office = page.inner_text("[data-testid=office]")
    assert office == ("清水镇 Publicity Office" if lang == "en" else "清水镇宣传办")
    assert page.locator("h1").inner_text()
    # Our player (one big button) drives the <audio>; the browser's own bar is hidden.
    assert page.locator("[data-testid=play]").is_visible()
    assert page.locator("audio").count() == 1 and not page.locator("audio").is_visible()
    assert page.locator("audio track[kind=subtitles]").count() == 1
    for prop in ("og:title", "og:description", "og:image"):
        assert page.locator(f"meta[property='{prop}']").get_attribute("content")
    # No external script: the page's own small script is inline (it only improves the player).
    assert page.locator("script[src]").count() == 0
    fits(page)
    screenshot(page, f"phone-{lang}-share-page")

    # The officer's panel on the announcement's page.
    log_in(page, "lishuji")
    page.goto(f"/announcements/{ann_id}")
    panel = page.locator("[data-testid=share-panel]")
    panel.scroll_into_view_if_needed()
    assert panel.locator("h2").inner_text() == (
        "Forward to a WeChat group" if lang == "en" else "转发到微信群"
    )
    assert panel.locator("[data-testid=share-qr] svg").is_visible()
    box = panel.locator("[data-testid=share-qr] svg").bounding_box()
    assert box is not None and box["width"] >= 150
    assert panel.locator("[data-testid=share-url]").input_value().endswith(share_path)
    text = panel.locator("textarea.share-text").input_value()
    assert text.endswith(share_path)
    copy = panel.locator("[data-testid=share-copy]")
    assert copy.is_visible()
    copy.click()
    # Copied, or (where the browser refuses the clipboard) selected for a long press.
    expect(panel.locator(".copy-status")).to_have_text(re.compile(r"\S"))
    assert panel.locator("[data-testid=share-mp3]").is_visible()
    fits(page)
    screenshot(page, f"phone-{lang}-share-panel")

    # The operator's private link page shows the same panel for the village's notices.
    page.goto(link_path)
    assert page.locator(f"[data-testid=share-panel] a[href$='{share_path}']").count() == 1
    assert page.locator("[data-testid=share-panel] [data-testid=share-qr] svg").first.is_visible()
    assert page.locator("[data-testid=share-renew]").count() == 0
    fits(page)
    screenshot(page, f"phone-{lang}-share-operator")

    # Withdrawn: the link says so, with 410.
    with live_server.session() as session:
        ann = session.get(Announcement, ann_id)
        admin = session.scalar(select(User).where(User.role == Role.ADMIN))
        announcements.withdraw(session, admin, ann)
        session.commit()
    problems.expect(410)
    response = page.goto(share_path)
    assert response is not None and response.status == 410
    assert page.locator("h1").inner_text() == ("Withdrawn" if lang == "en" else "已撤回")
    fits(page)
    screenshot(page, f"phone-{lang}-share-withdrawn")
