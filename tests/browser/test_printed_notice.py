"""The printed notice, printed to PDF by Chromium: pages, QR code, type sizes; and the
operator's link card on one page."""

from __future__ import annotations

import io
import re
import struct
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cms.models import Announcement, Area, User
from cms.services import announcements, templates
from tests.browser.conftest import SCREENSHOTS
from tests.browser.test_officer_path import log_in

pytestmark = pytest.mark.browser

PT_PER_PX = 0.75  # CSS: 1 px = 1/96 in, 1 pt = 1/72 in
A4 = (595.3, 841.9)  # points
A5 = (419.5, 595.3)


def pdf_pages(data: bytes) -> list[Any]:
    import pypdfium2

    document = pypdfium2.PdfDocument(io.BytesIO(data))
    return [document[i] for i in range(len(document))]


def page_text(page: Any) -> str:
    return re.sub(r"\s+", "", page.get_textpage().get_text_range())


def qr_codes(page: Any) -> list[str]:
    """The QR codes found on a PDF page rendered at 216 dpi."""
    import zxingcpp

    image = page.render(scale=3, grayscale=True).to_numpy()
    return [code.text for code in zxingcpp.read_barcodes(image)]


def keep(pdf_page: Any, name: str) -> None:
    """Save a printed page as an image next to the screenshots, to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pixels = pdf_page.render(scale=1.5, grayscale=True).to_numpy()
    height, width = pixels.shape[:2]
    rows = b"".join(
        b"\x00" + pixels[y, :, 0 if pixels.ndim == 3 else ...].tobytes() for y in range(height)
    )

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )
    (SCREENSHOTS / f"{name}.png").write_bytes(png)


def printed(page: Any, path: str) -> bytes:
    """``path`` printed by Chromium as the print dialog would, with the page's own paper size."""
    page.goto(path)
    page.wait_for_load_state()
    page.emulate_media(media="print")
    return bytes(page.pdf(prefer_css_page_size=True))


def sizes_in_pt(page: Any) -> dict[str, float]:
    """Computed font sizes, under print media, in points."""
    page.emulate_media(media="print")
    found = page.evaluate(
        """() => Object.fromEntries([['title', '.notice .title'], ['text', '.notice .text p'],
            ['date', '.notice .date']].map(([k, s]) =>
            [k, Math.min(...[...document.querySelectorAll(s)].map(
                e => parseFloat(getComputedStyle(e).fontSize)))]))"""
    )
    # Chromium keeps sizes in 1/64 px units: 16 pt reads back as 15.99997.
    return {key: round(px * PT_PER_PX, 2) for key, px in found.items()}


def approved(live_server: Any, title: str) -> tuple[int, str]:
    with live_server.session() as session:
        ann = session.scalar(
            select(Announcement).where(
                Announcement.status == "approved",
                Announcement.approved_revision.has(title=title),
            )
        )
        assert ann is not None
        return ann.id, f"{live_server.settings.base_url}/s/{ann.share_token}"


