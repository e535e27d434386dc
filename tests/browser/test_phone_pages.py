"""Every page on two phone screens, in both languages, for each role.

On 360×640 and 390×844 each page must fit the screen (no sideways scrolling), every table
cell must carry a visible label (tables become labelled cards), and axe-core must report no
serious or critical accessibility violation. axe-core is the vendored npm release in
``vendor/`` (see its README), injected by Playwright into a context that bypasses the page's
CSP: the app allows only its own scripts, and an injected file is an inline script.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cms.demo import DEMO_PASSWORD
from cms.models import JobState, Outlet, Program, User
from cms.services import templates
from tests.browser.conftest import LiveServer
from tests.browser.test_share_page import prepare

pytestmark = pytest.mark.browser

AXE = Path(__file__).parent / "vendor" / "axe.min.js"
AXE_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"
SCREENS = [{"width": 360, "height": 640}, {"width": 390, "height": 844}]
LANG_ATTR = {"zh_CN": "zh-CN", "en": "en"}

# Per visible cell that is not a message across its whole row: does its ::before show a label?
UNLABELLED_CELLS = """() => {
  const bad = [];
  for (const td of document.querySelectorAll('td')) {
    if (!td.checkVisibility()) continue;
    const row = td.parentElement;
    if (row.cells.length === 1 && td.colSpan > 1) continue;
    const before = getComputedStyle(td, '::before');
    const text = before.content.replace(/^"|"$/g, '').trim();
    if (before.display === 'none' || ['', 'none', 'normal'].includes(text)) {
      bad.push(td.outerHTML.slice(0, 120));
    }
  }
  return bad;
}"""

AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations
    .filter(v => v.impact === 'serious' || v.impact === 'critical')
    .map(v => `${v.impact} ${v.id}: ${v.help} at ` +
      v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '')
        .replace(/\\s+/g, ' ').slice(0, 160)).join(' | '));
}"""


@dataclass(frozen=True)
class Site:
    """The module's demo township and the ids its pages need."""

    server: LiveServer
    ann: int
    outlet: int
    day: str
    share: str
    link: str
    template: int


@pytest.fixture(scope="module")
def site(module_server: LiveServer) -> Site:
    ann_id, share_path, link_path = prepare(module_server)
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    with module_server.session() as session:
        outlet = session.scalars(select(Outlet).where(Outlet.active).order_by(Outlet.id)).first()
        assert outlet is not None
        # Installed long ago, and yesterday's first program was built: the compliance table
        # has a row of numbers.
        outlet.created_at = datetime.now(UTC) - timedelta(days=90)
        built = module_server.settings.audio_dir / "programs" / "yesterday.mp3"
        built.parent.mkdir(parents=True, exist_ok=True)
        built.write_bytes(b"\xff\xfb" * 64)
        session.add(
            Program(
                outlet_id=outlet.id,
                day=today - timedelta(days=1),
                slot_id=outlet.slots[0].id,
                state=JobState.DONE,
                duration=60.0,
                built_at=datetime.now(UTC) - timedelta(days=1),
                path=str(built),
            )
        )
        admin = session.scalar(select(User).where(User.username == "admin"))
        template = templates.save(
            session, admin, None, name="赶集日提醒", title="赶集日注意交通安全",
            body="{日期}赶集，请注意交通安全。咨询电话{电话}。",
        )  # fmt: skip
        session.commit()
        template_id = template.id
    return Site(
        module_server, ann_id, outlet.id, today.isoformat(), share_path, link_path, template_id
    )


