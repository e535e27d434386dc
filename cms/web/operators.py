"""Operators: private download links, playback receipts and the compliance view."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cms.models import Outlet, OutletKind, Program, Role
from cms.roles import OPERATORS, STAFF
from cms.services import breakin as breakin_svc
from cms.services import days as days_svc
from cms.services import operators as svc
from cms.services import share as share_svc
from cms.services import terminals as terminal_svc
from cms.services.errors import DomainError
from cms.services.scope import Scope
from cms.services.text import in_date_range, parse_date, printable
from cms.web.auth import PUBLIC, rule
from cms.web.db import db, settings, transaction
from cms.web.downloads import download_log
from cms.web.forms import form_id, int_arg
from cms.web.sendfile import (
    accel_redirect_uri,
    bytes_body,
    content_disposition,
    file_body,
    respond,
    served_from_start,
    zip_body,
)
from cms.web.share import panel

log = logging.getLogger(__name__)
bp = Blueprint("operators", __name__)

_SLOT = re.compile(r"([01][0-9]|2[0-3])([0-5][0-9])")
_FILENAME_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
UPCOMING_DAYS = 7
FEED_DAYS = 14
MP3 = "audio/mpeg"


@bp.after_request
def _private_link_headers(response: Response) -> Response:
    """Token URLs stay out of search engines and out of Referer headers, even same-site."""
    if request.path.startswith("/o/"):
        response.headers["X-Robots-Tag"] = "noindex, nofollow"
        response.headers["Referrer-Policy"] = "no-referrer"
    return response


# --- Helpers ------------------------------------------------------------------------------------


def _now() -> datetime:
    return settings().now()


def _today() -> date:
    return settings().today()


def _outlet(token: str) -> Outlet:
    """The outlet of a link token; anything else is a plain 404 (no hint what was wrong)."""
    outlet = svc.outlet_for_token(db(), token)
    if outlet is None:
        abort(404)
    return outlet


def _day(value: str) -> date:
    if value == "today":
        return _today()
    day = parse_date(value)
    if day is None or not in_date_range(day):
        abort(404)
    return day


def _slot(value: str) -> time:
    match = _SLOT.fullmatch(value)
    if match is None:
        abort(404)
    return time(int(match.group(1)), int(match.group(2)))


def safe_name(text: str) -> str:
    return _FILENAME_UNSAFE.sub("_", printable(text)).strip() or "dalaba"


def _m3u_text(text: str) -> str:
    """One playlist line's worth of text: no line breaks, nothing XML or bidi would choke on."""
    return " ".join(printable(text).split())


def names(outlet: Outlet, program: Program, suffix: str = "") -> tuple[str, str]:
    """Chinese file name and its ASCII fallback for one program."""
    stamp = f"{program.day.isoformat()}_{program.slot.at:%H%M}"
    return (
        f"{safe_name(outlet.name)}_{stamp}{suffix}.mp3",
        f"dalaba-outlet{outlet.id}_{stamp}{suffix}.mp3",
    )


def _offload(path: Path) -> tuple[str, str] | None:
    """Hand the file to the front server when configured (opt-in).

    ``DALABA_ACCEL_REDIRECT=/_dalaba_data/``: nginx, with that internal location aliased to
    the data folder. ``DALABA_X_SENDFILE=1``: Apache mod_xsendfile or lighttpd.
    """
    config = settings()
    if config.accel_redirect:
        uri = accel_redirect_uri(path, config.data_dir, config.accel_redirect)
        return ("X-Accel-Redirect", uri) if uri else None
    if config.x_sendfile:
        return "X-Sendfile", str(path)
    return None


def _send_path(
    path: Path, *, filename: str, fallback: str, attachment: bool = False
) -> Response | None:
    """Serve a file opened once; None when it has vanished (unbuilt, or being cleaned up)."""
    offload = _offload(path)
    if offload is not None:
        # The front server opens the file itself and handles ranges and revalidation; it
        # opens whichever complete version os.replace last put there.
        response = Response(status=200, mimetype=MP3)
        response.headers[offload[0]] = offload[1]
        response.headers["Content-Disposition"] = content_disposition(
            filename, fallback, attachment=attachment
        )
        response.headers["Cache-Control"] = "private, no-cache"
        return response
    try:
        body = file_body(path)
    except FileNotFoundError:
        return None
    return respond(body, mimetype=MP3, filename=filename, fallback=fallback, attachment=attachment)


