"""Operators' pages: the private link's page, the logged-in operator's, confirming a program
played, and the admin's outlet links.

The same blueprint (defined in :mod:`cms.web.links`) holds the downloads behind a private link
(:mod:`cms.web.links`) and the compliance view, 督查 (:mod:`cms.web.compliance`); importing
this module adds them all.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from cms.models import Outlet, OutletKind, Program, Role
from cms.roles import OPERATORS
from cms.services import breakin as breakin_svc
from cms.services import days as days_svc
from cms.services import operators as svc
from cms.services import share as share_svc
from cms.services.scope import Scope
from cms.web import compliance  # noqa: F401  (its pages are on this blueprint)
from cms.web.auth import PUBLIC, rule
from cms.web.db import db, settings, transaction
from cms.web.forms import form_id
from cms.web.links import bp, outlet_of, send_program
from cms.web.share import panel

log = logging.getLogger(__name__)

UPCOMING_DAYS = 7


# --- Helpers ------------------------------------------------------------------------------------


def _now() -> datetime:
    return settings().now()


def _today() -> date:
    return settings().today()


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


def _week(outlet: Outlet, today: date) -> list[tuple[date, list[dict[str, Any]]]]:
    """The outlet's programs from today on, day by day; yesterday's only while one still
    awaits confirmation."""
    programs = svc.programs_for(
        db(), outlet, today - timedelta(days=1), today + timedelta(days=UPCOMING_DAYS - 1)
    )
    return _by_day([r for r in _rows(programs) if r["program"].day >= today or r["can_confirm"]])


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
    outlet = outlet_of(token)
    today = _today()
    return render_template(
        "operators/link.html",
        outlet=outlet,
        token=token,
        days=_week(outlet, today),
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
    outlet = outlet_of(token)
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
    outlets = [(outlet, _week(outlet, today)) for outlet in _my_outlets()]
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
    return send_program(_my_program(program_id))


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
