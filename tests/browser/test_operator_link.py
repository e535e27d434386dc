"""Handing a new operator link over on a phone: copy, system share sheet, QR code, paper card."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from cms.demo import DEMO_PASSWORD

pytestmark = pytest.mark.browser

# Headless Chromium has no share sheet: this stands in for it and records what was shared.
FAKE_SHARE = """
window.__shared = [];
navigator.share = function (data) { window.__shared.push(data); return Promise.resolve(); };
"""


def log_in(page: Any, username: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.card button.primary")
    page.wait_for_url(re.compile(r"/$"))


@pytest.mark.parametrize("language", ["zh", "en"])
def test_admin_hands_a_new_link_over_on_a_phone(
    new_page: Callable[..., tuple[Any, Any]],
    screenshot: Callable[..., Any],
    language: str,
) -> None:
    page, _problems = new_page("phone")
    page.context.add_init_script(FAKE_SHARE)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    log_in(page, "admin")
    if language == "en":
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")
    page.goto("/operator/links")
    page.locator("tr[data-testid^=link-row-]").first.locator("button[value=issue]").click()
    panel = page.locator("[data-testid=new-link]")
    panel.wait_for()
    url = page.input_value("[data-testid=new-link-url]")
    assert "/o/" in url

    # The QR code is drawn and fits the phone screen; nothing overflows sideways.
    box = page.locator("[data-testid=new-link-qr] svg").bounding_box()
    assert box and 100 <= box["width"] <= 390
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.click("[data-testid=new-link-copy]")
    page.wait_for_selector(".link-handover .copy-status:not(:empty)")
    assert page.evaluate("navigator.clipboard.readText()") == url

    share = page.locator("[data-testid=new-link-share]")
    assert share.is_visible()  # shown because the browser has a share sheet
    share.click()
    shared = page.evaluate("window.__shared")
    assert shared and shared[0]["url"] == url
    screenshot(page, f"phone-link-handover-{language}")

    # On paper only the card: outlet, QR code, the link and how to play today's audio.
    page.emulate_media(media="print")
    assert page.locator(".link-card").is_visible()
    assert not page.locator("h1").is_visible()
    assert not page.locator("[data-testid=new-link-copy]").is_visible()
    assert url in page.inner_text(".link-card")
    screenshot(page, f"phone-link-card-print-{language}")
    page.emulate_media(media="screen")


def test_no_share_button_without_a_share_sheet(
    new_page: Callable[..., tuple[Any, Any]],
) -> None:
    page, _problems = new_page("desktop")
    log_in(page, "admin")
    page.goto("/operator/links")
    page.locator("tr[data-testid^=link-row-]").first.locator("button[value=issue]").click()
    page.locator("[data-testid=new-link]").wait_for()
    assert page.evaluate("typeof navigator.share") == "undefined"
    assert not page.locator("[data-testid=new-link-share]").is_visible()
    assert page.locator("[data-testid=new-link-print]").is_visible()
