"""Reach you can see, on a 390×844 phone in both languages: the editor lists where a
石桥村 → 三组 notice goes as the officer ticks it, a notice that reaches nothing is refused
with the reason next to the targets, and an approved notice's page shows what comes next."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select

from cms.models import Announcement, Revision
from tests.browser.test_officer_path import log_in

pytestmark = pytest.mark.browser


def fits(page: Any) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"the page is {width} px wide on a {viewport} px screen"


def _area_box(page: Any, name: str) -> Any:
    return page.locator("label.check", has_text=re.compile(rf"^\s*{name}\s*$")).locator(
        "input[name=area_ids]"
    )


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_the_editor_shows_reach_and_refuses_a_notice_that_reaches_nothing(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    page, problems = new_page("phone")
    log_in(page, "wangli")
    if lang == "en":
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")
    page.goto("/announcements/new")
    assert page.locator("[data-testid=reach-empty]").is_visible()
    # With scripts the list follows the fields; the button is for pages without them.
    assert page.locator("#reach-button").is_hidden()

    _area_box(page, "三组").check()
    outlet = page.locator("[data-testid=reach-outlet]", has_text="石桥村村委会大喇叭")
    outlet.wait_for()
    part = "（三组）" if lang == "zh_CN" else "(三组)"
    assert part in outlet.inner_text()
    assert "07:30" in outlet.inner_text()
    assert page.locator("[data-testid=first-play]").count() >= 1
    chat = page.locator("[data-testid=reach-chat]", has_text="石桥村村民群")
    assert chat.is_visible() and "Telegram" in chat.inner_text()
    fits(page)
    page.locator("#reach").scroll_into_view_if_needed()
    screenshot(page, f"phone-{lang}-reach-preview", full_page=False)

    # 新华村 has a loudspeaker but no chat: for the chats alone it reaches nothing.
    _area_box(page, "三组").uncheck()
    _area_box(page, "新华村").check()
    page.locator("input[name=to_loudspeaker]").uncheck()
    page.locator("[data-testid=reach-nothing]").wait_for()
    page.fill("input[name=title]", f"新华村群通知（{lang}）")
    page.fill("textarea[name=body]", "新华村各户：本周六上午九点村委会门口集中清扫。")
    problems.expect(400)
    page.click("button[name=action][value=submit]")
    error = page.locator("span.err[data-field=area_ids]")
    error.wait_for()
    expected = "没有可用于所选渠道的大喇叭或群聊" if lang == "zh_CN" else "no loudspeaker or chat"
    assert expected in error.inner_text()
    assert page.input_value("input[name=title]") == f"新华村群通知（{lang}）"  # nothing lost
    fits(page)
    error.scroll_into_view_if_needed()
    screenshot(page, f"phone-{lang}-reach-refused", full_page=False)
    with live_server.session() as session:
        saved = session.scalars(
            select(Announcement)
            .join(Revision, Revision.id == Announcement.latest_revision_id)
            .where(Revision.title == f"新华村群通知（{lang}）")
        ).all()
        assert saved == []


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_an_approved_notice_shows_its_next_plays_and_posts(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    with live_server.session() as session:
        ann = session.scalars(
            select(Announcement)
            .join(Revision, Revision.id == Announcement.approved_revision_id)
            .where(Revision.title == "“最美庭院”评选结果公示")  # starts in two days
        ).one()
        ann_id = ann.id
    page, _problems = new_page("phone")
    log_in(page, "wangli")
    if lang == "en":
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")
    page.goto(f"/announcements/{ann_id}")
    status = page.inner_text("[data-testid=status]")
    if lang == "zh_CN":
        assert status.startswith("已批准 · 首播 ") and "播出中" not in status
    else:
        assert status.startswith("Approved · first play ")
    screenshot(page, f"phone-{lang}-notice-status", full_page=False)
    outcome = page.locator("[data-testid=outcome]")
    assert outcome.locator("[data-testid=play]").count() >= 1
    assert outcome.locator("[data-testid=post]").count() == 3  # the three village chats
    fits(page)
    outcome.scroll_into_view_if_needed()
    screenshot(page, f"phone-{lang}-notice-outcome", full_page=False)


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_the_dashboard_puts_failed_posts_first_with_their_reason(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    from datetime import UTC, datetime

    from cms.models import ChatGroup, Delivery, DeliveryState
    from cms.services.errors import Message

    with live_server.session() as session:
        ann = session.scalars(
            select(Announcement)
            .join(Revision, Revision.id == Announcement.approved_revision_id)
            .where(Revision.title == "绿美乡村：垃圾分类从我做起")
        ).one()
        chat = session.scalars(select(ChatGroup).where(ChatGroup.title == "石桥村村民群")).one()
        session.add(
            Delivery(
                revision_id=ann.approved_revision_id,
                chat_group_id=chat.id,
                due_at=datetime.now(UTC),
                state=DeliveryState.FAILED,
                last_error=Message("平台拒收：{reason}", {"reason": "机器人已被移出群"}).dumps(),
            )
        )
        session.commit()
    page, _problems = new_page("phone")
    log_in(page, "wangli")
    if lang == "en":
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")
    problem = page.locator("[data-testid=alerts] [data-testid=problem]").first
    assert "机器人已被移出群" in problem.inner_text()
    assert problem.get_attribute("data-state") == "failed"
    fits(page)
    screenshot(page, f"phone-{lang}-dashboard-alerts", full_page=False)
