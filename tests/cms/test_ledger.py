"""宣传台账: a month built row by row on fixed dates (a past November, whatever today is);
every total of the township's and the county's ledger is checked against its rows, and
against what was put in; the XLSX and the PDF carry the same numbers; scope holds."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from cms.models import (
    Announcement,
    ArticleState,
    BreakIn,
    BreakInOutlet,
    ChatGroup,
    Delivery,
    DeliveryState,
    DownloadEvent,
    JobState,
    Outlet,
    OutletKind,
    Program,
    PublisherAccount,
    PublisherArticle,
    Receipt,
    Role,
    ShareDownload,
    Slot,
    Terminal,
    TerminalFetch,
    TerminalKind,
    User,
)
from cms.services import announcements as anns
from cms.services import ledger as svc
from cms.services import topics
from cms.services.scope import Scope
from tests.conftest import login
from tests.helpers import County, make_county

NOV = date(2025, 11, 1)
TZ_OFFSET = timedelta(hours=8)  # Asia/Shanghai


def at(day: date, hh: int, mm: int = 0) -> datetime:
    """A township time as UTC."""
    return datetime.combine(day, time(hh, mm), tzinfo=UTC) - TZ_OFFSET


@pytest.fixture
def county(session: Session, make_user: Callable[..., User]) -> County:
    return make_county(session, make_user)


def notice(
    session: Session, county: County, where: str, title: str, topic_id: int | None,
    targets: list[int], start: date, days: int = 5,
) -> Announcement:  # fmt: skip
    editor, reviewer = county.users[(where, Role.EDITOR)], county.users[(where, Role.REVIEWER)]
    data = {
        "title": title, "body": f"{title}：请各户相互转告。", "spoken_text": "",
        "topic_id": topic_id, "priority": "normal", "area_ids": targets,
        "to_loudspeaker": True, "to_chats": True, "start_date": start.isoformat(),
        "end_date": (start + timedelta(days=days)).isoformat(), "repeats": 1,
        "chat_post_time": "09:00", "voice": "zh-CN-XiaoxiaoNeural", "rate": 0,
    }  # fmt: skip
    ann = anns.create(session, editor, data, today=start)
    anns.submit(session, editor, ann)
    anns.approve(session, reviewer, ann)
    return ann


@pytest.fixture
def month(session: Session, county: County, make_user: Callable[..., User]) -> dict[str, Any]:
    """November, built row by row: what went in, to compare with what the ledger says."""
    fire = topics.save_topic(session, None, None, name="森林防火").id
    health = topics.save_topic(session, None, None, name="医保缴费").id
    a, b = county.villages["a"], county.villages["b"]
    n1 = notice(session, county, "a", "清明森林防火", fire, [a.id], NOV + timedelta(days=2))
    n2 = notice(session, county, "a", "医保缴费提醒", health, [a.id], NOV + timedelta(days=9))
    n3 = notice(
        session, county, "a", "全乡大扫除", None, [county.towns["a"].id], date(2025, 10, 28)
    )
    n4 = notice(session, county, "b", "幸福镇医保", health, [b.id], NOV + timedelta(days=20))
    notice(session, county, "a", "十二月的通知", fire, [a.id], date(2025, 12, 2))  # not November
    gone = notice(session, county, "a", "早撤回的", fire, [a.id], date(2025, 10, 20), days=30)
    anns.withdraw(session, county.users[("a", Role.EDITOR)], gone)
    gone.withdrawn_at = at(date(2025, 10, 25), 9)
    session.flush()

    outlets = {}
    for key in ("a", "b"):
        outlet = Outlet(name=f"{key}村大喇叭", kind=OutletKind.LOUDSPEAKER,
                        area_id=county.villages[key].id)  # fmt: skip
        outlet.slots = [Slot(at=time(7, 30), minutes=10), Slot(at=time(19, 0), minutes=10)]
        session.add(outlet)
        outlets[key] = outlet
    session.flush()
    programs: list[Program] = []

    def program(outlet: Outlet, day: date, slot: int, built: bool) -> Program:
        p = Program(
            outlet_id=outlet.id, day=day, slot_id=outlet.slots[slot].id,
            state=JobState.DONE if built else JobState.FAILED,
            path=f"programs/{day}/{outlet.id}-{slot}.mp3" if built else None,
        )  # fmt: skip
        session.add(p)
        programs.append(p)
        return p

    # 村 a: 1–10 November, two slots a day: 20 planned, 15 built.
    for d in range(10):
        for slot in (0, 1):
            program(outlets["a"], NOV + timedelta(days=d), slot, built=not (slot == 1 and d < 5))
    # 村 b: 28–29 November (a week that ends in December), 4 built.
    for d in (27, 28):
        for slot in (0, 1):
            program(outlets["b"], NOV + timedelta(days=d), slot, built=True)
    # Not counted: October, and a cancelled row.
    program(outlets["a"], date(2025, 10, 31), 0, built=True)
    cancelled = program(outlets["a"], NOV + timedelta(days=12), 0, built=False)
    cancelled.state = JobState.CANCELLED
    session.flush()
    a_built = [p for p in programs if p.outlet_id == outlets["a"].id and p.state is JobState.DONE
               and p.day.month == 11]  # fmt: skip
    b_built = [p for p in programs if p.outlet_id == outlets["b"].id]
    for p in a_built[:8] + b_built[:2]:
        session.add(Receipt(program_id=p.id, via="web", confirmed_at=at(p.day, 8)))
    for p in a_built[:6]:
        session.add(DownloadEvent(program_id=p.id, outlet_id=p.outlet_id, day=p.day, kind="mp3"))
    session.add(
        DownloadEvent(
            program_id=a_built[0].id, outlet_id=outlets["a"].id, day=a_built[0].day, kind="rss"
        )
    )  # a feed lists, it does not fetch
    box = Terminal(outlet_id=outlets["a"].id, kind=TerminalKind.COLUMN_4G, name="广场音柱",
                   token_hash="x" * 64, prefix="xxxxxx")  # fmt: skip
    session.add(box)
    session.flush()
    # The box: three programs whole before their slot (one of them already downloaded by the
    # operator), one in part, one only after its slot began.
    for p, ranges, when in (
        (a_built[5], ["0-999"], 6), (a_built[6], ["0-499", "500-999"], 6),
        (a_built[7], ["0-999"], 7), (a_built[8], ["0-299"], 6), (a_built[9], ["0-999"], 20),
    ):  # fmt: skip
        for r in ranges:
            lo, hi = (int(x) for x in r.split("-"))
            session.add(TerminalFetch(
                terminal_id=box.id, outlet_id=p.outlet_id, program_id=p.id, day=p.day,
                kind="mp3", at=at(p.day, when), size=1000, bytes_sent=hi - lo + 1,
                complete=r == "0-999", ranges=r,
            ))  # fmt: skip

    chats = {}
    for platform in ("telegram", "wecom", "dingtalk"):
        chats[platform] = ChatGroup(platform=platform, chat_id=f"c-{platform}",
                                    area_id=county.villages["a"].id)  # fmt: skip
        session.add(chats[platform])
    chat_b = ChatGroup(platform="telegram", chat_id="c-b", area_id=county.villages["b"].id)
    session.add(chat_b)
    session.flush()
    for rev, chat, state, due in (
        (n1, "telegram", DeliveryState.SENT, NOV + timedelta(days=2)),
        (n2, "telegram", DeliveryState.SENT, NOV + timedelta(days=9)),
        (n3, "telegram", DeliveryState.SENT, NOV),
        (n1, "wecom", DeliveryState.FAILED, NOV + timedelta(days=2)),
        (n2, "wecom", DeliveryState.UNCERTAIN, NOV + timedelta(days=9)),
        (n1, "dingtalk", DeliveryState.SENT, NOV + timedelta(days=2)),
        (n2, "dingtalk", DeliveryState.PENDING, NOV + timedelta(days=9)),  # not counted
        (n3, "wecom", DeliveryState.SENT, date(2025, 10, 28)),  # October
    ):
        session.add(Delivery(revision_id=rev.approved.id, chat_group_id=chats[chat].id,
                             due_at=at(due, 9), state=state))  # fmt: skip
    session.add(
        Delivery(
            revision_id=n4.approved.id,
            chat_group_id=chat_b.id,
            due_at=at(NOV + timedelta(days=20), 9),
            state=DeliveryState.SENT,
        )
    )
    session.add_all([
        ShareDownload(announcement_id=n1.id, day=NOV + timedelta(days=3), count=5),
        ShareDownload(announcement_id=n1.id, day=NOV + timedelta(days=4), count=2),
        ShareDownload(announcement_id=n1.id, day=date(2025, 10, 31), count=9),
        ShareDownload(announcement_id=n4.id, day=NOV + timedelta(days=21), count=4),
    ])  # fmt: skip
    account = PublisherAccount(
        area_id=county.towns["a"].id,
        platform="wechat",
        credentials={"app_id": "wx123", "app_secret": "s"},
    )
    session.add(account)
    session.flush()
    session.add_all([
        PublisherArticle(account_id=account.id, announcement_id=n1.id, revision_id=n1.approved.id,
                      state=ArticleState.PUBLISHED, article_url="https://mp.weixin.qq.com/s/abc",
                      published_at=at(NOV + timedelta(days=3), 10)),
        PublisherArticle(account_id=account.id, announcement_id=n2.id, revision_id=n2.approved.id,
                      state=ArticleState.DRAFTED),
    ])  # fmt: skip
    urgent = BreakIn(announcement_id=n1.id, revision_id=n1.approved.id, area_id=n1.area_id,
                     day=NOV + timedelta(days=5), rule="approval", state=JobState.DONE,
                     outlet_count=1, started_at=at(NOV + timedelta(days=5), 15))  # fmt: skip
    session.add(urgent)
    session.flush()
    session.add(
        BreakInOutlet(
            break_in_id=urgent.id,
            outlet_id=outlets["a"].id,
            path="x",
            ready_at=urgent.started_at,
            played_at=urgent.started_at,
        )
    )
    session.commit()
    return {"outlets": outlets, "box": box, "notices": [n1, n2, n3, n4]}


def test_a_township_month_adds_up(
    session: Session, county: County, month: dict[str, Any], settings: Any
) -> None:
    town = county.towns["a"]
    scope = Scope.of(county.users[("a", Role.EDITOR)])
    first, last = svc.month_of("2025-11", date(2026, 1, 1))
    ledger = svc.build(session, scope, town.id, first, last, settings.tz)
    assert ledger.check() == []
    t = ledger.totals
    # What went in, township a only (b's notice, outlet, chat and plays are not here).
    assert [n[0] for n in ledger.notices] == ["全乡大扫除", "清明森林防火", "医保缴费提醒"]
    assert dict(ledger.by_topic) == {"森林防火": 1, "医保缴费": 1, None: 1}
    assert ledger.by_village == [("后箐乡", "后箐村", 3)]
    assert (t["planned"], t["built"], t["confirmed"]) == (20, 15, 8)
    # Fetched: six through the link, plus the box's whole ones not among them (7, 8, 10th
    # built; the 9th only in part), each program once.
    assert t["fetched"] == 6 + 3
    assert [(r.outlet, r.planned, r.built, r.fetched, r.confirmed) for r in ledger.outlets] == [
        ("a村大喇叭", 20, 15, 9, 8)
    ]
    (box,) = ledger.boxes
    assert (box.full, box.late, box.partial, box.none) == (3, 1, 1, 15)
    assert [(w.label, w.planned, w.built, w.confirmed) for w in ledger.weeks][:2] == [
        ("11-01–11-02", 4, 2, 2),
        ("11-03–11-09", 14, 11, 6),
    ]
    assert sum(w.planned for w in ledger.weeks) == 20
    assert [(p.platform, p.sent, p.failed) for p in ledger.posts] == [
        ("dingtalk", 1, 0), ("telegram", 3, 0), ("wecom", 0, 2),
    ]  # fmt: skip
    assert ledger.shares == [("清明森林防火", 7)]
    assert ledger.articles == [
        ("清明森林防火", "https://mp.weixin.qq.com/s/abc", at(NOV + timedelta(days=3), 10))
    ]
    assert [(b.title, b.outlets, b.played) for b in ledger.breakins] == [("清明森林防火", 1, 1)]
    assert ledger.townships == []


def test_the_county_month_adds_up_across_its_townships(
    session: Session, county: County, month: dict[str, Any], settings: Any
) -> None:
    scope = Scope.of(county.users[("county", Role.EDITOR)])
    ledger = svc.build(session, scope, county.top.id, NOV, date(2025, 11, 30), settings.tz)
    assert ledger.check() == []
    t = ledger.totals
    assert (t["notices"], t["planned"], t["built"], t["confirmed"]) == (4, 24, 19, 10)
    assert (t["posts_sent"], t["posts_failed"], t["share_plays"]) == (5, 2, 11)
    rows = {r.township: r for r in ledger.townships}
    assert (rows["后箐乡"].notices, rows["后箐乡"].planned, rows["后箐乡"].posts_sent) == (3, 20, 4)
    assert (rows["幸福镇"].notices, rows["幸福镇"].planned, rows["幸福镇"].confirmed) == (1, 4, 2)
    assert rows["茂兰镇"].planned == 0 and rows["云县"].notices == 0
    # The week of 24–30 November holds b's 28th and 29th; the ledger stops at the month's end.
    assert ledger.weeks[-1].label == "11-24–11-30" and ledger.weeks[-1].planned == 4


def test_scope_and_the_files(
    app: Any, session: Session, county: County, month: dict[str, Any]
) -> None:
    from cms.services.errors import NotFound

    other = Scope.of(county.users[("b", Role.EDITOR)])
    with pytest.raises(NotFound):  # a neighbour's ledger is not there
        svc.build(session, other, county.towns["a"].id, NOV, date(2025, 11, 30), UTC)
    client = app.test_client()
    login(client, county.users[("a", Role.EDITOR)])
    town = county.towns["a"].id
    page = client.get(f"/ledger/?area={town}&month=2025-11")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "清明森林防火" in html and 'data-testid="chart-weeks"' in html
    # Platforms read as their names, not their codes.
    assert ">Telegram</td>" in html and ">企业微信</td>" in html and ">钉钉</td>" in html
    assert ">telegram</td>" not in html and ">wecom</td>" not in html
    assert client.get(f"/ledger/?area={county.towns['b'].id}&month=2025-11").status_code == 404
    xlsx = client.get(f"/ledger/ledger.xlsx?area={town}&month=2025-11")
    assert xlsx.status_code == 200
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(xlsx.data))
    summary = {row[0].value: row[1].value for row in book["汇总"].iter_rows(min_row=4)}
    assert summary["应播节目"] == 20 and summary["已确认"] == 8 and summary["公告"] == 3
    assert book["广播"].cell(row=2, column=1).value == "a村大喇叭"
    platforms = [row[0].value for row in book["群聊"].iter_rows(min_row=2)]
    assert {"Telegram", "企业微信", "钉钉"} <= set(platforms) and "telegram" not in platforms


@pytest.mark.slow
def test_the_pdf_is_a_filed_document_with_page_numbers(
    app: Any, session: Session, county: County, month: dict[str, Any], tmp_path: Any
) -> None:
    import shutil
    import subprocess

    if shutil.which("chromium") is None or shutil.which("pdftotext") is None:
        pytest.skip("Chromium and poppler-utils (pdftotext) are needed to make and read the PDF")
    client = app.test_client()
    login(client, county.users[("county", Role.EDITOR)])
    response = client.get(f"/ledger/ledger.pdf?area={county.top.id}&month=2025-11")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.data.startswith(b"%PDF")
    pdf = tmp_path / "ledger.pdf"
    pdf.write_bytes(response.data)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "云县宣传工作台账" in text and "2025-11-01 至 2025-11-30" in text
    assert "清明森林防火" in text and "幸福镇" in text and "未分类" in text
    assert "打印的公告" in text and "打印次数" in text
    pages = text.count("\f")
    assert pages >= 2 and f"第 1 页，共 {pages} 页" in text
    (test_artifacts := Path(__file__).resolve().parents[2] / "test-artifacts").mkdir(exist_ok=True)
    shutil.copy(pdf, test_artifacts / "ledger-county-2025-11.pdf")


def test_printed_notices_are_counted_per_month(
    app: Any, session: Session, county: County, month: dict[str, Any], settings: Any
) -> None:
    from sqlalchemy import select

    from cms.models import AuditLog
    from cms.services import notices as notice_svc
    from cms.web.downloads import flush_downloads

    n1, n2, _n3, n4 = month["notices"]
    editor = county.users[("a", Role.EDITOR)]
    # Opening the print page notes a print (in memory; the download log's thread writes it);
    # opening it again soon (another size, a reload) is the same print.
    client = app.test_client()
    login(client, editor)
    for query in ("", "?size=a5", "?villages=1"):
        assert client.get(f"/announcements/{n1.id}/print{query}").status_code == 200
    assert client.get(f"/announcements/{n4.id}/print").status_code == 404  # not in scope
    assert client.head(f"/announcements/{n2.id}/print").status_code == 200  # no print
    assert flush_downloads(app) == 1
    session.rollback()
    (entry,) = session.scalars(select(AuditLog).where(AuditLog.action == "notice.print"))
    assert (entry.user_id, entry.object_id, entry.detail["size"]) == (editor.id, n1.id, "a4")
    when = entry.at.replace(tzinfo=UTC) if entry.at.tzinfo is None else entry.at
    local = when.astimezone(settings.tz).date()
    scope = Scope.of(editor)
    first, last = svc.month_of(f"{local:%Y-%m}", local)
    now = svc.build(session, scope, county.towns["a"].id, first, last, settings.tz)
    assert ("清明森林防火", 1) in now.prints and now.check() == []

    # November: n1 printed twice, n2 once (township a), n4 once (b); one in October.
    reviewer = county.users[("b", Role.REVIEWER)]
    notice_svc.record_prints(session, [
        notice_svc.Print(n1.id, editor.id, "a4", 1, at(NOV + timedelta(days=2), 10)),
        notice_svc.Print(n1.id, editor.id, "a5", 3, at(NOV + timedelta(days=29), 23, 30)),
        notice_svc.Print(n2.id, editor.id, "a4", 1, at(NOV + timedelta(days=9), 9)),
        notice_svc.Print(n4.id, reviewer.id, "a4", 1, at(NOV + timedelta(days=20), 9)),
        notice_svc.Print(n1.id, editor.id, "a4", 1, at(date(2025, 10, 31), 23, 59)),
    ])  # fmt: skip
    session.commit()
    ledger = svc.build(session, scope, county.towns["a"].id, NOV, date(2025, 11, 30), settings.tz)
    assert ledger.check() == []
    assert ledger.prints == [("清明森林防火", 2), ("医保缴费提醒", 1)]
    assert (ledger.totals["printed_notices"], ledger.totals["prints"], ledger.printed) == (2, 3, 3)
    ledger.printed += 1  # a row lost: the check says so
    assert ledger.check() == ["prints"]
    county_scope = Scope.of(county.users[("county", Role.EDITOR)])
    whole = svc.build(session, county_scope, county.top.id, NOV, date(2025, 11, 30), settings.tz)
    assert whole.check() == [] and (whole.totals["prints"], whole.totals["printed_notices"]) == (
        4,
        3,
    )

    town = county.towns["a"].id
    html = client.get(f"/ledger/?area={town}&month=2025-11").get_data(as_text=True)
    assert 'data-testid="ledger-prints"' in html and "（2 条公告）" in html
    from openpyxl import load_workbook

    xlsx = client.get(f"/ledger/ledger.xlsx?area={town}&month=2025-11")
    book = load_workbook(io.BytesIO(xlsx.data))
    summary = {row[0].value: row[1].value for row in book["汇总"].iter_rows(min_row=4)}
    assert (summary["打印的公告"], summary["打印次数"]) == (2, 3)
    assert [[c.value for c in row] for row in book["打印"].iter_rows(min_row=2)] == [
        ["清明森林防火", 2], ["医保缴费提醒", 1],
    ]  # fmt: skip