def long_notice(live_server: Any, paragraphs: int) -> tuple[int, list[str]]:
    """An approved notice for 石桥村 with many paragraphs (more than one A4 page)."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    texts = [
        f"第{i + 1}条：" + "请各户在规定时间内把门前屋后的柴草、杂物清理干净，不乱堆乱放。" * 3
        for i in range(paragraphs)
    ]
    with live_server.session() as session:
        editor = session.scalar(select(User).where(User.username == "wangli"))
        reviewer = session.scalar(select(User).where(User.username == "lishuji"))
        village = session.scalar(select(Area).where(Area.name == "石桥村"))
        assert editor is not None and reviewer is not None and village is not None
        ann = announcements.create(
            session,
            editor,
            {
                "title": "村庄清洁行动实施细则",
                "body": "\n".join(texts),
                "area_ids": [village.id],
                "to_loudspeaker": True,
                "to_chats": False,
                "start_date": today.isoformat(),
                "end_date": (today + timedelta(days=3)).isoformat(),
                "repeats": 1,
            },
            today=today,
        )
        announcements.submit(session, editor, ann)
        announcements.approve(session, reviewer, ann)
        session.commit()
        return ann.id, texts


def household_meeting(live_server: Any) -> tuple[int, str, list[str]]:
    """The shipped 户长会通知 template, filled as an editor would, approved for 石桥村."""
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    meeting = today + timedelta(days=2)
    with live_server.session() as session:
        editor = session.scalar(select(User).where(User.username == "wangli"))
        reviewer = session.scalar(select(User).where(User.username == "lishuji"))
        village = session.scalar(select(Area).where(Area.name == "石桥村"))
        assert editor is not None and reviewer is not None and village is not None
        ann = templates.draft_from(
            session,
            editor,
            templates.get(session, editor, "s-household-meeting"),
            {
                "日期": meeting.isoformat(),
                "时间": "19:30",
                "地点": "村委会会议室",
                "会议内容": "村规民约修订、垃圾清运费收缴",
                "电话": "138 1234 5678",
            },
            {
                "area_ids": [village.id],
                "to_loudspeaker": True,
                "to_chats": False,
                "start_date": today.isoformat(),
                "end_date": meeting.isoformat(),
                "repeats": 1,
            },
            today=today,
        )
        announcements.submit(session, editor, ann)
        announcements.approve(session, reviewer, ann)
        session.commit()
        body = ann.approved_revision.body
        url = f"{live_server.settings.base_url}/s/{ann.share_token}"
        return ann.id, url, [line for line in body.split("\n") if line.strip()]


@pytest.mark.parametrize(("size", "paper"), [("a4", A4), ("a5", A5)])
def test_the_filled_household_meeting_template_prints_on_one_page(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any, size: str, paper: Any
) -> None:
    ann_id, share_url, lines = household_meeting(live_server)
    assert len(lines) == 4, lines
    page, _problems = new_page("desktop")
    log_in(page, "wangli")
    data = printed(page, f"/announcements/{ann_id}/print?size={size}")
    sizes = sizes_in_pt(page)
    assert sizes["title"] >= 26 and sizes["text"] >= 16, sizes
    pages = pdf_pages(data)
    assert len(pages) == 1, f"{len(pages)} pages"
    width, height = pages[0].get_size()
    assert abs(width - paper[0]) < 2 and abs(height - paper[1]) < 2, (width, height)
    text = page_text(pages[0])
    for shown in ("关于召开户长会的通知", *[re.sub(r"\s+", "", line) for line in lines]):
        assert shown in text, shown
    assert "盖章处" in text and "扫码收听本通知" in text
    assert qr_codes(pages[0]) == [share_url]
    keep(pages[0], f"print-household-meeting-{size}")


def test_the_paper_is_chinese_in_an_english_session(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    """The paper goes on a village notice board; only the controls around it follow the
    officer's interface language."""
    ann_id, share_url = approved(live_server, "2026年度生活垃圾清运费收缴通知")
    page, _problems = new_page("desktop")
    log_in(page, "wangli")
    page.click("[data-testid=lang-en]")
    page.wait_for_selector("html[lang=en]")
    page.goto(f"/announcements/{ann_id}/print?size=a5&villages=1")
    toolbar = page.inner_text(".toolbar")
    assert "Print" in toolbar and "village" in toolbar, toolbar
    assert "(4 villages)" in toolbar, toolbar
    one_village, _url, _lines = household_meeting(live_server)
    page.goto(f"/announcements/{one_village}/print?size=a5")
    assert "One per village (1 village)" in page.inner_text(".toolbar")
    assert page.get_attribute("[data-testid=notice]", "lang") == "zh-CN"
    data = printed(page, f"/announcements/{ann_id}/print?size=a4")
    pages = pdf_pages(data)
    assert len(pages) == 1
    text = page_text(pages[0]).replace(share_url, "")
    for shown in ("清水镇宣传办", "盖章处", "扫码收听本通知", "年", "月", "日"):
        assert shown in text, (shown, text)
    for english in ("Office", "seal", "Scan", "listen", "December", "January"):
        assert english.lower() not in text.lower(), (english, text)
    assert qr_codes(pages[0]) == [share_url]
    keep(pages[0], "print-notice-a4-english-session")


