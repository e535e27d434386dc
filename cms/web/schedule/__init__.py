"""Scheduling in the CMS: renders, programs, the lexicon, run sheets and the scheduler's status.

One blueprint, ``schedule``, with its views in the modules beside this one: ``status`` (the
scheduler's state, retries, one announcement's renders, the outbox, audio files), ``lexicon``
(the pronunciation lexicon and its samples), ``outlets`` (an outlet's day, calendar and run
sheet) and ``budget`` (the editor's duration budget). Importing the package adds them all.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from cms.services.labels import ENGINE_LABELS, JOB_LABELS

bp = Blueprint("schedule", __name__, url_prefix="/schedule")


@bp.app_context_processor
def _labels() -> dict[str, Any]:
    return {"job_labels": JOB_LABELS, "engine_labels": ENGINE_LABELS}


# The views add themselves to ``bp``, so they are imported after it (Flask's pattern for a
# blueprint spread over modules).
from cms.web.schedule import budget, lexicon, outlets, status  # noqa: E402,F401
