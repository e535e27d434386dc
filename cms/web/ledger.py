"""宣传台账: the month's ledger of a township or the county, on screen, as XLSX and as PDF.

The PDF is the print page (``/ledger/print``) printed by headless Chromium: the same HTML
and charts as on screen, laid out as an office document (title, period, office, tables,
page numbers in the page margins through CSS paged media, which Chromium prints since
version 131). Chromium is already what the browser tests drive, it sets Chinese with the
system's fonts and needs no second layout engine to keep in step with the page; the PDF
is made from the HTML rendered here, passed as a file, so Chromium fetches nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, g, render_template, request
from flask_babel import gettext as _

from cms.models import AreaKind
from cms.roles import STAFF
from cms.services import breakin as breakin_svc
from cms.services import ledger as svc
from cms.services import terminals as terminal_svc
from cms.services.chats import PLATFORM_LABELS
from cms.services.errors import NotFound
from cms.services.scope import Scope
from cms.services.text import parse_id, printable
from cms.web.auth import rule
from cms.web.db import db, settings
from cms.web.publishing import publisher_noun, publisher_nouns
from cms.web.sendfile import content_disposition
from cms.web.sheets import neutralise, xlsx_response

bp = Blueprint("ledger", __name__, url_prefix="/ledger")
PDF_TIMEOUT_S = 60
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-pdf-header-footer",
]


def _today() -> date:
    return settings().today()


def _ledger() -> svc.Ledger:
    scope = Scope.of(g.user)
    offices = svc.offices(db(), scope)
    if not offices:
        abort(404)
    area_id = parse_id(request.args.get("area", ""))
    if area_id is None:
        # The user's own office: their township (or county), else the first in scope.
        own = g.user.area
        area_id = (
            own.id if own is not None and own.kind in (AreaKind.TOWNSHIP, AreaKind.COUNTY)
            else offices[0].id
        )  # fmt: skip
    first, last = svc.month_of(request.args.get("month"), _today())
    try:
        return svc.build(db(), scope, area_id, first, last, settings().tz)
    except NotFound:
        abort(404)


def _context(ledger: svc.Ledger) -> dict[str, Any]:
    return {
        "ledger": ledger,
        "totals": ledger.totals,
        "offices": svc.offices(db(), Scope.of(g.user)),
        "weeks_chart": _bars(
            [(w.label, [w.planned, w.built, w.confirmed]) for w in ledger.weeks], 3
        ),
        "reach_chart": _bars([(v, [n]) for _t, v, n in ledger.by_village], 1, width=640),
        "rules": breakin_svc.RULES,
        "platforms": PLATFORM_LABELS,
        "kinds": {k.value: label for k, label in terminal_svc.KIND_LABELS.items()},
        "unfiled": svc.UNFILED,
        "printed_at": settings().now(),
        "page_content": _page_content(),
    }


def _page_content() -> str:
    """The CSS ``content`` of the page-number margin box, in the reader's language."""
    label = _("第 {page} 页，共 {pages} 页").replace('"', "").replace("\\", "")
    return (
        '"'
        + label.replace("{page}", '" counter(page) "').replace("{pages}", '" counter(pages) "')
        + '"'
    )


def _bars(
    rows: list[tuple[str, list[int]]], series: int, width: int = 640, height: int = 220
) -> dict[str, Any]:
    """Coordinates of a grouped bar chart drawn as SVG on the server (no script, prints)."""
    pad_left, pad_bottom, pad_top = 34, 40, 14
    top = max([v for _l, values in rows for v in values] + [1])
    step = (width - pad_left - 10) / max(len(rows), 1)
    bar = max(min(step / (series + 1), 28), 2)
    plot = height - pad_bottom - pad_top
    groups = []
    for index, (label, values) in enumerate(rows):
        x0 = pad_left + index * step + (step - bar * series) / 2
        bars = []
        for k, value in enumerate(values):
            h = round(value * plot / top, 1)
            bars.append(
                {
                    "x": round(x0 + k * bar, 1),
                    "y": round(height - pad_bottom - h, 1),
                    "h": h,
                    "w": round(bar - 1, 1),
                    "value": value,
                    "series": k,
                }
            )
        groups.append(
            {"label": label, "bars": bars, "x": round(pad_left + index * step + step / 2, 1)}
        )
    return {
        "width": width,
        "height": height,
        "top": top,
        "baseline": height - pad_bottom,
        "y_top": pad_top,
        "pad": pad_left,
        "groups": groups,
    }


