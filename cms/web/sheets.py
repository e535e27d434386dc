"""Tables people download (CSV and Excel): cells that stay text, and the responses."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING, Any

from flask import Response

from cms.services.text import printable
from cms.web.sendfile import content_disposition

if TYPE_CHECKING:
    from openpyxl import Workbook

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

# OWASP's CSV-injection rule: a cell starting with one of these is read as a formula by Excel,
# LibreOffice or Google Sheets (a village named "=HYPERLINK(…)" would become a live link).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A spreadsheet cell that stays text: user text, printable, with a quote before it when
    it starts like a formula; numbers and dates as they are."""
    if isinstance(value, str):
        value = printable(value)
        if value.startswith(FORMULA_START):
            return "'" + value
    return value


def csv_response(
    header: Sequence[str], rows: Iterable[Sequence[Any]], filename: str, fallback: str
) -> Response:
    """A CSV download, UTF-8 with a BOM so that Excel shows the Chinese; dates as ISO."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    for row in rows:
        writer.writerow([v.isoformat() if isinstance(v, date) else v for v in row])
    return Response(
        "\ufeff" + out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": content_disposition(filename, fallback)},
    )


def xlsx_response(book: Workbook, filename: str, fallback: str) -> Response:
    """An Excel workbook download."""
    out = io.BytesIO()
    book.save(out)
    return Response(
        out.getvalue(),
        mimetype=XLSX,
        headers={"Content-Disposition": content_disposition(filename, fallback)},
    )