def pages_for(role: str, site: Site) -> list[str]:
    """The pages a role can open, with ids from the demo township."""
    ann, outlet, day = site.ann, site.outlet, site.day
    announcement = [
        f"/announcements/{ann}",
        f"/announcements/{ann}/revisions",
        f"/announcements/{ann}/print",
    ]
    kit = ["/templates/", "/templates/use/s-household-meeting"]
    schedule = [
        "/schedule/",
        f"/schedule/announcements/{ann}",
        "/schedule/lexicon",
        "/schedule/outbox",
        "/schedule/outlets",
        f"/schedule/outlets/{outlet}/{day}",
        f"/schedule/outlets/{outlet}/calendar",
        f"/schedule/outlets/{outlet}/{day}/runsheet",
        "/compliance",
    ]
    if role == "admin":
        return [
            "/",
            "/announcements/",
            "/announcements/new",
            "/announcements/review",
            "/campaigns/",
            "/campaigns/report",
            *announcement,
            f"/announcements/{ann}/edit",
            *schedule,
            "/chats",
            "/operator/",
            "/operator/links",
            "/admin/areas",
            "/admin/outlets",
            "/admin/outlets/new",
            f"/admin/outlets/{outlet}",
            "/admin/users",
            "/admin/topics",
            "/admin/tokens",
            "/admin/settings",
            "/admin/wechat",
            "/admin/audit",
            "/admin/voices/",
            *kit,
            "/templates/new",
            f"/templates/{site.template}/edit",
            "/breakins/",
            f"/terminals/{outlet}",
            "/ledger/",
        ]
    if role == "wangli":  # an editor: the pages where drafts are written
        return [
            "/", "/announcements/", "/announcements/new", *announcement, "/compliance", "/ledger/", *kit,
        ]  # fmt: skip
    if role == "lishuji":  # a reviewer
        return ["/", "/announcements/review", f"/announcements/{ann}", "/schedule/"]
    if role == "shiqiao":  # a village's loudspeaker operator
        return ["/", "/operator/", "/schedule/outlets", f"/schedule/outlets/{outlet}/{day}"]
    return ["/login", site.share, site.link]  # no account: the login and public pages


@pytest.fixture(scope="module")
def axe_script() -> Path:
    digest = hashlib.sha256(AXE.read_bytes()).hexdigest()
    assert digest == AXE_SHA256, "tests/browser/vendor/axe.min.js is not the pinned release"
    return AXE


@pytest.fixture
def context(browser: Any, site: Site) -> Iterator[Any]:
    """A phone-sized context whose pages accept an injected axe-core (bypass_csp)."""
    context = browser.new_context(
        base_url=site.server.url,
        locale="zh-CN",
        timezone_id="Asia/Shanghai",
        viewport=SCREENS[0],
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
        bypass_csp=True,
    )
    context.set_default_timeout(15_000)
    yield context
    context.close()


def lines(locator: Any) -> int:
    """How many lines an element's text takes."""
    return int(
        locator.evaluate(
            """e => { const r = document.createRange(); r.selectNodeContents(e);
                return new Set([...r.getClientRects()].map(x => Math.round(x.top))).size; }"""
        )
    )


def choose_language(page: Any, lang: str) -> None:
    if page.locator("html").get_attribute("lang") != LANG_ATTR[lang]:
        page.click(f"[data-testid=lang-{lang}]")
        page.wait_for_selector(f"html[lang={LANG_ATTR[lang]}]")


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
@pytest.mark.parametrize("role", ["admin", "wangli", "lishuji", "shiqiao", "anonymous"])
def test_pages_fit_phones_label_their_cells_and_pass_axe(
    context: Any, site: Site, axe_script: Path, role: str, lang: str
) -> None:
    page = context.new_page()
    page.goto("/login")
    choose_language(page, lang)
    if role != "anonymous":
        page.fill("input[name=username]", role)
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("form.card button.primary")
        page.wait_for_url(re.compile(r"/$"))
        choose_language(page, lang)

    found: list[str] = []
    for path in pages_for(role, site):
        page.set_viewport_size(SCREENS[0])
        response = page.goto(path)
        if response is None or response.status != 200:
            found.append(f"{path}: HTTP {response.status if response else '—'}")
            continue
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == LANG_ATTR[lang], path
        for screen in SCREENS:  # the same page, laid out again on the wider phone
            page.set_viewport_size(screen)
            where = f"{path} at {screen['width']}×{screen['height']}"
            scroll, inner = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]"
            )
            if scroll > inner:
                found.append(f"{where}: {scroll} px wide, sideways scrolling")
            found += [
                f"{where}: cell without a label: {c}" for c in page.evaluate(UNLABELLED_CELLS)
            ]
            if screen == SCREENS[0]:  # axe on the narrowest screen, where cards are tightest
                page.add_script_tag(path=str(axe_script))
                found += [f"{where}: {v}" for v in page.evaluate(AXE_RUN)]
    assert not found, "\n".join(found)


