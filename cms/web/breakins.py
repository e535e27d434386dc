"""立即插播: starting and ending break-ins, the banner's audio and 已播放, and ``now.mp3``.

``/o/<token>/now.mp3`` is the stable address a box polls. While a break-in plays at the
outlet it answers 200 with the insert (an MP3 with a strong ETag, ranges, revalidation:
a box that sends ``If-None-Match`` gets 304 for an insert it already has). Otherwise it
answers **204 No Content** with ``Retry-After``: a success status, so firmware that treats
anything but 2xx as a fault does not raise one, and no bytes go over a 4G column's data
plan on every poll. Players that must receive audio on every fetch (a media player looping
the URL) use ``now.mp3?idle=silence``: 200 with two seconds of silence in the house format.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import func, select

from cms.models import Announcement, BreakIn, BreakInOutlet, Outlet, Role
from cms.roles import OPERATORS, REVIEWERS, STAFF
from cms.services import breakin as svc
from cms.services import operators as operator_svc
from cms.services.scope import Scope
from cms.web.auth import PUBLIC, rule
from cms.web.db import db, settings, transaction
from cms.web.downloads import download_log
from cms.web.sendfile import bytes_body, file_body, respond, served_from_start

bp = Blueprint("breakins", __name__)
MP3 = "audio/mpeg"
IDLE_RETRY_S = 15
IDLE_SILENCE_S = 2.0
HISTORY_DAYS = 31
_idle: dict[str, bytes] = {}


def _now() -> datetime:
    return settings().now()


def _today() -> date:
    return _now().astimezone(settings().tz).date()


def data_file(path: str) -> Path | None:
    """A stored path, only inside the data folder."""
    root = settings().data_dir.resolve()
    candidate = Path(path)
    candidate = (candidate if candidate.is_absolute() else root / candidate).resolve()
    return candidate if candidate.is_relative_to(root) else None


def send_copy(copy: BreakInOutlet, outlet: Outlet) -> Response | None:
    """An outlet's copy of an insert, with validators and ranges; None if it vanished."""
    path = data_file(copy.path)
    if path is None:
        return None
    try:
        body = file_body(path)
    except FileNotFoundError:
        return None
    stamp = f"{copy.break_in_id}"
    response = respond(
        body,
        mimetype=MP3,
        filename=f"紧急插播_{stamp}.mp3",
        fallback=f"dalaba-breakin-{stamp}-outlet{outlet.id}.mp3",
    )
    response.headers["X-Dalaba-Breakin"] = stamp
    return response


def idle_response() -> Response:
    """Nothing to play now: 204, or two seconds of silence for players that need audio."""
    if request.args.get("idle") == "silence":
        if "silence" not in _idle:
            from audio.program import silence_mp3

            _idle["silence"] = silence_mp3(IDLE_SILENCE_S)
        body = bytes_body(_idle["silence"], datetime(2026, 1, 1, tzinfo=UTC))
        response = respond(body, mimetype=MP3, filename="silence.mp3", fallback="silence.mp3")
    else:
        response = Response(status=204)
        response.headers["Retry-After"] = str(IDLE_RETRY_S)
        response.headers["Cache-Control"] = "no-store"
    response.headers["X-Dalaba-Breakin"] = "none"
    return response


@bp.get("/o/<token>/now.mp3")
@rule(PUBLIC)
def now_mp3(token: str) -> Any:
    """What plays now at the outlet: the newest break-in's insert, or nothing (see above)."""
    outlet = operator_svc.outlet_for_token(db(), token)
    if outlet is None:
        abort(404)
    today = _today()
    playing = svc.playing(db(), [outlet.id], today)[outlet.id]
    if not playing:
        return idle_response()
    response = send_copy(playing[0].copy, outlet)
    if response is None:
        return idle_response()
    if response.status_code in (200, 206) and served_from_start(response):
        download_log().add(outlet.id, today, "now", [None], _now())
    return response


@bp.post("/o/<token>/breakins/<int(max=2147483647):break_in_id>/played")
@rule(PUBLIC)
def link_played(token: str, break_in_id: int) -> Any:
    """已播放 through the outlet's private link."""
    outlet = operator_svc.outlet_for_token(db(), token)
    if outlet is None:
        abort(404)
    copy = _copy_of(break_in_id, outlet.id)
    _played(copy, None, "link")
    return redirect(url_for("operators.link_page", token=token))


