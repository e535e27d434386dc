"""The compliance view (督查): per village and day, what was built, downloaded and confirmed,
with a chart, as CSV and as Excel (on the operators' blueprint, :mod:`cms.web.links`)."""

from __future__ import annotations

from datetime import date
from typing import Any

from flask import g, render_template
from flask_babel import gettext as _
from sqlalchemy import select

from cms.models import Outlet
from cms.roles import STAFF
from cms.services import operators as svc
from cms.services import terminals as terminal_svc
from cms.services.scope import Scope
from cms.web.auth import rule
from cms.web.db import db, settings
from cms.web.forms import int_arg
from cms.web.links import bp
from cms.web.sheets import csv_response, neutralise, xlsx_response


def _compliance_rows() -> tuple[int, date, list[svc.ComplianceRow]]:
    days = int_arg("days", 30, lo=1, hi=366) or 30
    now = settings().now()
    rows = svc.compliance(db(), now, settings().tz, days, settings(), scope=Scope.of(g.user))
    return days, now.astimezone(settings().tz).date(), rows


@bp.get("/compliance")
@rule(*STAFF)
def compliance() -> Any:
    """Per village and day: programs built, downloaded and confirmed, with a 30-day chart."""
    days, today, rows = _compliance_rows()
    totals = svc.daily_totals(rows, today, days)
    outlet_ids = list(db().scalars(select(Outlet.id).where(Scope.of(g.user).outlets())))
    return render_template(
        "operators/compliance.html",
        rows=rows,
        days=days,
        chart=_chart(totals),
        totals=totals,
        boxes=terminal_svc.day_statuses(db(), outlet_ids, today, settings().tz),
        box_day=today,
        box_statuses=terminal_svc.STATUS_LABELS,
        box_kinds=terminal_svc.KIND_LABELS,
    )


def _chart(totals: list[svc.ComplianceRow]) -> dict[str, Any]:
    """Coordinates for a server-rendered SVG: per day, built and confirmed bars, downloads dots."""
    width, height, pad = 720, 220, 30
    top = max([t.planned for t in totals] + [1])
    step = (width - 2 * pad) / max(len(totals), 1)
    bar = max(step / 2 - 1, 1)

    def y(value: int) -> float:
        return round(height - pad - value * (height - 2 * pad) / top, 1)

    bars = []
    for index, t in enumerate(totals):
        x = round(pad + index * step, 1)
        bars.append(
            {
                "day": t.day,
                "x_built": x,
                "x_confirmed": round(x + bar, 1),
                "width": round(bar, 1),
                "y_built": y(t.built),
                "h_built": round(height - pad - y(t.built), 1),
                "y_confirmed": y(t.confirmed),
                "h_confirmed": round(height - pad - y(t.confirmed), 1),
                "cx": round(x + bar, 1),
                "cy": y(t.downloaded),
                "label": index % 5 == 0 or index == len(totals) - 1,
                "totals": t,
            }
        )
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "top": top,
        "y_top": y(top),
        "baseline": height - pad,
        "bars": bars,
    }


# Every outcome column (待播出 … 漏播) counts each applicable program once: they add up to 应播节目.
COLUMNS = (
    "日期",
    "村",
    "应播节目",
    "待播出",
    "待确认",
    "已确认",
    "迟报",
    "未确认",
    "补生成",
    "漏播",
    "已下载",
    "确认率",
)


def _table(rows: list[svc.ComplianceRow]) -> list[list[Any]]:
    return [
        [
            r.day,
            neutralise(r.village),
            r.planned,
            r.pending,
            r.awaiting,
            r.on_time,
            r.late,
            r.unconfirmed,
            r.built_late,
            r.missed,
            r.downloaded,
            round(r.rate, 3),
        ]
        for r in rows
    ]


@bp.get("/compliance.csv")
@rule(*STAFF)
def compliance_csv() -> Any:
    """The compliance table as CSV (UTF-8 with BOM so Excel shows the Chinese)."""
    days, today, rows = _compliance_rows()
    return csv_response(
        [_(c) for c in COLUMNS],
        _table(rows),
        f"督查_{today.isoformat()}_{days}天.csv",
        f"compliance_{today.isoformat()}_{days}d.csv",
    )


@bp.get("/compliance.xlsx")
@rule(*STAFF)
def compliance_xlsx() -> Any:
    """The compliance table as an Excel workbook."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.worksheet.worksheet import Worksheet

    days, today, rows = _compliance_rows()
    book = Workbook()
    sheet = book.active
    assert isinstance(sheet, Worksheet)  # a new workbook starts with one worksheet
    sheet.title = _("督查")
    sheet.append([_(c) for c in COLUMNS])
    for cell in sheet[1]:
        cell.font = Font(bold=True)
    for row in _table(rows):
        sheet.append(row)
        for cell in sheet[sheet.max_row]:
            if isinstance(cell.value, str):
                cell.data_type = "s"  # user text is a string cell, never a formula
    for cell in sheet["A"][1:]:
        cell.number_format = "yyyy-mm-dd"
    for cell in sheet["L"][1:]:
        cell.number_format = "0.0%"
    sheet.freeze_panes = "A2"
    sheet.column_dimensions["A"].width = 12
    sheet.column_dimensions["B"].width = 16
    return xlsx_response(
        book,
        f"督查_{today.isoformat()}_{days}天.xlsx",
        f"compliance_{today.isoformat()}_{days}d.xlsx",
    )
