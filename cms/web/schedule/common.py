"""What the schedule pages share: the outlet a user may see and the audio files they may hear."""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import Any

from flask import abort, g
from flask_babel import gettext as _

from cms.models import Outlet, Role
from cms.services.scope import Scope
from cms.web.db import db, settings
from cms.web.sendfile import file_body, respond

CALENDAR_DAYS = 14


def outlet_or_404(outlet_id: int) -> Outlet:
    """The outlet, when the user may see it; else 404."""
    outlet = db().get(Outlet, outlet_id)
    if outlet is None or not Scope.of(g.user).has_outlet(outlet):
        abort(404, description=_("广播点不存在"))
    if g.user.role is Role.OPERATOR and outlet not in g.user.outlets:
        # Not found rather than forbidden: an operator learns nothing about other outlets.
        abort(404, description=_("广播点不存在"))
    return outlet


def send_audio(raw: str | None) -> Any:
    """Send a file from the data folder only; anything else is 404, never a path outside."""
    if not raw:
        abort(404)
    root = settings().data_dir.resolve()
    path = Path(raw).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        abort(404)
    mimetype = {".mp3": "audio/mpeg", ".ogg": "audio/ogg"}.get(
        path.suffix, mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    # The one download path (conditionals, ranges, streaming) the operators' and share
    # downloads use.
    return respond(file_body(path), mimetype=mimetype, filename=path.name, fallback=path.name)