def _copy_of(break_in_id: int, outlet_id: int) -> BreakInOutlet:
    copy = db().scalar(
        select(BreakInOutlet).where(
            BreakInOutlet.break_in_id == break_in_id, BreakInOutlet.outlet_id == outlet_id
        )
    )
    if copy is None:
        abort(404)
    return copy


def _played(copy: BreakInOutlet, user: Any, via: str) -> None:
    with transaction() as tx:
        created = svc.mark_played(db(), user, copy, via, _now())
    if not tx.ok:
        return
    flash(_("已确认播放紧急插播，谢谢！") if created else _("这次插播已经确认过了"), "success")


def _my_copy(copy_id: int) -> BreakInOutlet:
    copy = db().get(BreakInOutlet, copy_id)
    if copy is None or not Scope.of(g.user).has_outlet(copy.outlet):
        abort(404)
    if g.user.role is not Role.ADMIN and copy.outlet_id not in {o.id for o in g.user.outlets}:
        abort(404)
    return copy


@bp.get("/operator/breakins/<int(max=2147483647):copy_id>.mp3")
@rule(*OPERATORS)
def my_copy_mp3(copy_id: int) -> Any:
    """A break-in's insert for one of the operator's outlets."""
    copy = _my_copy(copy_id)
    response = send_copy(copy, copy.outlet)
    if response is None:
        abort(404, description=_("插播音频尚未生成"))
    return response


@bp.post("/operator/breakins/<int(max=2147483647):copy_id>/played")
@rule(*OPERATORS)
def my_copy_played(copy_id: int) -> Any:
    """已播放, logged in."""
    _played(_my_copy(copy_id), g.user, "web")
    return redirect(url_for("operators.mine"))


# --- Officers ------------------------------------------------------------------------------------


@bp.get("/breakins/")
@rule(*STAFF)
def index() -> Any:
    """Break-ins of the last month in the user's scope: built, reached, played; end one."""
    rows = svc.listing(db(), g.user, _today() - timedelta(days=HISTORY_DAYS))
    ids = [r.id for r in rows]
    counts: dict[int, tuple[int, int]] = {}
    if ids:
        for break_in_id, ready, played in db().execute(
            select(
                BreakInOutlet.break_in_id,
                func.count(BreakInOutlet.id),
                func.count(BreakInOutlet.played_at),
            )
            .where(BreakInOutlet.break_in_id.in_(ids))
            .group_by(BreakInOutlet.break_in_id)
        ):
            counts[break_in_id] = (ready, played)
    return render_template(
        "breakins/index.html",
        rows=rows,
        counts=counts,
        today=_today(),
        rules=svc.RULES,
        may_end=g.user.role in REVIEWERS,
    )


@bp.post("/breakins/start/<int(max=2147483647):announcement_id>")
@rule(*REVIEWERS)
def start(announcement_id: int) -> Any:
    """Start a break-in of an approved urgent notice (or, for admins, under the emergency rule)."""
    ann = db().get(Announcement, announcement_id)
    if ann is None or not Scope.of(g.user).contains(ann.area):
        abort(404)
    with transaction() as tx:
        svc.start(
            db(),
            g.user,
            ann,
            rule=request.form.get("rule", "reviewer"),
            today=_today(),
            now=_now(),
            reason=request.form.get("reason", ""),
        )
    if not tx.ok:
        return redirect(url_for("announcements.show", announcement_id=announcement_id))
    flash(_("已开始立即插播：各广播点的插播音频正在生成"), "success")
    return redirect(url_for(".index"))


@bp.post("/breakins/<int(max=2147483647):break_in_id>/end")
@rule(*REVIEWERS)
def end(break_in_id: int) -> Any:
    """End a break-in: boxes go quiet and the banners go."""
    with transaction() as tx:
        row: BreakIn = svc.get(db(), break_in_id, g.user)
        svc.end(db(), g.user, row, _now())
    if tx.ok:
        flash(_("插播已结束"), "success")
    return redirect(url_for(".index"))
