"""The township's compliance view: access, table, SVG chart, CSV and XLSX exports."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, time, timedelta
from urllib.parse import unquote

import pytest
from openpyxl import load_workbook

from cms.models import Role
from cms.services import operators as svc
from tests.conftest import login


@pytest.fixture
def data(session, settings, make_outlet, make_program, grid, day):  # type: ignore[no-untyped-def]
    a = make_outlet(area=grid["g1"])
    c = make_outlet(area=grid["v2"])
    a1 = make_program(a, day, 0)
    make_program(a, day, 1)
    c1 = make_program(c, day - timedelta(days=3), 0)
    svc.record_download(session, a.id, day, "mp3", a1.id)
    when = datetime.combine(day, time(7, 45), tzinfo=settings.tz).astimezone(UTC)
    svc.confirm_playback(session, a1, None, "link", when, tz=settings.tz)
    svc.confirm_playback(session, c1, None, "bot", when, tz=settings.tz)  # days late
    session.commit()


@pytest.fixture
def inspector(app, make_user):  # type: ignore[no-untyped-def]
    client = app.test_client()
    login(client, make_user(Role.REVIEWER))
    return client


def test_only_staff_see_compliance(app, make_user, data) -> None:  # type: ignore[no-untyped-def]
    anonymous = app.test_client()
    assert anonymous.get("/compliance").status_code == 302
    operator = app.test_client()
    login(operator, make_user(Role.OPERATOR))
    for url in ("/compliance", "/compliance.csv", "/compliance.xlsx"):
        assert operator.get(url).status_code == 403
    for role in (Role.ADMIN, Role.EDITOR, Role.REVIEWER):
        staff = app.test_client()
        login(staff, make_user(role))
        assert staff.get("/compliance").status_code == 200


def test_page_has_table_and_svg_chart(inspector, data, clock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import cms.web.operators as views

    monkeypatch.setattr(views, "_today", lambda: clock.today)
    html = inspector.get("/compliance").get_data(as_text=True)
    assert '<svg viewBox="0 0 720 220"' in html
    assert html.count('<rect class="built"') == 30 and html.count('<rect class="confirmed"') == 30
    assert "<script" not in html.split("<main>", 1)[1]  # no JS framework, no inline script
    assert "style=" not in html  # CSP: styles live in operators.css
    table = html.split('data-testid="compliance-table"', 1)[1]
    assert "石桥村" in table and "柳林村" in table
    week = inspector.get("/compliance?days=7").get_data(as_text=True)
    assert week.count('<rect class="built"') == 7
    assert inspector.get("/compliance?days=0").status_code == 400
    assert inspector.get("/compliance?days=x").status_code == 400


def test_csv_export(inspector, data, day, clock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import cms.web.operators as views

    monkeypatch.setattr(views, "_today", lambda: clock.today)
    response = inspector.get("/compliance.csv")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    assert unquote(disposition.split("''", 1)[1]) == f"督查_{day}_30天.csv"
    text = response.data.decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0] == [
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
    ]
    # At noon: 石桥村's 07:30 is confirmed and its 19:00 still ahead; 柳林村 confirmed days late.
    assert rows[1:] == [
        [day.isoformat(), "石桥村", "2", "1", "0", "1", "0", "0", "0", "0", "1", "1.0"],
        [
            (day - timedelta(days=3)).isoformat(),
            "柳林村",
            "1",
            "0",
            "0",
            "0",
            "1",
            "0",
            "0",
            "0",
            "0",
            "1.0",
        ],
    ]
    for row in rows[1:]:
        assert int(row[2]) == sum(int(v) for v in row[3:10])


def test_xlsx_export(inspector, data, day, clock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import cms.web.operators as views

    monkeypatch.setattr(views, "_today", lambda: clock.today)
    response = inspector.get("/compliance.xlsx")
    assert response.status_code == 200
    assert response.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(response.data)).active
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert values[0][:3] == ["日期", "村", "应播节目"]
    first = values[1]
    assert first[0].date() == day and first[1:] == ["石桥村", 2, 1, 0, 1, 0, 0, 0, 0, 1, 1.0]
    assert values[2][1:11] == ["柳林村", 1, 0, 0, 0, 1, 0, 0, 0, 0]
    assert len(values) == 3
