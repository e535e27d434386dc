"""Terminals' own links (``/t/<token>/…``) and the admin's page to register and revoke them.

A terminal gets the operator link's feeds: ``today.mp3`` (the current or next slot),
``<day>/<HHMM>.mp3``, ``now.mp3`` (立即插播; 204 or silence when idle, see
:mod:`cms.web.breakins`), the mobile-speaker loops, the day's ZIP and M3U and the podcast
RSS. Each response, when the server has closed it, tells the download log what went out
(first byte, bytes sent), which writes it in its next batch: nothing is written while the
request is served. An idle poll of ``now.mp3`` is noted too, as the box's sign of life.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cms.models import Outlet, Program, Role, Terminal
from cms.services import breakin as breakin_svc
from cms.services import operators as operator_svc
from cms.services import terminals as svc
from cms.services.errors import DomainError
from cms.services.scope import Scope
from cms.services.terminals import Fetch
from cms.web.auth import PUBLIC, rule
from cms.web.breakins import idle_response
from cms.web.db import db, settings, transaction
from cms.web.downloads import DownloadLog, download_log
from cms.web.forms import form_id
from cms.web.links import (
    add_program_routes,
    day_files,
    feed_xml,
    keep_private,
    latest_build,
    link_day,
    link_slot,
    names,
    safe_name,
)
from cms.web.sendfile import Body, bytes_body, file_body, respond, zip_body

bp = Blueprint("terminals", __name__)
MP3 = "audio/mpeg"


keep_private(bp, "/t/")


def _now() -> datetime:
    return settings().now()


def _today() -> date:
    return _now().astimezone(settings().tz).date()


def _terminal(token: str) -> Terminal:
    terminal = svc.for_token(db(), token)
    if terminal is None:
        abort(404)
    return terminal


def _recorder(
    log: DownloadLog, terminal: Terminal, day: date, kind: str, size: int, **ids: int | None
) -> Any:
    """What the response tells when it is closed: one fetch, bytes counted by the server."""
    terminal_id, outlet_id = terminal.id, terminal.outlet_id
    if request.method != "GET":
        return None
    # Called by waitress when the response closes, outside the request: read the clock now.
    clock = settings().clock

    def closed(start: int, sent: int) -> None:
        log.add_fetch(
            Fetch(
                terminal_id=terminal_id,
                outlet_id=outlet_id,
                day=day,
                kind=kind,
                program_id=ids.get("program_id"),
                break_in_id=ids.get("break_in_id"),
                at=clock.now(),
                size=size,
                start=start,
                sent=sent,
            )
        )

    return closed


def _send_program(terminal: Terminal, program: Program) -> Response:
    path = operator_svc.program_file(settings(), program)
    if path is None:
        abort(404)
    try:
        body = file_body(path)
    except FileNotFoundError:
        abort(404)
    stamp = f"{program.day.isoformat()}_{program.slot.at:%H%M}"
    return respond(
        body,
        mimetype=MP3,
        filename=f"dalaba-outlet{program.outlet_id}_{stamp}.mp3",
        fallback=f"dalaba-outlet{program.outlet_id}_{stamp}.mp3",
        on_close=_recorder(
            download_log(), terminal, program.day, "mp3", body.size, program_id=program.id
        ),
    )


@bp.get("/t/<token>/now.mp3")
@rule(PUBLIC)
def now_mp3(token: str) -> Any:
    """The break-in playing now at the terminal's outlet, or nothing (204 or silence)."""
    terminal = _terminal(token)
    today = _today()
    playing = breakin_svc.playing(db(), [terminal.outlet_id], today)[terminal.outlet_id]
    if not playing:
        return _idle(terminal, today)
    copy = playing[0].copy
    from cms.web.breakins import data_file

    path = data_file(copy.path)
    if path is None:
        return _idle(terminal, today)
    try:
        body = file_body(path)
    except FileNotFoundError:
        return _idle(terminal, today)
    response = respond(
        body,
        mimetype=MP3,
        filename=f"dalaba-breakin-{copy.break_in_id}.mp3",
        fallback=f"dalaba-breakin-{copy.break_in_id}.mp3",
        on_close=_recorder(
            download_log(), terminal, today, "now", body.size, break_in_id=copy.break_in_id
        ),
    )
    response.headers["X-Dalaba-Breakin"] = str(copy.break_in_id)
    return response


def _idle(terminal: Terminal, today: date) -> Response:
    """Nothing plays now: the box polled, so it is alive (noted in memory, no program)."""
    if request.method == "GET":
        download_log().add_idle(terminal.id, terminal.outlet_id, today, _now())
    return idle_response()


def _current(terminal: Terminal) -> Program:
    today = _today()
    programs = operator_svc.programs_for(db(), terminal.outlet, today, today)
    program = operator_svc.current_of(programs, _now(), settings().tz)
    if program is None:
        abort(404)
    return program


def _one(terminal: Terminal, day: str, slot: str) -> Program:
    the_day, at = link_day(day), link_slot(slot)
    for program in operator_svc.programs_for(db(), terminal.outlet, the_day, the_day):
        if program.slot.at == at:
            return program
    abort(404)