@bp.get("/")
@rule(*STAFF)
def index() -> Any:
    """The month's ledger of a township or the county, with charts and downloads."""
    ledger = _ledger()
    return render_template("ledger/index.html", **_context(ledger))


@bp.get("/print")
@rule(*STAFF)
def print_page() -> Any:
    """The ledger laid out as an office document (what the PDF is printed from)."""
    return render_template("ledger/print.html", **_context(_ledger()))


def _file_names(ledger: svc.Ledger, ext: str) -> tuple[str, str]:
    name = printable(ledger.area.name).replace("/", "_")
    return f"{name}宣传台账_{ledger.month}.{ext}", f"ledger_{ledger.area.id}_{ledger.month}.{ext}"


@bp.get("/ledger.pdf")
@rule(*STAFF)
def pdf() -> Any:
    """The print page as PDF, printed by headless Chromium."""
    ledger = _ledger()
    html = render_template("ledger/print.html", **_context(ledger), for_pdf=True)
    chromium = (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )
    if chromium is None:
        abort(
            503,
            description=_(
                "这台电脑上没有 Chromium，无法生成 PDF；可以先下载 Excel，或在浏览器里打印本页"
            ),
        )
    with tempfile.TemporaryDirectory(prefix="dalaba-ledger-") as folder:
        source, target = Path(folder) / "ledger.html", Path(folder) / "ledger.pdf"
        source.write_text(html, encoding="utf-8")
        try:
            subprocess.run(
                [
                    chromium,
                    *CHROMIUM_ARGS,
                    f"--user-data-dir={folder}/profile",
                    f"--print-to-pdf={target}",
                    source.as_uri(),
                ],
                check=True,
                capture_output=True,
                timeout=PDF_TIMEOUT_S,
            )
            data = target.read_bytes()
        except (OSError, subprocess.SubprocessError):
            abort(503, description=_("PDF 生成失败，请稍后再试，或先下载 Excel"))
    filename, fallback = _file_names(ledger, "pdf")
    return Response(
        data,
        mimetype="application/pdf",
        headers={"Content-Disposition": content_disposition(filename, fallback)},
    )