def test_the_menu_folds_on_a_phone_and_the_chart_shows_today(context: Any, site: Site) -> None:
    page = context.new_page()
    page.goto("/login")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("form.card button.primary")
    page.wait_for_url(re.compile(r"/$"))
    choose_language(page, "zh_CN")

    compliance = page.locator("header nav a[href='/compliance']")
    assert not compliance.is_visible()
    page.click("[data-testid=menu-button]")
    assert compliance.is_visible()
    assert lines(compliance) == 1, "播出督查 breaks over two lines"
    compliance.click()
    page.wait_for_url(re.compile(r"/compliance$"))
    assert not page.locator("header nav a[href='/compliance']").is_visible()

    # Today is the chart's last bar, and a phone shows it without scrolling.
    today = page.locator("[data-testid=chart] rect.built").last.bounding_box()
    assert today is not None
    assert today["x"] >= 0 and today["x"] + today["width"] <= SCREENS[0]["width"]
    # The numbers are named after their columns (they were a column of bare numbers).
    table = page.locator("[data-testid=compliance-table]")
    headers = table.locator("thead th").all_inner_texts()
    cells = table.locator("tbody tr").first.locator("td")
    assert cells.count() == len(headers) > 2
    for index, header in enumerate(headers):
        assert cells.nth(index).get_attribute("data-label") == header

    # Each value carries its column's name, shown before it (the two dates of a notice).
    page.goto("/announcements/")
    row = page.locator("main table.list tbody tr").first
    for column, label in ((3, "播出期"), (4, "更新")):
        cell = row.locator("td").nth(column)
        assert cell.get_attribute("data-label") == label
        shown = cell.evaluate("e => getComputedStyle(e, '::before').content")
        assert shown == f'"{label}"'
        assert cell.bounding_box()["width"] > 300  # a line of the card, not a narrow column

    # The admin sub-menu keeps each item on one line.
    page.goto("/admin/areas")
    for link in page.locator(".subnav a").all():
        assert lines(link) == 1, link.inner_text()

    # A name is shown once, not wrapped in a second pair of brackets.
    page.goto("/chats")
    options = page.locator("select[name=user_id] option").all_inner_texts()
    assert "王丽（宣传委员） · wangli" in options
    assert not any("）（" in o for o in options)


# Routes that answer files, not pages (checked by their own tests).
# Not pages for a phone: audio, and the ledger's A4 print document (the PDF's source).
NOT_PAGES = {"schedule.audio", "schedule.sample_audio", "schedule.budget", "ledger.print_page"}


def test_every_html_page_is_on_a_list(site: Site) -> None:
    """A new page is checked on phones too: every GET route of the app is on a role's list."""
    from cms.web import create_app

    app = create_app(site.server.settings, engine=site.server.engine)
    listed = {
        path
        for role in ("admin", "wangli", "lishuji", "shiqiao", "anonymous")
        for path in pages_for(role, site)
    }
    missing = []
    for rule in app.url_map.iter_rules():
        if (
            "GET" not in (rule.methods or ())
            or rule.endpoint == "static"
            or rule.endpoint in NOT_PAGES
            or rule.rule.startswith("/api/")
            or re.search(r"\.[a-z0-9]+$", rule.rule)
        ):
            continue
        pattern = re.sub(r"<[^>]+>", "[^/]+", rule.rule)
        if not any(re.fullmatch(pattern, path) for path in listed):
            missing.append(rule.rule)
    assert not missing, f"pages not checked on phones: {missing}"
