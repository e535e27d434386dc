"""The printed notice: A4 for the village notice board, A5 as a handout, or one per village."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, render_template, request
from flask_babel import force_locale, format_date
from flask_babel import gettext as _
from markupsafe import Markup

from cms.roles import STAFF
from cms.services import airtime
from cms.services import announcements as ann_svc
from cms.services import notices as svc
from cms.services.errors import NotFound
from cms.web.auth import rule
from cms.web.db import db, settings
from cms.web.downloads import download_log
from cms.web.forms import message

bp = Blueprint("notices", __name__)
PAPER_LOCALE = "zh_CN"


@bp.app_context_processor
def _airtime_labels() -> dict[str, Any]:
    """The airtime choices for the announcement form and page."""
    return {"airtime_labels": airtime.AIRTIME_LABELS}


@bp.get("/announcements/<int:announcement_id>/print")
@rule(*STAFF)
def printed(announcement_id: int) -> Any:
    """The notice to print (the browser's print dialog, print stylesheet)."""
    try:
        ann = ann_svc.get(db(), announcement_id, g.user)
        found = svc.notice(db(), settings(), ann, settings().tz)
    except NotFound as exc:
        abort(404, description=message(exc))
    size = request.args.get("size", "a4")
    if size not in svc.SIZES:
        size = "a4"
    per_village = request.args.get("villages") == "1"
    msgid, params = found.office
    # A notice whose reach holds no village (a county office's own) prints once.
    copies: list[str | None] = list(found.villages) if per_village and found.villages else [None]
    # Counted in the ledger: noted in memory, written by the download log's thread.
    if request.method == "GET":  # not a HEAD
        download_log().add_print(svc.Print(ann.id, g.user.id, size, len(copies), settings().now()))
    # The paper goes on a village notice board: it is Chinese whatever the officer's interface
    # language (like the share page); only the controls around the preview follow that.
    with force_locale(PAPER_LOCALE):
        paper = render_template(
            "notices/_paper.html",
            notice=found,
            office=_(msgid).format(**params),
            day=format_date(found.day, "long"),
            qr=Markup(found.qr_svg),  # segno escapes the title it writes
            copies=copies,
        )
    return render_template(
        "notices/print.html",
        notice=found,
        office=_(msgid).format(**params),  # the browser tab's title, in the officer's language
        paper=Markup(paper),  # rendered (and escaped) by Jinja above
        size=size,
        per_village=per_village,
    )