def _current(token: str) -> Program:
    """The program ``today.mp3`` stands for behind a link token, found with one query."""
    now = _now()
    programs = svc.link_programs(db(), token, now.astimezone(settings().tz).date())
    program = svc.current_of(programs, now, settings().tz)
    if program is None:
        abort(404)
    return program


def _one(token: str, day: str, slot: str) -> Program:
    """One program by day and slot time behind a link token, found with one query."""
    programs = svc.link_programs(db(), token, _day(day), _slot(slot))
    if not programs:
        abort(404)
    return programs[0]


def _send_program(program: Program) -> Response:
    """Send one program and note the download (in memory: see ``_count``)."""
    outlet = program.outlet
    path = svc.program_file(settings(), program)
    if path is None:
        abort(404, description=_("节目尚未生成"))
    filename, fallback = names(outlet, program)
    response = _send_path(
        path, filename=filename, fallback=fallback, attachment=request.args.get("dl") == "1"
    )
    if response is None:
        abort(404, description=_("节目尚未生成"))
    _count(response, outlet, program.day, "mp3", [program])
    return response


def _count(
    response: Response, outlet: Outlet, day: date, kind: str, programs: list[Program | None]
) -> None:
    """Note a download for the compliance view (not revalidations, HEADs or mid-file resumes).

    Only memory is touched here: the download log writes in batches from its own thread.
    """
    if response.status_code in (200, 206) and served_from_start(response):
        download_log().add(outlet.id, day, kind, [p.id if p else None for p in programs], _now())


def _rows(programs: list[Program]) -> list[dict[str, Any]]:
    receipts = svc.receipts_for(db(), programs)
    now, tz = _now(), settings().tz
    grace = svc.late_grace(db(), settings())
    rows = []
    for program in programs:
        start, _end = svc.slot_window(program, tz)
        receipt = receipts.get(program.id)
        outcome = days_svc.of_program(program, receipt, now=now, tz=tz, late_grace=grace)
        if not outcome.applicable:
            continue
        titles = [
            a.get("title", "")
            for a in (program.manifest or {}).get("announcements", [])
            if isinstance(a, dict)
        ]
        rows.append(
            {
                "program": program,
                "ready": svc.is_ready(program),
                "receipt": receipt,
                "titles": titles,
                "can_confirm": receipt is None and svc.is_ready(program) and start <= now,
                "outcome": outcome,
                # Shown instead of the 已播放 button until the slot begins.
                "confirm_from": start if receipt is None and start > now else None,
            }
        )
    return rows


def _by_day(rows: list[dict[str, Any]]) -> list[tuple[date, list[dict[str, Any]]]]:
    days: dict[date, list[dict[str, Any]]] = {}
    for row in rows:
        days.setdefault(row["program"].day, []).append(row)
    return sorted(days.items())


# --- The private link ----------------------------------------------------------------------------


@bp.get("/o/<token>/")
@rule(PUBLIC)
def link_page(token: str) -> Any:
    """An outlet's private page: today's and coming programs, players and the confirm button."""
    outlet = _outlet(token)
    today = _today()
    programs = svc.programs_for(
        db(), outlet, today - timedelta(days=1), today + timedelta(days=UPCOMING_DAYS - 1)
    )
    # Yesterday stays on the page only while something there still awaits confirmation.
    rows = [r for r in _rows(programs) if r["program"].day >= today or r["can_confirm"]]
    return render_template(
        "operators/link.html",
        outlet=outlet,
        token=token,
        days=_by_day(rows),
        today=today,
        mobile=outlet.kind is OutletKind.MOBILE,
        base_url=settings().base_url,
        shares=[p for a in share_svc.for_area(db(), outlet.area, today) if (p := panel(a))],
        breakins=breakin_svc.playing(db(), [outlet.id], today)[outlet.id],
    )


@bp.post("/o/<token>/confirm/<int(max=2147483647):program_id>")
@rule(PUBLIC)
def link_confirm(token: str, program_id: int) -> Any:
    """Confirm through the private link that a program was played."""
    outlet = _outlet(token)
    program = db().get(Program, program_id)
    if program is None or program.outlet_id != outlet.id:
        abort(404)
    _confirm(program, None, "link")
    return redirect(url_for(".link_page", token=token))


def _confirm(program: Program, user: Any, via: str) -> None:
    with transaction() as tx:
        receipt, created = svc.confirm_playback(
            db(), program, user, via, _now(), tz=settings().tz, settings=settings()
        )
    if not tx.ok:
        return
    if not created:
        flash(_("这个节目已经确认过了"), "info")
    elif receipt.late:
        flash(_("已确认播放（超过规定时间，记为迟报）"), "success")
    else:
        flash(_("已确认播放，谢谢！"), "success")