@pytest.mark.parametrize(("size", "paper"), [("a4", A4), ("a5", A5)])
def test_a_short_notice_prints_on_one_page_with_its_qr_code(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any, size: str, paper: Any
) -> None:
    ann_id, share_url = approved(live_server, "2026年度生活垃圾清运费收缴通知")
    page, _problems = new_page("desktop")
    log_in(page, "lishuji")
    data = printed(page, f"/announcements/{ann_id}/print?size={size}")

    sizes = sizes_in_pt(page)
    assert sizes["title"] >= 26, sizes
    assert sizes["text"] >= 16, sizes
    pages = pdf_pages(data)
    assert len(pages) == 1, f"{len(pages)} pages"
    width, height = pages[0].get_size()
    assert abs(width - paper[0]) < 2 and abs(height - paper[1]) < 2, (width, height)
    text = page_text(pages[0])
    for shown in ("清水镇宣传办", "2026年度生活垃圾清运费收缴通知", "盖章处", "扫码收听本通知"):
        assert shown in text
    assert share_url in text
    assert qr_codes(pages[0]) == [share_url]
    keep(pages[0], f"print-notice-{size}")


def test_a_long_notice_breaks_between_paragraphs(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    ann_id, texts = long_notice(live_server, 14)
    page, _problems = new_page("desktop")
    log_in(page, "wangli")
    pages = pdf_pages(printed(page, f"/announcements/{ann_id}/print?size=a4"))
    assert len(pages) >= 2
    on_page = [page_text(p) for p in pages]
    assert all(on_page), "a blank page"
    for paragraph in texts:
        # Each paragraph is whole on one page: breaks fall between paragraphs.
        assert sum(paragraph in text for text in on_page) == 1, paragraph
    # The QR code and the seal come once, after the text, on the last page.
    assert "盖章处" in on_page[-1]
    assert len(qr_codes(pages[-1])) == 1
    keep(pages[0], "print-notice-long-1")
    keep(pages[-1], "print-notice-long-last")


def test_print_for_every_village_names_each_village(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    ann_id, share_url = approved(live_server, "2026年度生活垃圾清运费收缴通知")
    page, _problems = new_page("desktop")
    log_in(page, "wangli")
    data = printed(page, f"/announcements/{ann_id}/print?size=a5&villages=1")
    names = page.locator("[data-testid=notice-village]").all_inner_texts()
    assert names == ["石桥村", "柳林村", "河口村", "新华村"]
    pages = pdf_pages(data)
    assert len(pages) == len(names)
    for name, pdf_page in zip(names, pages, strict=True):
        text = page_text(pdf_page)
        assert name in text
        assert all(other not in text for other in names if other != name)
        assert qr_codes(pdf_page) == [share_url]
    keep(pages[1], "print-notice-village-a5")


def test_printing_needs_an_approved_notice_in_scope(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    with live_server.session() as session:
        draft = session.scalar(select(Announcement).where(Announcement.status == "draft").limit(1))
        assert draft is not None
        draft_id = draft.id
    page, problems = new_page("desktop")
    log_in(page, "wangli")
    problems.expect(404)
    response = page.goto(f"/announcements/{draft_id}/print")
    assert response is not None and response.status == 404
    assert "只有审核通过且未撤回的公告可以打印" in page.inner_text("body")
    operator, problems2 = new_page("desktop")
    log_in(operator, "shiqiao")
    ann_id, _url = approved(live_server, "2026年度生活垃圾清运费收缴通知")
    problems2.expect(403)
    response = operator.goto(f"/announcements/{ann_id}/print")
    assert response is not None and response.status == 403


def test_the_operator_link_card_prints_on_one_page(
    new_page: Callable[..., tuple[Any, Any]], live_server: Any
) -> None:
    page, _problems = new_page("phone")
    log_in(page, "admin")
    page.goto("/operator/links")
    page.locator("tr[data-testid^=link-row-]").first.locator("button[value=issue]").click()
    page.locator("[data-testid=new-link]").wait_for()
    url = page.input_value("[data-testid=new-link-url]")
    page.emulate_media(media="print")
    pages = pdf_pages(bytes(page.pdf(prefer_css_page_size=True)))
    assert len(pages) == 1, f"{len(pages)} pages"
    assert url in page_text(pages[0])
    assert qr_codes(pages[0]) == [url]
    keep(pages[0], "print-link-card")
