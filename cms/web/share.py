"""The public share page /s/<token> and the "转发到微信群" panel for officers and operators."""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from markupsafe import Markup, escape

from cms.models import Announcement
from cms.roles import STAFF
from cms.services import phones
from cms.services import share as svc
from cms.services.text import printable
from cms.web.auth import PUBLIC, rule
from cms.web.db import db, settings, transaction
from cms.web.downloads import download_log
from cms.web.forms import announcement_or_404
from cms.web.links import keep_private
from cms.web.sendfile import bytes_body, file_body, respond, served_from_start

bp = Blueprint("share", __name__)

MP3 = "audio/mpeg"
# Revalidated on every view: a withdrawal or a new link takes effect at once, and the page's
# language follows the visitor's cookie, so no shared cache may keep it.
NO_CACHE = "private, no-cache"
DESCRIPTION_CHARS = 80


keep_private(bp, "/s/")


def _page(token: str) -> svc.SharePage:
    """The page behind a token: 404 for an unknown or replaced token, 410 once withdrawn."""
    found = svc.page(db(), token, settings().tz)
    if found is None:
        abort(404)
    if found.withdrawn:
        abort(_withdrawn(found))
    return found


def _withdrawn(found: svc.SharePage) -> Response:
    response = Response(render_template("share/withdrawn.html", office=_office(found)), status=410)
    response.headers["Cache-Control"] = NO_CACHE
    return response


def _office(found: svc.SharePage) -> str:
    msgid, params = found.office
    return _(msgid).format(**params)


def _names(found: svc.SharePage, suffix: str) -> tuple[str, str]:
    title = printable(found.title).replace("/", "_").replace("\\", "_").strip() or "dalaba"
    return f"{title}{suffix}", f"dalaba-notice{found.announcement_id}{suffix}"


@bp.app_template_filter("tel_links")
def tel_links(text: str | None) -> Markup:
    """Escaped text with line breaks, phone numbers as tap-to-call ``tel:`` links."""
    parts: list[Markup] = []
    for piece, number in phones.segments(text or ""):
        shown = Markup("<br>").join(escape(piece).split("\n"))
        parts.append(Markup('<a href="tel:{}">{}</a>').format(number, shown) if number else shown)
    return Markup("").join(parts)


@functools.cache
def _inline(name: str) -> tuple[Markup, str]:
    """A static file's text to inline, and its CSP source (``'sha256-…'``) that allows it."""
    text = (Path(current_app.static_folder or "") / name).read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")
    return Markup(text), f"'sha256-{digest}'"


def in_words(seconds: float, template: str) -> str:
    """A duration in minutes and seconds as words ("1分05秒")."""
    whole = max(0, int(seconds))
    return template.format(m=whole // 60, s=f"{whole % 60:02d}")


@bp.get("/s/<token>")
@rule(PUBLIC)
def page(token: str) -> Any:
    """The public share page: title, office, date, text and the loudspeaker clip."""
    found = _page(token)
    text = " ".join(printable(found.body).split())
    description = text[:DESCRIPTION_CHARS] + ("…" if len(text) > DESCRIPTION_CHARS else "")
    # Style and script are inlined: one request shows the page on a slow line (it loads in
    # well under a second on DevTools' 3G profile, tests/browser/test_share_elders.py).
    css, css_hash = _inline("share.css")
    js, js_hash = _inline("share-page.js")
    played, total = _("已播放 {m}分{s}秒"), _("共 {m}分{s}秒")
    response = Response(
        render_template(
            "share/page.html",
            page=found,
            office=_office(found),
            description=description,
            url=f"{settings().base_url}/s/{token}",
            image=settings().base_url + url_for("static", filename="share-card.png"),
            css=css,
            js=js,
            played=played,
            total=total,
            time_words=in_words(0, played)
            + (f" / {in_words(found.duration, total)}" if found.duration else ""),
        )
    )
    response.headers["Cache-Control"] = NO_CACHE
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; "
        f"style-src 'self' {css_hash}; script-src 'self' {js_hash}; frame-ancestors 'none'"
    )
    return response