@bp.get("/o/<token>/today.mp3")
@rule(PUBLIC)
def today_mp3(token: str) -> Any:
    """Today's program for the current or next slot: a stable URL for boxes that fetch by URL."""
    return _send_program(_current(token))


@bp.get("/o/<token>/<day>/<slot>.mp3")
@rule(PUBLIC)
def program_mp3(token: str, day: str, slot: str) -> Any:
    """One program by day (or ``today``) and slot time, e.g. ``2026-11-28/0730.mp3``."""
    return _send_program(_one(token, day, slot))


@bp.get("/o/<token>/loop.mp3")
@rule(PUBLIC)
def loop_current(token: str) -> Any:
    """The mobile-speaker loop of the current or next program today."""
    return _send_loop(_current(token))


@bp.get("/o/<token>/<day>/<slot>/loop.mp3")
@rule(PUBLIC)
def loop_mp3(token: str, day: str, slot: str) -> Any:
    """The mobile-speaker loop of one program."""
    return _send_loop(_one(token, day, slot))


def _send_loop(program: Program) -> Response:
    if not svc.is_ready(program):
        abort(404)
    outlet = program.outlet
    try:
        path = svc.loop_file(settings(), program, outlet.loop_minutes)
    except DomainError:
        abort(404, description=_("节目尚未生成"))
    filename, fallback = names(outlet, program, f"_{outlet.loop_minutes}min")
    filename = filename.replace(".mp3", "_循环.mp3")
    response = _send_path(path, filename=filename, fallback=fallback)
    if response is None:
        abort(404)
    _count(response, outlet, program.day, "loop", [program])
    return response


@bp.get("/o/<token>/<day>.zip")
@rule(PUBLIC)
def day_zip(token: str, day: str) -> Any:
    """The day's programs as one ZIP for a USB stick, with Chinese file names."""
    outlet = _outlet(token)
    the_day = _day(day)
    members = []
    programs = [p for p in svc.programs_for(db(), outlet, the_day, the_day) if svc.is_ready(p)]
    for program in programs:
        path = svc.program_file(settings(), program)
        if path is not None:
            members.append((names(outlet, program)[0], path))
    if not members:
        abort(404, description=_("这一天还没有生成的节目"))
    try:
        body = zip_body(members, settings().tz)
    except FileNotFoundError:
        abort(404, description=_("节目正在更新，请稍后再试"))
    stamp = the_day.isoformat()
    response = respond(
        body,
        mimetype="application/zip",
        filename=f"{safe_name(outlet.name)}_{stamp}.zip",
        fallback=f"dalaba-outlet{outlet.id}_{stamp}.zip",
        attachment=True,
    )
    _count(response, outlet, the_day, "zip", list(programs))
    return response


@bp.get("/o/<token>/<day>.m3u8")
@bp.get("/o/<token>/<day>.m3u")
@rule(PUBLIC)
def playlist(token: str, day: str) -> Any:
    """An M3U playlist (UTF-8) of the day's programs with absolute URLs."""
    outlet = _outlet(token)
    the_day = _day(day)
    lines = ["#EXTM3U", f"#PLAYLIST:{_m3u_text(outlet.name)} {the_day.isoformat()}"]
    for program in svc.programs_for(db(), outlet, the_day, the_day):
        if not svc.is_ready(program):
            continue
        title = _m3u_text(f"{outlet.name} {program.day.isoformat()} {program.slot.label}")
        url = settings().base_url + url_for(
            ".program_mp3", token=token, day=program.day.isoformat(), slot=f"{program.slot.at:%H%M}"
        )
        lines += [f"#EXTINF:{round(program.duration or 0)},{title}", url]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    stamp = the_day.isoformat()
    response = respond(
        bytes_body(data, latest_build(outlet)),
        mimetype="audio/x-mpegurl",
        filename=f"{safe_name(outlet.name)}_{stamp}.m3u8",
        fallback=f"dalaba-outlet{outlet.id}_{stamp}.m3u8",
    )
    response.mimetype_params["charset"] = "utf-8"
    _count(response, outlet, the_day, "m3u", [None])
    return response


def latest_build(outlet: Outlet) -> datetime:
    built = db().scalar(
        select(Program.built_at)
        .where(Program.outlet_id == outlet.id, Program.built_at.is_not(None))
        .order_by(Program.built_at.desc())
        .limit(1)
    )
    return built or datetime(2020, 1, 1, tzinfo=UTC)


ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"


