"""Hear it before submitting, in a real browser: the editor's live spoken-text preview and
试听 on a phone and a desktop in both languages, and the reviewer's players."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cms.models import Announcement, Clip, JobState, LexiconEntry, Status
from cms.services.speech import profiles_for
from tests.browser.test_officer_path import log_in
from tests.operators.conftest import encode_tone

pytestmark = pytest.mark.browser

BODY = "请石桥村村民明天8:00到村委会开会，带好<b>身份证</b>。咨询电话：0871-65123456。"


def fits(page: Any) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width <= viewport, f"the page is {width} px wide on a {viewport} px screen"


def wait_until_playable(page: Any, selector: str) -> float:
    """Load the player's audio and return its duration (the browser decoded it)."""
    handle = page.wait_for_selector(selector)
    page.evaluate("(audio) => audio.load()", handle)
    page.wait_for_function("(audio) => audio.readyState >= 1 && audio.duration > 0", arg=handle)
    return float(page.evaluate("(audio) => audio.duration", handle))


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
def test_editor_shows_the_spoken_text_and_plays_the_opening(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    viewport: str,
    lang: str,
    screenshot: Callable[..., Any],
) -> None:
    with live_server.session() as session:
        session.add(LexiconEntry(written="石桥村", spoken="石乔村"))
        session.commit()
    page, _problems = new_page(viewport)
    log_in(page, "wangli")
    if lang == "en":
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")
    page.goto("/announcements/new")
    # Offline engine in the test server: the menu must not promise 晓晓.
    status = page.locator("[data-testid=engine-status]")
    assert status.get_attribute("data-engine") == "offline"
    assert "eSpeak" in status.inner_text()
    assert "eSpeak" in page.locator("select[name=voice] option").first.inner_text()
    # With scripts the preview follows the text; its button is only for pages without them.
    assert page.locator("#preview-button").is_hidden()

    page.fill("textarea[name=body]", BODY)
    page.wait_for_selector("#spoken-preview mark.rewrite")
    marks = page.locator("#spoken-preview mark.rewrite").all_inner_texts()
    assert "石乔村" in marks
    assert marks and not any(re.search(r"\d", m) for m in marks), marks
    spoken = page.inner_text("[data-testid=spoken-text]")
    assert "<b>身份证</b>" in spoken  # typed markup is shown as text, never run
    assert page.locator("#spoken-preview b").count() == 0
    assert "石桥村 = 石乔村" in page.inner_text("[data-testid=lexicon-used]")
    page.click("[data-testid=rewrites] summary")
    assert "8:00" in page.inner_text("[data-testid=rewrites]")
    fits(page)
    screenshot(page, f"{viewport}-{lang}-speech-preview", full_page=False)

    page.click("#listen-button")
    duration = wait_until_playable(page, "#listen-result [data-testid=listen-audio]")
    assert 1.0 < duration < 60.0
    heard = page.inner_text("[data-testid=listen-engine]")
    assert "eSpeak" in heard and "石桥村" in heard
    if lang == "en":
        assert "Read by" in heard
    fits(page)
    screenshot(page, f"{viewport}-{lang}-speech-listen", full_page=False)

    # Nothing was saved by previewing or listening: the form still saves a draft.
    page.fill("input[name=title]", f"试听测试（{viewport}，{lang}）")
    page.locator("label.check", has_text="石桥村").locator("input[name=area_ids]").check()
    page.click("button[name=action][value=save]")
    page.wait_for_url(re.compile(r"/announcements/\d+$"))


def test_listening_too_often_says_when_to_try_again(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    from cms.web import speech

    page, problems = new_page("phone")
    log_in(page, "wangli")
    page.goto("/announcements/new")
    page.fill("textarea[name=body]", "明天停水。")
    for _ in range(speech.LISTEN_PER_MINUTE):
        page.click("#listen-button")
        page.wait_for_selector("#listen-result [data-testid=listen-audio]")
    problems.expect(429)
    page.click("#listen-button")
    error = page.wait_for_selector("#listen-result [data-testid=listen-error]")
    assert "每分钟最多" in error.inner_text() and "秒后再试" in error.inner_text()


def _with_clips(live_server: Any) -> tuple[int, int]:
    """Give one demo announcement in review its rendered clips; returns it and another one."""
    folder: Path = live_server.settings.data_dir / "audio" / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    with live_server.session() as session:
        waiting = list(
            session.scalars(
                select(Announcement)
                .where(Announcement.status == Status.IN_REVIEW)
                .order_by(Announcement.id)
            )
        )
        heard, other = waiting[0], waiting[1]
        rev = heard.current
        for number, profile in enumerate(profiles_for(rev)):
            mp3 = encode_tone(folder / f"review-{rev.id}-{profile.value}.mp3", 1.5, 440 + number)
            session.add(
                Clip(
                    revision_id=rev.id,
                    profile=profile,
                    state=JobState.DONE,
                    path=str(mp3),
                    duration=1.5,
                    engine="offline",
                )
            )
        session.commit()
        return heard.id, other.id


def test_reviewer_listens_where_they_approve(
    new_page: Callable[..., tuple[Any, Any]],
    live_server: Any,
    viewport: str,
    screenshot: Callable[..., Any],
) -> None:
    heard, other = _with_clips(live_server)
    page, _problems = new_page(viewport)
    log_in(page, "lishuji")
    page.goto("/announcements/review")
    for profile in ("loudspeaker", "voice"):
        player = f"a[href='/announcements/{heard}'] >> xpath=ancestor::div[@class='card']"
        selector = f"{player} >> [data-testid=clip-{profile}] audio"
        assert 1.0 < wait_until_playable(page, selector) < 2.0
    waiting = page.locator(
        f"a[href='/announcements/{other}'] >> xpath=ancestor::div[@class='card']"
    ).locator("[data-testid=clip-waiting]")
    assert "调度器没有运行" in waiting.first.inner_text()
    fits(page)
    screenshot(page, f"{viewport}-review-players", full_page=False)

    page.goto(f"/announcements/{heard}")
    assert 1.0 < wait_until_playable(page, "[data-testid=clip-loudspeaker] audio") < 2.0
    assert page.locator("form.review button.primary").is_visible()
    fits(page)
