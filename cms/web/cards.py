"""Tables that turn into labelled cards on a phone.

On a narrow screen ``app.css`` shows each table row as a card and each cell as a line led by
its column's name (``td::before { content: attr(data-label) }``). The names come from here:
``base.html`` passes every page's content through the ``cards`` filter, which copies each
column header's text into a ``data-label`` attribute on the cells below it, so no template
repeats its headers and a new table is labelled without a thought.

Cells that span a whole row (an empty-list message) get no label; rowspans and colspans
are followed so that every other cell is named after the column it stands in. A cell that
already carries ``data-label`` keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from html.parser import HTMLParser
from itertools import accumulate

from markupsafe import Markup

__all__ = ["label_cells"]


@dataclass
class _Table:
    headers: list[str] = field(default_factory=list)
    section: str = ""  # "thead", "tbody" or "tfoot" ("" for rows outside any of them)
    header_row: bool = False  # the row being read holds the column headers
    column: int = 0
    occupied: set[int] = field(default_factory=set)  # columns held by a rowspan above
    carry: dict[int, int] = field(default_factory=dict)  # column -> rows its rowspan still holds
    th_text: list[str] | None = None  # text of the header cell being read
    th_span: int = 1


def _span(attrs: list[tuple[str, str | None]], name: str) -> int:
    for key, value in attrs:
        if key == name and value and value.strip().isdigit():
            return max(int(value.strip()), 1)
    return 1


class _Labeller(HTMLParser):
    """Finds each ``<td>``'s offset in the page and the label it should carry."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: list[_Table] = []
        self.inserts: list[tuple[tuple[int, int], str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.tables.append(_Table())
            return
        if not self.tables:
            return
        table = self.tables[-1]
        if tag in ("thead", "tbody", "tfoot"):
            table.section = tag
        elif tag == "tr":
            table.column = 0
            table.occupied = {c for c, rows in table.carry.items() if rows > 0}
            # Headers come from the thead, or from a leading row of <th> when there is none.
            table.header_row = table.section == "thead" or (
                not table.headers and table.section in ("", "tbody")
            )
        elif tag in ("td", "th"):
            self._cell(table, tag, attrs)

    def _cell(self, table: _Table, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        while table.column in table.occupied:
            table.column += 1
        column, colspan, rowspan = table.column, _span(attrs, "colspan"), _span(attrs, "rowspan")
        table.column += colspan
        if rowspan > 1:
            for c in range(column, column + colspan):
                table.carry[c] = rowspan - 1
        if tag == "th" and table.header_row:
            table.th_text, table.th_span = [], colspan
            return
        table.header_row = False
        if tag != "td" or any(key == "data-label" for key, _ in attrs):
            return
        if colspan > 1 and colspan >= len(table.headers):
            return  # a message across the whole row, not a value in a column
        label = table.headers[column] if column < len(table.headers) else ""
        if label:
            self.inserts.append((self.getpos(), label))

    def handle_data(self, data: str) -> None:
        if self.tables and self.tables[-1].th_text is not None:
            self.tables[-1].th_text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if not self.tables:
            return
        table = self.tables[-1]
        if tag == "table":
            self.tables.pop()
        elif tag == "th" and table.th_text is not None:
            text = " ".join("".join(table.th_text).split())
            table.headers.extend([text] + [""] * (table.th_span - 1))
            table.th_text = None
        elif tag == "tr":
            for c in table.occupied:
                table.carry[c] -= 1
            table.header_row = False
        elif tag in ("thead", "tbody", "tfoot"):
            table.section = ""


def label_cells(html: str) -> Markup:
    """``html`` with each table cell's column header copied into its ``data-label``."""
    text = str(html)
    if "<table" not in text:
        return Markup(text)
    labeller = _Labeller()
    labeller.feed(text)
    labeller.close()
    if not labeller.inserts:
        return Markup(text)
    # HTMLParser counts lines by "\n" alone (not str.splitlines' other breaks).
    line_starts = [0, *accumulate(len(line) + 1 for line in text.split("\n"))]
    pieces, last = [], 0
    for (line, offset), label in labeller.inserts:
        at = line_starts[line - 1] + offset + len("<td")
        pieces += [text[last:at], f' data-label="{escape(label)}"']
        last = at
    pieces.append(text[last:])
    return Markup("".join(pieces))