@bp.get("/ledger.xlsx")
@rule(*STAFF)
def xlsx() -> Any:
    """The ledger as an Excel workbook: a summary sheet and one sheet per section."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    ledger = _ledger()
    t = ledger.totals
    book = Workbook()
    summary = book.active
    assert summary is not None
    summary.title = _("汇总")
    summary.append([neutralise(_("{office}宣传台账").format(office=ledger.area.name))])
    summary.append([_("期间"), f"{ledger.first.isoformat()} – {ledger.last.isoformat()}"])
    summary.append([])
    # The platforms the area publishes on (every installed one when none).
    used = [name for name, _articles in ledger.publishers] or None
    for label, key in (
        (_("公告"), "notices"),
        (_("应播节目"), "planned"),
        (_("已生成"), "built"),
        (_("已下载"), "fetched"),
        (_("已确认"), "confirmed"),
        (_("群聊发送成功"), "posts_sent"),
        (_("群聊发送失败"), "posts_failed"),
        (_("分享页播放"), "share_plays"),
        (_("打印的公告"), "printed_notices"),
        (_("打印次数"), "prints"),
        (_("{noun}文章").format(noun=publisher_nouns(used)), "articles"),
        (_("立即插播"), "breakins"),
        (_("终端播前完整下载"), "boxes_full"),
    ):
        summary.append([label, t[key]])
    summary["A1"].font = Font(bold=True, size=14)

    def sheet(title: str, header: list[str], rows: list[list[Any]]) -> None:
        ws = book.create_sheet(title)
        ws.append(header)
        for cell in ws[1]:
            cell.font = Font(bold=True)
        for row in rows:
            ws.append([neutralise(v) for v in row])

    def platform(key: str) -> str:
        return _(PLATFORM_LABELS[key]) if key in PLATFORM_LABELS else key

    def topic(name: str | None) -> str:
        return name if name is not None else _(svc.UNFILED)

    sheet(_("公告"), [_("标题"), _("主题"), _("播出期")],
          [[title, topic(tp), dates] for title, tp, dates in ledger.notices])  # fmt: skip
    sheet(_("按主题"), [_("主题"), _("公告数")], [[topic(n), c] for n, c in ledger.by_topic])
    sheet(_("按村"), [_("乡镇"), _("村"), _("覆盖的公告")], [list(r) for r in ledger.by_village])
    sheet(
        _("广播"),
        [_("广播点"), _("村"), _("乡镇"), _("应播节目"), _("已生成"), _("已下载"), _("已确认")],
        [[r.outlet, r.village, r.township, r.planned, r.built, r.fetched, r.confirmed]
         for r in ledger.outlets],
    )  # fmt: skip
    sheet(
        _("终端"),
        [_("广播点"), _("终端"), _("类型"), _("播前完整下载"), _("开播后下载完"), _("部分下载"),
         _("没有下载")],
        [[b.outlet, b.terminal, _(terminal_svc.KIND_LABELS[terminal_svc.TerminalKind(b.kind)]),
          b.full, b.late, b.partial, b.none] for b in ledger.boxes],
    )  # fmt: skip
    sheet(_("每周"), [_("周"), _("应播节目"), _("已生成"), _("已确认")],
          [[w.label, w.planned, w.built, w.confirmed] for w in ledger.weeks])  # fmt: skip
    sheet(_("群聊"), [_("平台"), _("发送成功"), _("发送失败")],
          [[platform(p.platform), p.sent, p.failed] for p in ledger.posts])  # fmt: skip
    sheet(_("分享页"), [_("公告"), _("播放次数")], [list(r) for r in ledger.shares])
    sheet(_("打印"), [_("公告"), _("打印次数")], [list(r) for r in ledger.prints])
    tz = settings().tz
    # Each publishing platform's articles on a sheet named by its noun.
    # (One sheet under every installed one's noun when the area has none.)
    for name, articles in ledger.publishers or [("", [])]:
        sheet(publisher_noun(name) if name else publisher_nouns(), [_("标题"), _("链接"), _("发布时间")],
              [[title, url, when.astimezone(tz).strftime("%Y-%m-%d %H:%M") if when else ""]
               for title, url, when in articles])  # fmt: skip
    sheet(
        _("立即插播"),
        [_("公告"), _("开始"), _("方式"), _("广播点"), _("已播放"), _("结束")],
        [[b.title, b.started_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
          _(breakin_svc.RULES.get(b.rule, b.rule)), b.outlets, b.played,
          b.ended_at.astimezone(tz).strftime("%H:%M") if b.ended_at else ""]
         for b in ledger.breakins],
    )  # fmt: skip
    if ledger.townships:
        sheet(
            _("各乡镇"),
            [_("乡镇"), _("公告"), _("应播节目"), _("已生成"), _("已下载"), _("已确认"),
             _("群聊发送成功"), _("立即插播")],
            [[r.township, r.notices, r.planned, r.built, r.fetched, r.confirmed, r.posts_sent,
              r.breakins] for r in ledger.townships],
        )  # fmt: skip
    return xlsx_response(book, *_file_names(ledger, "xlsx"))