def _send_loop(terminal: Terminal, program: Program) -> Response:
    outlet = terminal.outlet
    if not operator_svc.is_ready(program):
        abort(404)
    try:
        path = operator_svc.loop_file(settings(), program, outlet.loop_minutes)
        body = file_body(path)
    except (DomainError, FileNotFoundError):
        abort(404)
    filename, fallback = names(outlet, program, f"_{outlet.loop_minutes}min")
    # The loop is not the slot's program file (its size differs): noted as a feed, so each
    # slot's status stays that of the program's own bytes.
    return respond(
        body,
        mimetype=MP3,
        filename=filename.replace(".mp3", "_循环.mp3"),
        fallback=fallback,
        on_close=_recorder(download_log(), terminal, program.day, "loop", body.size),
    )


def _program_file(loop: bool, by_slot: bool, token: str, **where: str) -> Response:
    terminal = _terminal(token)
    program = _one(terminal, **where) if by_slot else _current(terminal)
    return (_send_loop if loop else _send_program)(terminal, program)


add_program_routes(bp, "/t/<token>", _program_file)


@bp.get("/t/<token>/<day>.zip")
@rule(PUBLIC)
def day_zip(token: str, day: str) -> Any:
    """The day's programs as one ZIP, as for the operator link."""
    terminal = _terminal(token)
    outlet, the_day = terminal.outlet, link_day(day)
    _programs, members = day_files(outlet, the_day)
    if not members:
        abort(404)
    try:
        body = zip_body(members, settings().tz)
    except FileNotFoundError:
        abort(404)
    stamp = the_day.isoformat()
    return respond(
        body,
        mimetype="application/zip",
        filename=f"{safe_name(outlet.name)}_{stamp}.zip",
        fallback=f"dalaba-terminal{terminal.id}_{stamp}.zip",
        attachment=True,
        on_close=_recorder(download_log(), terminal, the_day, "zip", body.size),
    )


@bp.get("/t/<token>/feed.xml")
@rule(PUBLIC)
def feed(token: str) -> Any:
    """The podcast RSS of the outlet's programs, its enclosures this terminal's own URLs."""
    terminal = _terminal(token)
    today = _today()
    data = feed_xml(
        terminal.outlet,
        today,
        settings().base_url + url_for(".feed", token=token),  # a box has no page of its own
        token,
    )
    body = bytes_body(data, latest_build(terminal.outlet))
    return _text_file(terminal, body, "application/rss+xml", ".xml", today, "rss")


def _text_file(
    terminal: Terminal, body: Body, mimetype: str, suffix: str, day: date, kind: str
) -> Response:
    """A playlist or feed (UTF-8) for a box, named after the terminal, its fetch noted."""
    name = f"dalaba-terminal{terminal.id}{suffix}"
    response = respond(
        body,
        mimetype=mimetype,
        filename=name,
        fallback=name,
        on_close=_recorder(download_log(), terminal, day, kind, body.size),
    )
    response.mimetype_params["charset"] = "utf-8"
    return response


@bp.get("/t/<token>/<day>.m3u")
@rule(PUBLIC)
def playlist(token: str, day: str) -> Any:
    """The day's programs as an M3U playlist of this terminal's own URLs."""
    terminal = _terminal(token)
    the_day = link_day(day)
    lines = ["#EXTM3U"]
    for program in operator_svc.programs_for(db(), terminal.outlet, the_day, the_day):
        if not operator_svc.is_ready(program):
            continue
        lines += [
            f"#EXTINF:{round(program.duration or 0)},{the_day.isoformat()} {program.slot.label}",
            settings().base_url
            + url_for(
                ".program_mp3",
                token=token,
                day=the_day.isoformat(),
                slot=f"{program.slot.at:%H%M}",
            ),
        ]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    body = bytes_body(data, _now())
    return _text_file(
        terminal, body, "audio/x-mpegurl", f"_{the_day.isoformat()}.m3u", the_day, "m3u"
    )


# --- The admin's page: register and revoke an outlet's terminals ----------------------------------


def _outlet(outlet_id: int) -> Outlet:
    outlet = db().get(Outlet, outlet_id)
    if outlet is None or not Scope.of(g.user).has_outlet(outlet):
        abort(404)
    return outlet


@bp.route("/terminals/<int(max=2147483647):outlet_id>", methods=["GET", "POST"])
@rule(Role.ADMIN)
def manage(outlet_id: int) -> Any:
    """An outlet's terminals: register one (its link shown once), revoke one."""
    outlet = _outlet(outlet_id)
    new_token = None
    if request.method == "POST":
        with transaction() as tx:
            if request.form.get("action") == "revoke":
                terminal = db().get(Terminal, form_id("terminal_id") or 0)
                if terminal is None or terminal.outlet_id != outlet.id:
                    abort(404)
                svc.revoke(db(), g.user, terminal, _now())
                done = _("终端已停用，它的链接不再有效")
            else:
                _row, new_token = svc.register(
                    db(),
                    g.user,
                    outlet,
                    kind=request.form.get("kind", ""),
                    name=request.form.get("name", ""),
                )
                done = _("终端已登记：请把下面的地址填进终端，这个地址只显示这一次")
        if tx.ok:
            flash(done, "success")
        if new_token is None:
            return redirect(url_for(".manage", outlet_id=outlet.id))
    boxes = {b.terminal.id: b for b in svc.day_statuses(db(), [outlet.id], _today(), settings().tz)}
    return render_template(
        "terminals/manage.html",
        outlet=outlet,
        terminals=svc.of_outlets(db(), [outlet.id], active=False),
        boxes=boxes,
        kinds=svc.KIND_LABELS,
        statuses=svc.STATUS_LABELS,
        new_token=new_token,
        base_url=settings().base_url,
    )
