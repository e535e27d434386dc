"""The officer's path in a real browser: draft, submit, approve, see it on air, switch language."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from cms.demo import DEMO_PASSWORD

pytestmark = pytest.mark.browser

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
TITLE = "石桥村本周六集中清理垃圾"
BODY = "各位村民：本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加，自带扫帚和手套。🧹"


def shanghai_today() -> datetime:
    return datetime.now(ZoneInfo("Asia/Shanghai"))


def log_in(page: Any, username: str) -> None:
    page.goto("/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.card button.primary")
    page.wait_for_url(re.compile(r"/$"))


def follow_menu(page: Any, href: str) -> None:
    """Click a main-menu item, unfolding the menu first on a phone."""
    button = page.locator("[data-testid=menu-button]")
    if button.is_visible():
        button.click()
    page.click(f"header nav a[href='{href}']")
    # Wait for the whole new page: under load a half-parsed page lacks its last cards.
    page.wait_for_url(re.compile(re.escape(href) + r"(\?.*)?$"))
    page.wait_for_load_state()


def log_out(page: Any) -> None:
    page.click("header .who form[action$='/logout'] button")
    page.wait_for_url(re.compile(r"/login"))


def fill_announcement(page: Any, title: str, body: str, start: str, end: str) -> None:
    page.fill("input[name=title]", title)
    page.fill("textarea[name=body]", body)
    page.locator("label.check", has_text="石桥村").locator("input[name=area_ids]").check()
    page.fill("input[name=start_date]", start)
    page.fill("input[name=end_date]", end)
    page.fill("input[name=chat_post_time]", "09:30")


def test_officer_drafts_reviewer_approves_and_it_goes_on_air(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    viewport: str,
    screenshot: Callable[[Any, str], Any],
) -> None:
    page, _problems = new_page(viewport)
    today = shanghai_today().date()
    title = f"{TITLE}（{viewport}）"

    # The editor drafts and submits.
    log_in(page, "wangli")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    follow_menu(page, "/announcements/")
    page.click("a.button.primary[href$='/announcements/new']")
    page.wait_for_url(re.compile(r"/announcements/new$"))
    fill_announcement(page, title, BODY, today.isoformat(), (today + timedelta(days=3)).isoformat())
    assert re.fullmatch(r"\d+ / \d+", page.inner_text("#body-count"))
    assert "预计播音时长约" in page.inner_text("#duration")
    screenshot(page, f"{viewport}-1-editor-form")
    page.click("button[name=action][value=submit]")
    page.wait_for_url(re.compile(r"/announcements/\d+$"))
    assert "已提交审核" in page.inner_text("main .flash")
    assert page.inner_text("h1 .badge") == "待审核"
    announcement_url = page.url
    log_out(page)

    # The reviewer finds it in the queue and approves it.
    log_in(page, "lishuji")
    follow_menu(page, "/announcements/review")
    page.click(f"main .card h3 a:text-is('{title}')")
    page.wait_for_url(announcement_url)
    assert "石桥村" in page.inner_text("dl.meta")
    screenshot(page, f"{viewport}-2-reviewer-detail")
    page.fill("form.review textarea[name=comment]", "内容准确，同意播出。")
    page.click("form.review button.primary")
    page.wait_for_url(re.compile(r"/announcements/review$"))
    assert "已审核通过" in page.inner_text("main .flash")
    assert page.locator(f"main .card h3 a:text-is('{title}')").count() == 0

    # It goes out today on the village's loudspeakers.
    follow_menu(page, "/")
    assert page.inner_text("main h1").startswith("今日播出")
    on_air = page.locator("main .card.outlet", has_text="石桥村村委会大喇叭")
    assert title in on_air.inner_text()
    assert (
        title not in page.locator("main .card.outlet", has_text="柳林村村委会大喇叭").inner_text()
    )
    screenshot(page, f"{viewport}-3-dashboard-zh")

    # English on request, remembered for this reviewer.
    page.click("[data-testid=lang-en]")
    page.wait_for_selector("html[lang=en]")
    assert page.inner_text("main h1").startswith("On air today")
    nav = page.inner_text("header nav")
    assert "Today" in nav and "Review" in nav and not CJK.search(nav)
    assert title in page.inner_text("main")
    screenshot(page, f"{viewport}-4-dashboard-en")
    page.goto(announcement_url)
    assert "Approved" in page.inner_text("h1 .badge") or "On air" in page.inner_text("h1 .badge")
    screenshot(page, f"{viewport}-5-detail-en")

    log_out(page)
    log_in(page, "lishuji")
    assert page.locator("html").get_attribute("lang") == "en"
    page.click("[data-testid=lang-zh_CN]")
    page.wait_for_selector("html[lang=zh-CN]")


def test_end_before_start_shows_the_error_and_keeps_the_text(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    viewport: str,
    screenshot: Callable[[Any, str], Any],
) -> None:
    page, problems = new_page(viewport)
    today = shanghai_today().date()
    title = f"日期填反的通知（{viewport}）"
    log_in(page, "wangli")
    page.goto("/announcements/new")
    start, end = (today + timedelta(days=5)).isoformat(), (today + timedelta(days=1)).isoformat()
    fill_announcement(page, title, BODY, start, end)
    problems.expect(400)
    page.click("button[name=action][value=save]")

    page.wait_for_selector("[role=alert]")
    assert "已填写的内容都还在" in page.inner_text("[role=alert]")
    assert "结束日期不能早于开始日期" in page.inner_text(".err[data-field=end_date]")
    assert page.input_value("input[name=title]") == title
    assert page.input_value("textarea[name=body]") == BODY
    assert page.input_value("input[name=start_date]") == start
    assert page.input_value("input[name=end_date]") == end
    assert page.input_value("input[name=chat_post_time]") == "09:30"
    assert page.locator("label.check", has_text="石桥村").locator("input").is_checked()
    page.locator(".err[data-field=end_date]").scroll_into_view_if_needed()
    screenshot(page, f"{viewport}-6-bad-dates")

    # Nothing was half-saved.
    page.goto("/announcements/?status=draft")
    assert title not in page.inner_text("main")


def test_login_page_switches_language_before_logging_in(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    screenshot: Callable[[Any, str], Any],
) -> None:
    page, problems = new_page("phone")
    page.goto("/")
    page.wait_for_url(re.compile(r"/login"))
    assert page.inner_text("main h1") == "登录"
    assert page.locator("[data-testid=lang-zh_CN]").count() == 0
    screenshot(page, "phone-0-login-zh")
    page.click("[data-testid=lang-en]")
    page.wait_for_selector("html[lang=en]")
    assert page.inner_text("main h1") == "Log in"
    assert page.locator("[data-testid=lang-en]").count() == 0
    form = page.inner_text("main form")
    assert "Username" in form and "Password" in form and not CJK.search(form)
    screenshot(page, "phone-0-login-en")

    page.fill("input[name=username]", "wangli")
    page.fill("input[name=password]", "not-the-password")
    problems.expect(401)
    page.click("form.card button.primary")
    assert "Wrong username or password" in page.inner_text("main .flash")
    assert page.input_value("input[name=username]") == "wangli"


def test_forms_without_a_csrf_token_are_refused(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    page, problems = new_page("desktop")
    log_in(page, "wangli")
    page.goto("/announcements/new")
    page.evaluate("document.querySelector('#announcement-form input[name=csrf_token]').remove()")
    fill_announcement(page, "没有令牌的表单", BODY, "2030-01-01", "2030-01-02")
    problems.expect(400)
    page.click("button[name=action][value=save]")
    page.wait_for_selector("main h1:text-is('400')")
    assert "CSRF" in page.inner_text("main .flash.error")
