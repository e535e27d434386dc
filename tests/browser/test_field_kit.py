"""The field kit as a new user tries it, on a phone and a desktop, in Chinese and English: an
editor fills the 户长会通知 template, a reviewer approves it, the editor prints the A4 notice
and one handout per village; the settings page and the Chats page of the staff channel."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.browser.test_officer_path import log_in, log_out, shanghai_today

pytestmark = pytest.mark.browser


def english(page: Any) -> None:
    page.click("[data-testid=lang-en]")
    page.wait_for_selector("html[lang=en]")


@pytest.fixture(autouse=True)
def local_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fake robots listen on loopback: allow such webhooks, as a self-hosted relay would."""
    monkeypatch.setenv("DALABA_ALLOW_LOCAL_WEBHOOKS", "1")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_editor_fills_a_template_and_prints_it_for_every_village(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    viewport: str,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    shot = f"{viewport}-{lang}-kit"
    page, _problems = new_page(viewport)
    today = shanghai_today().date()
    meeting = today + timedelta(days=2)
    log_in(page, "wangli")
    if lang == "en":
        english(page)

    # From the announcements page to the template library.
    page.goto("/announcements/")
    page.click("[data-testid=from-template]")
    page.wait_for_url(re.compile(r"/templates/$"))
    assert page.locator("[data-testid^=template-s-]").count() == 9
    screenshot(page, f"{shot}-1-templates")
    page.click("[data-testid=use-s-household-meeting]")
    page.wait_for_url(re.compile(r"/templates/use/s-household-meeting$"))

    # The fields are inputs of their kind; a bad phone number is refused, nothing lost.
    assert page.get_attribute("input[name='field:日期']", "type") == "date"
    assert page.get_attribute("input[name='field:时间']", "type") == "time"
    assert page.get_attribute("input[name='field:电话']", "type") == "tel"
    page.fill("input[name='field:日期']", meeting.isoformat())
    page.fill("input[name='field:时间']", "19:30")
    page.fill("input[name='field:地点']", "村委会会议室")
    page.fill("input[name='field:会议内容']", "村规民约修订、垃圾清运费收缴")
    page.fill("input[name='field:电话']", "123")
    for village in ("石桥村", "柳林村"):
        page.locator("label.check", has_text=village).locator("input[name=area_ids]").check()
    page.fill("input[name=end_date]", meeting.isoformat())
    page.fill("input[name=end_time]", "19:30")
    _problems.expect(400)
    page.click("[data-testid=template-draft]")
    page.wait_for_selector("[data-field='field:电话']")
    assert page.input_value("input[name='field:会议内容']") == "村规民约修订、垃圾清运费收缴"
    page.fill("input[name='field:电话']", "138 1234 5678")
    screenshot(page, f"{shot}-2-fill")
    page.click("[data-testid=template-draft]")
    page.wait_for_url(re.compile(r"/announcements/\d+$"))
    announcement_url = page.url
    assert "关于召开户长会的通知" in page.inner_text("h1")
    text = page.inner_text(".card .text")
    assert f"{meeting.month}月{meeting.day}日" in text and "19:30在村委会会议室" in text
    page.click("form[action$='/submit'] button")
    page.wait_for_url(announcement_url)
    log_out(page)

    # The reviewer approves it.
    log_in(page, "lishuji")
    page.goto(announcement_url)
    page.click("form.review button.primary")
    page.wait_for_url(re.compile(r"/announcements/review$"))
    log_out(page)

    # The editor prints the A4 notice and one handout per village.
    log_in(page, "wangli")
    page.goto(announcement_url)
    links = page.locator("[data-testid=print-links]")
    links.scroll_into_view_if_needed()
    screenshot(page, f"{shot}-3-approved")
    links.locator("[data-testid=print-a4]").click()
    page.wait_for_url(re.compile(r"/print\?size=a4$"))
    assert page.locator("[data-testid=notice]").count() == 1
    assert page.locator("[data-testid=notice-qr] svg").is_visible()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width
    screenshot(page, f"{shot}-4-print-a4")
    page.click("[data-testid=print-a5]")
    page.click("[data-testid=print-villages]")
    page.wait_for_url(re.compile(r"villages=1"))
    assert page.locator("[data-testid=notice-village]").all_inner_texts() == ["石桥村", "柳林村"]
    screenshot(page, f"{shot}-5-print-villages")


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_staff_channel_settings_and_the_chats_page(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    viewport: str,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    from sqlalchemy import select

    from cms.models import Area
    from cms.services import chats

    with live_server.session() as session:
        town = session.scalar(select(Area).where(Area.name == "清水镇"))
        robot = chats.bind_robot(
            session, None, platform="wecom",
            webhook="https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=abcdef12-3456",
            secret="", area=town, title="清水镇干部工作群",
        )  # fmt: skip
        session.commit()
        town_id, robot_id = town.id, robot.id
    page, _problems = new_page(viewport)
    log_in(page, "admin")
    if lang == "en":
        english(page)
    page.goto("/chats")
    order = page.evaluate(
        "[...document.querySelectorAll('[data-testid=robot-form], [data-testid=telegram-section]')]"
        ".map(e => e.dataset.testid)"
    )
    assert order == ["robot-form", "telegram-section"]
    assert page.locator("[data-testid=telegram-unreachable]").is_visible()
    screenshot(page, f"{viewport}-{lang}-kit-chats")
    page.goto(f"/admin/settings?area_id={town_id}")
    section = page.locator("[data-testid=staff-channel]")
    section.scroll_into_view_if_needed()
    page.select_option("[data-testid=staff-robot]", value=str(robot_id))
    page.uncheck("[data-testid=staff-event-failures]")
    page.click("[data-testid=staff-save]")
    page.wait_for_url(re.compile(r"/admin/settings\?area_id=\d+"))
    assert page.locator("[data-testid=staff-event-failures]").is_checked() is False
    assert page.locator("[data-testid=staff-event-review]").is_checked()
    page.locator("[data-testid=staff-channel]").scroll_into_view_if_needed()
    screenshot(page, f"{viewport}-{lang}-kit-staff-settings", full_page=False)
