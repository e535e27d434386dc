"""Outputs stay valid whatever is stored: feeds parse as XML, playlists keep their lines,
spreadsheet cells never run as formulas, file names carry no controls.

The hostile names are written straight into the database, as rows saved before the text
fields refused such characters (or text from elsewhere) would be.
"""

from __future__ import annotations

import csv
import io
from urllib.parse import unquote
from xml.etree import ElementTree as ET

import feedparser
import pytest
from openpyxl import load_workbook

from cms.models import Area, AreaKind, Role
from tests.conftest import login

NOT_XML = "\ufffe\uffff\x01\x08\x1b"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_feed_with_characters_xml_forbids_still_parses(
    client, make_outlet, make_program, link, day
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(name=f"石桥{NOT_XML}村{BIDI}大喇叭")
    make_program(outlet, day, 0, titles=(f"秋冬{NOT_XML}防火{BIDI}", "垃圾\ud800分类"))
    response = client.get(f"{link(outlet)}/feed.xml")
    assert response.status_code == 200
    root = ET.fromstring(response.data)  # raises on ill-formed XML
    assert root.find("channel/title").text == "石桥村大喇叭 · 大喇叭"
    feed = feedparser.parse(response.data)
    assert not feed.bozo, feed.bozo_exception
    assert feed.entries[0].summary == "秋冬防火、垃圾分类"
    disposition = unquote(response.headers["Content-Disposition"])
    assert "\u202e" not in disposition and "\ufffe" not in disposition


def test_playlist_strips_them_and_keeps_one_entry_per_line(
    client, make_outlet, make_program, link, day
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(
        name=f"柳林\r\n#EXTINF:1,假的\nhttp://evil.example/x.mp3\n{NOT_XML}{BIDI}村"
    )
    make_program(outlet, day, 0)
    base = link(outlet)
    text = client.get(f"{base}/{day}.m3u8").get_data(as_text=True)
    assert not any(ch in text for ch in NOT_XML + BIDI + "\r")
    lines = text.splitlines()
    assert len(lines) == 4 and lines[0] == "#EXTM3U"
    assert lines[1] == f"#PLAYLIST:柳林 #EXTINF:1,假的 http://evil.example/x.mp3 村 {day}"
    assert lines[2].startswith("#EXTINF:2,柳林 #EXTINF:1,假的")
    assert lines[3] == f"http://127.0.0.1:8080{base}/{day}/0730.mp3"


# The last one also holds characters an XLSX (XML) cell cannot carry, which openpyxl refuses.
FORMULAS = [
    '=HYPERLINK("http://evil.example","点此")',
    "+1+1",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    f"{NOT_XML}{BIDI}=坏村",
]
# What the export shows: a quote before each, and no character XML or bidi would choke on
# (XML itself reads a CR as a line feed, so the workbook gives "\n" back for "\r").
SHOWN = ["'" + name for name in FORMULAS[:-1]] + ["'=坏村"]


@pytest.fixture
def formula_villages(session, grid, make_outlet, make_program, day):  # type: ignore[no-untyped-def]
    """Villages named like formulas (written directly, as old or imported rows would be)."""
    for index, name in enumerate(FORMULAS):
        village = Area(name=name, kind=AreaKind.VILLAGE, parent=grid["town"], sort=index)
        session.add(village)
        session.flush()
        village.path = f"{grid['town'].path}{village.id}/"
        make_program(make_outlet(area=village), day, 0)
    session.commit()


@pytest.fixture
def inspector(app, make_user, clock, monkeypatch):  # type: ignore[no-untyped-def]
    import cms.web.operators as views

    monkeypatch.setattr(views, "_today", lambda: clock.today)
    client = app.test_client()
    login(client, make_user(Role.REVIEWER))
    return client


def test_csv_cells_that_look_like_formulas_are_quoted(inspector, formula_villages) -> None:  # type: ignore[no-untyped-def]
    text = inspector.get("/compliance.csv").data.decode("utf-8").lstrip("\ufeff")
    villages = [row[1] for row in csv.reader(io.StringIO(text, newline=""))][1:]
    assert sorted(villages) == sorted(SHOWN)


def test_xlsx_cells_are_strings_and_quoted(inspector, formula_villages) -> None:  # type: ignore[no-untyped-def]
    sheet = load_workbook(io.BytesIO(inspector.get("/compliance.xlsx").data)).active
    cells = [row[1] for row in sheet.iter_rows(min_row=2)]
    assert sorted(c.value for c in cells) == sorted(v.replace("\r", "\n") for v in SHOWN)
    assert {c.data_type for c in cells} == {"s"}
    numbers = [row[2] for row in sheet.iter_rows(min_row=2)]
    assert {c.data_type for c in numbers} == {"n"}  # counts stay numbers


def test_plain_names_and_negative_numbers_are_left_alone() -> None:
    from cms.web.sheets import neutralise

    assert neutralise("石桥村") == "石桥村"
    assert neutralise(-3) == -3 and neutralise(0.5) == 0.5
    assert neutralise("a=b") == "a=b"
    assert neutralise("-") == "'-"
