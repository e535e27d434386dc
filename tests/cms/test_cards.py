"""Table cells named after their column, for the phone's card layout (cms/web/cards.py)."""

from __future__ import annotations

import re

from markupsafe import Markup

from cms.web.cards import label_cells


def labels(html: str) -> list[str | None]:
    """Each <td>'s data-label in order (None when it has none)."""
    out: list[str | None] = []
    for tag in re.findall(r"<td\b[^>]*>", str(label_cells(html))):
        found = re.search(r'data-label="([^"]*)"', tag)
        out.append(found.group(1) if found else None)
    return out


def test_each_cell_takes_its_column_header() -> None:
    html = (
        "<table><thead><tr><th>标题</th><th>播出期 <small>(日)</small></th></tr></thead>"
        "<tbody><tr><td>a</td><td>11-30–12-06</td></tr>\n<tr><td>b</td><td>x</td></tr></tbody>"
        "</table>"
    )
    assert labels(html) == ["标题", "播出期 (日)", "标题", "播出期 (日)"]
    assert isinstance(label_cells(html), Markup)


def test_rowspans_and_colspans_are_followed() -> None:
    html = """<table><thead><tr><th>时段</th><th>顺序</th><th>标题</th><th>签字</th></tr></thead>
<tbody>
<tr><td rowspan="2">07:30</td><td>1</td><td>甲</td><td rowspan="2"></td></tr>
<tr><td>2</td><td>乙</td></tr>
<tr><td>12:00</td><td colspan="2">无公告</td><td></td></tr>
<tr><td colspan="4">这段时间没有节目</td></tr>
</tbody></table>"""
    assert labels(html) == [
        "时段", "顺序", "标题", "签字",
        "顺序", "标题",
        "时段", "顺序", "签字",
        None,  # a message across the whole row
    ]  # fmt: skip


def test_headers_are_escaped_and_an_own_label_wins() -> None:
    html = (
        '<table><tr><th>A &amp; "B"</th><th>C</th></tr>'
        '<tr><td>1</td><td data-label="mine">2</td></tr></table>'
    )
    out = str(label_cells(html))
    assert 'data-label="A &amp; &quot;B&quot;"' in out
    assert out.count("data-label") == 2 and 'data-label="mine"' in out


def test_footer_header_cells_stay_and_nested_tables_have_their_own_columns() -> None:
    html = (
        "<table><thead><tr><th>日期</th><th>次数</th></tr></thead>"
        "<tbody><tr><td>11-30</td><td><table><thead><tr><th>内</th></tr></thead>"
        "<tbody><tr><td>i</td></tr></tbody></table></td></tr></tbody>"
        "<tfoot><tr><th>合计</th><td>3</td></tr></tfoot></table>"
    )
    assert labels(html) == ["日期", "次数", "内", "次数"]


def test_a_page_without_tables_is_returned_as_is() -> None:
    html = "<p>今日播出 <b>4</b> 条</p>\n"
    assert str(label_cells(html)) == html