@bp.get("/s/<token>/audio.mp3")
@rule(PUBLIC)
def audio(token: str) -> Any:
    """The loudspeaker clip with ranges and validators; a fetch from the start is counted."""
    found = _page(token)
    if found.audio is None:
        abort(404, description=_("音频正在生成，请稍后再试"))
    try:
        body = file_body(found.audio)
    except FileNotFoundError:
        abort(404, description=_("音频正在生成，请稍后再试"))
    filename, fallback = _names(found, ".mp3")
    response = respond(
        body,
        mimetype=MP3,
        filename=filename,
        fallback=fallback,
        attachment=request.args.get("dl") == "1",
        cache_control=NO_CACHE,
    )
    if response.status_code in (200, 206) and served_from_start(response):
        now = settings().now()
        download_log().add_share(found.announcement_id, now.astimezone(settings().tz).date(), now)
    return response


@bp.get("/s/<token>/subtitles.vtt")
@rule(PUBLIC)
def subtitles(token: str) -> Any:
    """The clip's SRT subtitles as WebVTT for the player's <track>."""
    found = _page(token)
    if found.subtitles is None:
        abort(404)
    try:
        srt = found.subtitles.read_text(encoding="utf-8", errors="replace")
        modified = datetime.fromtimestamp(found.subtitles.stat().st_mtime, UTC)
    except FileNotFoundError:
        abort(404)
    filename, fallback = _names(found, ".vtt")
    response = respond(
        bytes_body(svc.srt_to_vtt(srt).encode("utf-8"), modified),
        mimetype="text/vtt",
        filename=filename,
        fallback=fallback,
        cache_control=NO_CACHE,
    )
    response.mimetype_params["charset"] = "utf-8"
    return response


@bp.get("/s/<token>/qr.png")
@rule(PUBLIC)
def qr_png(token: str) -> Any:
    """The QR code of the share link as a PNG to download and print."""
    found = _page(token)
    url = f"{settings().base_url}/s/{token}"
    filename, fallback = _names(found, "_二维码.png")
    return respond(
        bytes_body(svc.qr_png(url), datetime(2020, 1, 1, tzinfo=UTC)),
        mimetype="image/png",
        filename=filename,
        fallback=fallback.replace("_二维码", "-qr"),
        attachment=True,
        cache_control=NO_CACHE,
    )


@bp.post("/announcements/<int:announcement_id>/share/new-link")
@rule(*STAFF)
def new_link(announcement_id: int) -> Any:
    """换一个链接: issue a new share token; the old link stops working."""
    ann = announcement_or_404(announcement_id)
    with transaction() as tx:
        svc.issue_new_token(db(), g.user, ann)
    if tx.ok:
        flash(_("已换成新的分享链接，旧链接已失效"), "success")
    return redirect(url_for("announcements.show", announcement_id=announcement_id) + "#share")


def panel(ann: Announcement) -> dict[str, Any] | None:
    """What the 转发到微信群 panel shows for ``ann``; None while it cannot be shared."""
    url = svc.share_url(settings(), ann)
    if url is None or ann.share_token is None:
        return None
    rev = ann.approved_revision
    assert rev is not None
    clip = svc.loudspeaker_clip(db(), rev.id)
    return {
        "announcement_id": ann.id,
        "title": rev.title,
        "url": url,
        "text": svc.share_text(rev.title, rev.body, url, heading=_(svc.HEADING)),
        "qr_svg": Markup(svc.qr_svg(url)),  # segno escapes the title it writes
        "qr_png": url_for("share.qr_png", token=ann.share_token),
        "mp3": url_for("share.audio", token=ann.share_token, dl=1) if clip else None,
        "audio_pending": clip is None and rev.to_loudspeaker,
    }
