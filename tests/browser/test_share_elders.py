"""The share page made for elders (MIIT 互联网网站适老化通用设计规范), measured in Chromium at
360×640 and 390×844: type, line height, contrast, one large play button that plays with one
tap (and works without JavaScript), tap-to-call numbers, nothing external, nothing moving,
one request on a throttled 3G line."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cms.models import Announcement, Clip, ClipProfile, JobState, Revision
from tests.browser.conftest import SCREENSHOTS, LiveServer, Problems
from tests.operators.conftest import encode_tone

pytestmark = pytest.mark.browser

SIZES = {"360x640": (360, 640), "390x844": (390, 844)}
# Chrome DevTools' "3G" network preset (formerly "Fast 3G"): 562.5 ms latency,
# 1.44 Mbit/s down, 675 kbit/s up.
THREE_G = {
    "offline": False,
    "latency": 562.5,
    "downloadThroughput": 1.6 * 1000 * 1000 / 8 * 0.9,
    "uploadThroughput": 750 * 1000 / 8 * 0.9,
}

# For every element that shows text of its own: font size, line height, and the contrast of
# its colour against the first opaque background behind it (WCAG relative luminance).
MEASURE = """() => {
  const lum = (c) => { const [r, g, b] = c.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
    v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const alpha = (c) => { const p = c.match(/[\\d.]+/g); return p.length > 3 ? Number(p[3]) : 1; };
  const background = (el) => { for (let e = el; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor; if (alpha(c) > 0.9) return c; }
    return "rgb(255, 255, 255)"; };
  const out = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const s = getComputedStyle(el);
    if (s.visibility === "hidden" || s.display === "none") continue;
    const size = parseFloat(s.fontSize);
    const line = s.lineHeight === "normal" ? size * 1.2 : parseFloat(s.lineHeight);
    const [a, b] = [lum(s.color), lum(background(el))].sort((x, y) => y - x);
    out.push({ text: el.textContent.trim().slice(0, 20), tag: el.tagName, size, ratio: line / size,
               contrast: (a + 0.05) / (b + 0.05) });
  }
  return out;
}"""


def until(page: Any, expression: str) -> None:
    """Wait for ``expression`` to hold (wait_for_function would need eval, which CSP forbids)."""
    for _ in range(200):
        if page.evaluate(f"() => Boolean({expression})"):
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"never true: {expression}")


def with_clip(live_server: LiveServer, title: str, seconds: float) -> tuple[str, str]:
    """A rendered clip of ``seconds`` for the approved demo notice ``title``; its share path."""
    folder: Path = live_server.settings.data_dir / "audio" / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    with live_server.session() as session:
        ann = session.scalar(
            select(Announcement).where(
                Announcement.status == "approved",
                Announcement.approved_revision.has(Revision.title == title),
            )
        )
        assert ann is not None
        mp3 = encode_tone(folder / f"elders-{ann.id}.mp3", seconds, 440)
        session.add(
            Clip(
                revision_id=ann.approved_revision_id,
                profile=ClipProfile.LOUDSPEAKER,
                state=JobState.DONE,
                path=str(mp3),
                duration=seconds,
            )
        )
        session.commit()
        return f"/s/{ann.share_token}", f"{live_server.url}/s/{ann.share_token}/audio.mp3"


@pytest.fixture
def open_phone(browser: Any, live_server: LiveServer) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []
    problems = Problems()

    def open_page(size: str, *, javascript: bool = True, lang: str = "zh-CN") -> Any:
        width, height = SIZES[size]
        context = browser.new_context(
            base_url=live_server.url,
            locale=lang,
            timezone_id="Asia/Shanghai",
            viewport={"width": width, "height": height},
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            java_script_enabled=javascript,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("console", problems.console)
        page.on("pageerror", lambda exc: problems.items.append(f"page error: {exc}"))
        page.on("response", problems.response)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not problems.items, "\n".join(problems.items)


@pytest.mark.parametrize("size", list(SIZES))
def test_the_share_page_is_made_for_elders(
    open_phone: Callable[..., Any], live_server: LiveServer, size: str
) -> None:
    path, audio_url = with_clip(live_server, "2026年度生活垃圾清运费收缴通知", 65.0)
    page = open_phone(size)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path)
    page.wait_for_load_state()

    # Type: at least 18 px, line height at least 1.3, contrast at least 4.5:1, everywhere.
    found = page.evaluate(MEASURE)
    assert found
    small = [f for f in found if f["size"] < 18]
    assert not small, small
    tight = [f for f in found if f["ratio"] < 1.3 and f["tag"] != "SPAN"]
    assert not tight, tight
    faint = [f for f in found if f["contrast"] < 4.5]
    assert not faint, faint
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= SIZES[size][0]

    # One large play button of our own, with a bar and the time in words over the native player.
    button = page.locator("[data-testid=play]")
    box = button.bounding_box()
    assert box is not None and box["width"] >= 60 and box["height"] >= 60, box
    icon = page.locator(".play-icon").bounding_box()
    assert icon is not None and icon["width"] >= 60 and icon["height"] >= 60
    assert page.locator("[data-testid=progress]").is_visible()
    assert page.inner_text("[data-testid=time]") == "已播放 0分00秒 / 共 1分05秒"
    # Our player drives the <audio> element: the browser's own bar (0:00 / 0:00) is not shown.
    assert page.locator("audio").count() == 1
    assert not page.locator("audio").is_visible()
    assert page.locator("audio[controls]").count() == 0

    # Tap to call.
    tel = page.locator("[data-testid=text] a[href^='tel:']")
    assert tel.count() == 1
    assert tel.get_attribute("href") == "tel:087165123456"
    assert tel.inner_text() == "0871-6512 3456"

    # Nothing external, nothing moving.
    assert all(url.startswith(live_server.url) for url in requests), requests
    assert page.locator("script[src]").count() == 0
    assert page.evaluate("document.getAnimations().length") == 0
    assert page.locator("marquee, blink, iframe, img[src$='.gif']").count() == 0

    # One tap plays; the bar and the words follow.
    button.tap()
    until(page, "document.querySelector('audio').currentTime > 0.3")
    assert button.get_attribute("aria-pressed") == "true"
    assert page.inner_text(".play-label") == "暂停"
    until(page, "document.querySelector('progress').value > 0")
    assert page.inner_text("[data-testid=time]").endswith("/ 共 1分05秒")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"share-elders-{size}-playing.png"), full_page=True)
    button.tap()
    until(page, "document.querySelector('audio').paused")
    until(page, "document.querySelector('.play').getAttribute('aria-pressed') === 'false'")
    assert page.inner_text(".play-label") == "收听广播"
    assert audio_url.endswith("/audio.mp3")


def test_without_javascript_the_button_still_plays(
    open_phone: Callable[..., Any], live_server: LiveServer
) -> None:
    path, audio_url = with_clip(live_server, "2026年度生活垃圾清运费收缴通知", 65.0)
    page = open_phone("390x844", javascript=False)
    page.goto(path)
    button = page.locator("[data-testid=play]")
    # A plain link to the clip: the phone's own player opens it.
    assert button.get_attribute("href") == audio_url.removeprefix(live_server.url)
    # The browser's own player works below it.
    assert page.locator("audio[controls]").is_visible()
    assert page.inner_text("[data-testid=time]") == "已播放 0分00秒 / 共 1分05秒"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "share-elders-no-js.png"), full_page=True)
    response = page.request.get(audio_url)
    assert response.status == 200 and response.headers["content-type"] == "audio/mpeg"


@pytest.mark.parametrize("lang", ["zh-CN", "en"])
def test_the_share_page_loads_in_one_request_on_3g(
    open_phone: Callable[..., Any], live_server: LiveServer, lang: str
) -> None:
    """On DevTools' 3G profile the page is one request; the load time is measured and shown."""
    path, _audio = with_clip(live_server, "2026年度生活垃圾清运费收缴通知", 65.0)
    page = open_phone("360x640", lang=lang)
    if lang == "en":
        page.goto("/login")
        page.click("[data-testid=lang-en]")
        page.wait_for_selector("html[lang=en]")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
    cdp.send("Network.emulateNetworkConditions", THREE_G)
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path, wait_until="load")
    timing = page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {load: n.loadEventEnd, size: n.transferSize}; })()"
    )
    # The audio waits for a tap (preload=none): the page itself is the only request.
    assert requests == [live_server.url + path], requests
    assert timing["size"] < 16 * 1024, timing
    print(f"share page on 3G ({lang}): load {timing['load']:.0f} ms, {timing['size']} bytes")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"share-elders-360-{lang}.png"), full_page=True)