def _hms(seconds: float) -> str:
    total = round(seconds)
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


@bp.get("/o/<token>/feed.xml")
@rule(PUBLIC)
def feed(token: str) -> Any:
    """A podcast RSS feed of the outlet's programs, so a phone's podcast app subscribes."""
    outlet = _outlet(token)
    today = _today()
    data = feed_xml(
        outlet,
        today,
        settings().base_url + url_for(".link_page", token=token),
        lambda day, slot: url_for(".program_mp3", token=token, day=day, slot=slot),
    )
    response = respond(
        bytes_body(data, latest_build(outlet)),
        mimetype="application/rss+xml",
        filename=f"{safe_name(outlet.name)}.xml",
        fallback=f"dalaba-outlet{outlet.id}.xml",
    )
    response.mimetype_params["charset"] = "utf-8"
    _count(response, outlet, today, "rss", [None])
    return response


def feed_xml(
    outlet: Outlet, today: date, link: str, program_url: Callable[[str, str], str]
) -> bytes:
    """The podcast RSS of ``outlet``'s programs; ``program_url(day, HHMM)`` is each enclosure's
    path (the operator link's or a terminal's own)."""
    base = settings().base_url
    ET.register_namespace("itunes", ITUNES)
    rss = ET.Element("rss", {"version": "2.0"})
    channel = ET.SubElement(rss, "channel")
    # Names and titles pass through printable(): ElementTree writes any character as it is,
    # and one U+FFFF (or a control character) makes the whole feed ill-formed XML.
    name = printable(outlet.name)
    ET.SubElement(channel, "title").text = f"{name} · {_('大喇叭')}"
    ET.SubElement(channel, "link").text = link
    ET.SubElement(channel, "description").text = _("{name}每天的广播节目").format(name=name)
    ET.SubElement(channel, "language").text = "zh-cn"
    ET.SubElement(channel, f"{{{ITUNES}}}author").text = _("大喇叭")
    ET.SubElement(channel, f"{{{ITUNES}}}explicit").text = "false"
    programs = svc.programs_for(
        db(), outlet, today - timedelta(days=FEED_DAYS - 1), today + timedelta(days=1)
    )
    for program in reversed(programs):
        path = svc.program_file(settings(), program)
        if path is None:
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            continue
        slot = f"{program.slot.at:%H%M}"
        url = base + program_url(program.day.isoformat(), slot)
        item = ET.SubElement(channel, "item")
        ET.SubElement(item, "title").text = printable(
            f"{program.day.isoformat()} {program.slot.label} {outlet.name}"
        )
        titles = [
            printable(str(a.get("title", "")))
            for a in (program.manifest or {}).get("announcements", [])
            if isinstance(a, dict)
        ]
        ET.SubElement(item, "description").text = "、".join(titles) or name
        built = program.built_at or program.created_at
        ET.SubElement(
            item, "guid", {"isPermaLink": "false"}
        ).text = f"dalaba-program-{program.id}-{int(built.timestamp())}"
        ET.SubElement(item, "pubDate").text = format_datetime(built.astimezone(UTC), usegmt=True)
        ET.SubElement(item, "enclosure", {"url": url, "length": str(size), "type": MP3})
        ET.SubElement(item, f"{{{ITUNES}}}duration").text = _hms(program.duration or 0)
    return ET.tostring(rss, encoding="utf-8", xml_declaration=True)


# --- Operators logged in -------------------------------------------------------------------------


def _my_outlets() -> list[Outlet]:
    stmt = select(Outlet).options(selectinload(Outlet.area)).order_by(Outlet.name, Outlet.id)
    if g.user.role is not Role.ADMIN:
        stmt = stmt.where(Outlet.id.in_([o.id for o in g.user.outlets]))
    stmt = stmt.where(Scope.of(g.user).outlets())
    return list(db().scalars(stmt.where(Outlet.active)))


@bp.get("/operator/")
@rule(*OPERATORS)
def mine() -> Any:
    """The logged-in operator's outlets with their programs, players and confirm buttons."""
    today = _today()
    outlets = [
        (
            outlet,
            _by_day(
                [
                    r
                    for r in _rows(
                        svc.programs_for(
                            db(),
                            outlet,
                            today - timedelta(days=1),
                            today + timedelta(days=UPCOMING_DAYS - 1),
                        )
                    )
                    if r["program"].day >= today or r["can_confirm"]
                ]
            ),
        )
        for outlet in _my_outlets()
    ]
    playing = breakin_svc.playing(db(), [o.id for o, _days in outlets], today)
    return render_template(
        "operators/mine.html",
        outlets=outlets,
        today=today,
        breakins=[p for o, _days in outlets for p in playing[o.id]],
    )


