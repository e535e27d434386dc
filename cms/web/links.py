"""The downloads behind an outlet's private link (``/o/<token>/…``), and the parts the
terminals' own links (:mod:`cms.web.terminals`) share with them.

``today.mp3`` (the current or next slot), ``<day>/<HHMM>.mp3``, the mobile-speaker loops,
the day's ZIP and M3U and the podcast RSS. Each download is noted in memory for the
compliance view (:mod:`cms.web.downloads` writes it in batches). The pages behind the link
(the operator's page, confirming a program) are in :mod:`cms.web.operators`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from flask import Blueprint, Response, abort, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from cms.models import Outlet, Program
from cms.services import operators as svc
from cms.services.errors import DomainError
from cms.services.text import in_date_range, parse_date, printable
from cms.web.auth import PUBLIC, Route, add_routes, rule
from cms.web.db import db, settings
from cms.web.downloads import download_log
from cms.web.sendfile import (
    accel_redirect_uri,
    bytes_body,
    content_disposition,
    file_body,
    respond,
    served_from_start,
    zip_body,
)

# The operator's side is one blueprint, so its endpoints stay ``operators.*``: the downloads
# are routed here, the pages in cms.web.operators.
bp = Blueprint("operators", __name__)

_SLOT = re.compile(r"([01][0-9]|2[0-3])([0-5][0-9])")
_FILENAME_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]+')
FEED_DAYS = 14
MP3 = "audio/mpeg"


def keep_private(blueprint: Blueprint, prefix: str) -> None:
    """Token URLs under ``prefix`` stay out of search engines and out of Referer headers,
    even same-site."""

    def headers(response: Response) -> Response:
        if request.path.startswith(prefix):
            response.headers["X-Robots-Tag"] = "noindex, nofollow"
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    blueprint.after_request(headers)


keep_private(bp, "/o/")


def _now() -> datetime:
    return settings().now()


def _today() -> date:
    return settings().today()


def outlet_of(token: str) -> Outlet:
    """The outlet of a link token; anything else is a plain 404 (no hint what was wrong)."""
    outlet = svc.outlet_for_token(db(), token)
    if outlet is None:
        abort(404)
    return outlet


def link_day(value: str) -> date:
    """A link's day: ``today`` or an ISO date in range; anything else is a 404."""
    if value == "today":
        return _today()
    day = parse_date(value)
    if day is None or not in_date_range(day):
        abort(404)
    return day


def link_slot(value: str) -> time:
    """A link's slot time, ``HHMM``; anything else is a 404."""
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
    programs = svc.link_programs(db(), token, link_day(day), link_slot(slot))
    if not programs:
        abort(404)
    return programs[0]


def send_program(program: Program) -> Response:
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


# The program files behind a token (an operator link's or a terminal's): endpoint, path below
# the token, the mobile speaker's loop (or the program itself), by day and slot time (or for
# the current or next slot today: a stable URL for boxes that fetch by URL). A day may be
# ``today``, e.g. ``today/0730.mp3``, or a date, e.g. ``2026-11-28/0730.mp3``.
PROGRAM_FILES = (
    ("today_mp3", "today.mp3", False, False),
    ("program_mp3", "<day>/<slot>.mp3", False, True),
    ("loop_current", "loop.mp3", True, False),
    ("loop_mp3", "<day>/<slot>/loop.mp3", True, True),
)


def add_program_routes(bp: Blueprint, prefix: str, send: Callable[..., Response]) -> None:
    """Register :data:`PROGRAM_FILES` below ``prefix`` (public GETs); each route's view answers
    ``send(loop, by_slot, **its URL's values)``."""

    def view_of(loop: bool, by_slot: bool) -> Callable[..., Any]:
        return lambda **values: send(loop, by_slot, **values)

    add_routes(
        bp,
        (
            Route(f"{prefix}/{path}", endpoint, (PUBLIC,), view_of(loop, by_slot))
            for endpoint, path, loop, by_slot in PROGRAM_FILES
        ),
        method="GET",
    )


def _program_file(loop: bool, by_slot: bool, token: str, **where: str) -> Response:
    program = _one(token, **where) if by_slot else _current(token)
    return _send_loop(program) if loop else send_program(program)


add_program_routes(bp, "/o/<token>", _program_file)


@bp.get("/o/<token>/<day>.zip")
@rule(PUBLIC)
def day_zip(token: str, day: str) -> Any:
    """The day's programs as one ZIP for a USB stick, with Chinese file names."""
    outlet = outlet_of(token)
    the_day = link_day(day)
    programs, members = day_files(outlet, the_day)
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
    outlet = outlet_of(token)
    the_day = link_day(day)
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
    return _text_file(
        outlet, data, "audio/x-mpegurl", f"_{the_day.isoformat()}.m3u8", the_day, "m3u"
    )


def _text_file(
    outlet: Outlet, data: bytes, mimetype: str, suffix: str, day: date, kind: str
) -> Response:
    """A playlist or feed (UTF-8) named after the outlet, its download noted."""
    response = respond(
        bytes_body(data, latest_build(outlet)),
        mimetype=mimetype,
        filename=f"{safe_name(outlet.name)}{suffix}",
        fallback=f"dalaba-outlet{outlet.id}{suffix}",
    )
    response.mimetype_params["charset"] = "utf-8"
    _count(response, outlet, day, kind, [None])
    return response


def day_files(outlet: Outlet, day: date) -> tuple[list[Program], list[tuple[str, Path]]]:
    """The day's built programs, and their files under the names a ZIP gives them."""
    programs = [p for p in svc.programs_for(db(), outlet, day, day) if svc.is_ready(p)]
    members = []
    for program in programs:
        path = svc.program_file(settings(), program)
        if path is not None:
            members.append((names(outlet, program)[0], path))
    return programs, members


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
    outlet = outlet_of(token)
    today = _today()
    data = feed_xml(outlet, today, settings().base_url + url_for(".link_page", token=token), token)
    return _text_file(outlet, data, "application/rss+xml", ".xml", today, "rss")


def feed_xml(outlet: Outlet, today: date, link: str, token: str) -> bytes:
    """The podcast RSS of ``outlet``'s programs; each enclosure is the request's blueprint's
    ``program_mp3`` behind ``token`` (the operator link's or a terminal's own)."""
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
        url = base + url_for(".program_mp3", token=token, day=program.day.isoformat(), slot=slot)
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