def _my_program(program_id: int) -> Program:
    program = db().get(Program, program_id)
    if (
        program is None
        or not svc.may_confirm(g.user, program)
        or not Scope.of(g.user).has_outlet(program.outlet)
    ):
        abort(404)
    return program


@bp.get("/operator/programs/<int(max=2147483647):program_id>.mp3")
@rule(*OPERATORS)
def my_program_mp3(program_id: int) -> Any:
    """A program of one of the operator's outlets."""
    return _send_program(_my_program(program_id))


@bp.post("/operator/programs/<int(max=2147483647):program_id>/confirm")
@rule(*OPERATORS)
def my_program_confirm(program_id: int) -> Any:
    """Confirm, logged in, that a program was played."""
    _confirm(_my_program(program_id), g.user, "web")
    return redirect(url_for(".mine"))


# --- Admin: outlet links -------------------------------------------------------------------------


@bp.route("/operator/links", methods=["GET", "POST"])
@rule(Role.ADMIN)
def links() -> Any:
    """Issue, re-issue or revoke the private link of each outlet."""
    new_link = None
    new_outlet = None
    if request.method == "POST":
        outlet_id = form_id("outlet_id")
        outlet = db().get(Outlet, outlet_id) if outlet_id is not None else None
        if outlet is None or not Scope.of(g.user).has_outlet(outlet):
            abort(404)
        if request.form.get("action") == "issue":
            with transaction(catch=()):
                token = svc.issue_outlet_token(db(), g.user, outlet)
            # Shown once: only the hash is kept, so the link cannot be displayed again.
            new_link = settings().base_url + url_for(".link_page", token=token)
            new_outlet = outlet
        elif request.form.get("action") == "revoke":
            with transaction(catch=()):
                svc.revoke_outlet_tokens(db(), g.user, outlet)
            flash(_("已停用“{name}”的链接").format(name=outlet.name), "success")
            return redirect(url_for(".links"))
        else:
            abort(400)
    outlets = list(
        db().scalars(
            select(Outlet)
            .options(selectinload(Outlet.area))
            .where(Scope.of(g.user).outlets())
            .order_by(Outlet.name)
        )
    )
    tokens = {o.id: svc.active_token(db(), o) for o in outlets}
    handover: dict[str, Any] = {}
    if new_link is not None:
        # Operators are handed the link on a phone or on paper: QR code, share, print card.
        msgid, params = share_svc.office_name(db(), new_outlet.area if new_outlet else None)
        handover = {
            "new_link_qr": Markup(share_svc.qr_svg(new_link)),  # segno escapes its title
            "office": _(msgid).format(**params),
        }
    return render_template(
        "operators/links.html",
        outlets=outlets,
        tokens=tokens,
        new_link=new_link,
        new_outlet=new_outlet,
        **handover,
    )


# --- Compliance (督查) -----------------------------------------------------------------------------


def _compliance_rows() -> tuple[int, date, list[svc.ComplianceRow]]:
    days = int_arg("days", 30, lo=1, hi=366) or 30
    now = _now()
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
# OWASP's CSV-injection rule: a cell starting with one of these is read as a formula by Excel,
# LibreOffice or Google Sheets (a village named "=HYPERLINK(…)" would become a live link).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """A spreadsheet cell that stays text: user text starting like a formula gets a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def _table(rows: list[svc.ComplianceRow]) -> list[list[Any]]:
    return [
        [
            r.day,
            neutralise(printable(r.village)),
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
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([_(c) for c in COLUMNS])
    for row in _table(rows):
        writer.writerow([v.isoformat() if isinstance(v, date) else v for v in row])
    name = f"督查_{today.isoformat()}_{days}天.csv"
    return Response(
        "\ufeff" + out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": content_disposition(
                name, f"compliance_{today.isoformat()}_{days}d.csv"
            )
        },
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
    buffer = io.BytesIO()
    book.save(buffer)
    name = f"督查_{today.isoformat()}_{days}天.xlsx"
    return Response(
        buffer.getvalue(),
        mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={
            "Content-Disposition": content_disposition(
                name, f"compliance_{today.isoformat()}_{days}d.xlsx"
            )
        },
    )
