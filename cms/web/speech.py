"""Hear it before submitting: the editor's live spoken-text preview and its 试听 sample.

Both are POSTs of the editor form that write nothing (:func:`read_only`). With scripts the
editor fetches them (``X-Requested-With: fetch``) and gets a fragment or JSON; without,
the same buttons submit the form and the editor comes back with the preview filled in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, current_app, g, jsonify, render_template, request, url_for
from flask_babel import gettext as _

from cms import tree
from cms.models import Announcement, Area
from cms.roles import EDITORS
from cms.services import announcements as ann_svc
from cms.services import speech as speech_svc
from cms.services.content import MAX_AREA_IDS
from cms.services.errors import N_, Errors
from cms.services.scope import Scope
from cms.services.text import parse_id, parse_int
from cms.web.auth import rule
from cms.web.db import db, read_only, settings
from cms.web.forms import announcement_form_data, announcement_or_404, audio_text, stored_text

log = logging.getLogger(__name__)
bp = Blueprint("speech", __name__, url_prefix="/announcements")

LISTEN_PER_MINUTE = 6
"""试听 renders one user may ask for per minute."""
LISTEN_CONCURRENCY = 1
"""试听 renders at once in this process: the rest of the worker pool stays free for pages."""
LISTEN_WAIT_S = 10.0
"""How long a 试听 waits for another one to finish before it is told to try again."""
LISTEN_EDGE_TIMEOUT_S = 8.0
"""One try of the online voice for a sample; then the offline voice stands in."""


class RateLimiter:
    """At most ``limit`` events per ``window_s`` seconds per key (a sliding window)."""

    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._events: dict[object, deque[float]] = {}
        self._lock = threading.Lock()

    def hit(self, key: object) -> float | None:
        """Count one event; ``None`` when allowed, else the seconds until the next one is."""
        now = self.clock()
        with self._lock:
            events = self._events.setdefault(key, deque())
            while events and events[0] <= now - self.window_s:
                events.popleft()
            if len(events) >= self.limit:
                return events[0] + self.window_s - now if events else self.window_s
            events.append(now)
            return None


def _state(name: str, make: Callable[[], Any]) -> Any:
    """One object per app (created on first use), shared by the worker threads."""
    key = f"dalaba.listen.{name}"
    with _STATE_LOCK:
        if key not in current_app.extensions:
            current_app.extensions[key] = make()
        return current_app.extensions[key]


_STATE_LOCK = threading.Lock()


def limiter() -> RateLimiter:
    return _state("limiter", lambda: RateLimiter(LISTEN_PER_MINUTE, 60.0))  # type: ignore[no-any-return]


def recent_outcomes() -> deque[speech_svc.Outcome]:
    return _state("outcomes", lambda: deque(maxlen=1))  # type: ignore[no-any-return]


def _renderer() -> Any:
    """A renderer for samples: one quick try of the online voice, the shared cache."""

    def make() -> Any:
        from audio.engines import RetryPolicy
        from audio.render import Renderer

        config = settings()
        return Renderer(
            config.audio_dir / "cache",
            engine=config.tts_engine,
            edge_wss_url=config.edge_wss_url,
            neural_model_dir=config.neural_model_dir,
            retry=RetryPolicy(attempts=1, timeout_s=LISTEN_EDGE_TIMEOUT_S),
        )

    return _state("renderer", make)


def _slots() -> threading.BoundedSemaphore:
    return _state("slots", lambda: threading.BoundedSemaphore(LISTEN_CONCURRENCY))  # type: ignore[no-any-return]


def engine_status(ann: Announcement | None = None) -> speech_svc.EngineStatus:
    """Who speaks an announcement rendered now (for the editor's voice menu)."""
    from cms.services import recordings

    recording = ann is not None and recordings.active(db(), ann) is not None
    last = speech_svc.last_outcome(db(), recent_outcomes())
    # The engine mode of the township the clip is rendered for (its own setting, or the
    # install's): the announcement's targets, or for a new one the editor's office.
    area = (
        tree.revision_area(db(), ann.current)
        if ann is not None
        else tree.area_of_user(db(), g.user)
    )
    mode = tree.engine_mode(db(), area, settings().tts_engine)
    return speech_svc.engine_status(settings(), last, recording=recording, mode=mode)


def _fetching() -> bool:
    return request.headers.get("X-Requested-With") == "fetch"


def _announcement() -> Announcement | None:
    raw = request.form.get("announcement_id", "")
    if not raw:
        return None
    announcement_id = parse_id(raw)
    if announcement_id is None:
        abort(404, description=_("页面不存在"))
    return announcement_or_404(announcement_id)


def _written() -> tuple[str, str | None]:
    """The text the loudspeaker will read (播音稿, else 正文), or an error."""
    spoken = request.form.get("spoken_text", "")
    body = request.form.get("body", "")
    if len(spoken) > ann_svc.MAX_SPOKEN or len(body) > ann_svc.MAX_BODY:
        return "", _("文字太长，最多 {n} 字").format(n=max(ann_svc.MAX_SPOKEN, ann_svc.MAX_BODY))
    return (spoken.strip() or body.strip()), None


def _target_area() -> Area | None:
    """The draft's targets' common area, whose lexicon its audio will use."""
    raw_ids = request.form.getlist("area_ids")[:MAX_AREA_IDS]
    ids = [parse_id(raw) for raw in raw_ids if raw.strip()]
    errors = Errors()
    if any(i is None for i in ids):
        errors.add("area_ids", N_("区域编号无效"))
    # A neighbour's areas are refused like missing ones: their lexicon is not this office's.
    Scope.of(g.user).check_areas(db(), errors, "area_ids", [i for i in ids if i is not None])
    if "area_ids" in errors:
        abort(400, description=errors.items["area_ids"].render(_))
    return tree.common_area(db(), [i for i in ids if i is not None])


def _preview_of(text: str, area: Area | None) -> dict[str, Any]:
    from audio.errors import TextError
    from audio.explain import applied_entries, explain

    try:
        spans = explain(text, speech_svc.lexicon(db(), area))
    except TextError as exc:
        return {"error": audio_text(exc), "spans": [], "entries": [], "rewrites": []}
    rewrites = list(dict.fromkeys((s.written.strip(), s.spoken) for s in spans if s.changed))
    return {
        "error": None,
        "spans": spans,
        "entries": applied_entries(spans),
        "rewrites": rewrites,
    }


def _editor(ann: Announcement | None, status: int = 200, **extra: Any) -> Any:
    """The editor page again, with what the officer typed and the preview filled in."""
    from cms.web.announcements import _form_context

    data = announcement_form_data()
    return render_template(
        "announcements/form.html",
        **_form_context(data=data, errors={}, ann=ann, engine=engine_status(ann), **extra),
    ), status


@bp.post("/preview")
@rule(*EDITORS)
@read_only
def preview() -> Any:
    """The spoken text of the draft, each rewrite marked, and the lexicon entries used."""
    ann = _announcement()
    area = _target_area()
    text, error = _written()
    result = _preview_of(text, area) if text and not error else {"error": error, "spans": []}
    status = 400 if error else 200
    if _fetching():
        return render_template("announcements/_spoken.html", preview=result), status
    return _editor(ann, status, preview=result)


def _listen_error(ann: Announcement | None, text: str, status: int, retry_after: int = 0) -> Any:
    if _fetching():
        response = jsonify({"error": text})
        response.status_code = status
    else:
        response = current_app.make_response(_editor(ann, status, listen={"error": text}))
    if retry_after:
        response.headers["Retry-After"] = str(retry_after)
    return response


@bp.post("/listen")
@rule(*EDITORS)
@read_only
def listen() -> Any:
    """试听: the first sentences, spoken with the chosen voice and rate (cached, rate-limited)."""
    from audio.errors import AudioError
    from audio.voices import VOICES

    ann = _announcement()
    area = _target_area()
    text, error = _written()
    voice = request.form.get("voice", "")
    rate = parse_int(request.form.get("rate", "0") or "0")
    if error:
        return _listen_error(ann, error, 400)
    if not text:
        return _listen_error(ann, _("请先填写正文或播音稿"), 400)
    if voice not in VOICES:
        return _listen_error(ann, _("请选择列表中的声音"), 400)
    if rate is None or not ann_svc.RATE_RANGE[0] <= rate <= ann_svc.RATE_RANGE[1]:
        return _listen_error(
            ann,
            _("语速应在 {lo} 到 {hi} 之间").format(
                lo=ann_svc.RATE_RANGE[0], hi=ann_svc.RATE_RANGE[1]
            ),
            400,
        )
    limits = limiter()
    wait = limits.hit(g.user.id)
    if wait is not None:
        seconds = max(1, round(wait + 0.5))
        return _listen_error(
            ann,
            _("试听太频繁：每分钟最多 {n} 次，请 {s} 秒后再试").format(n=limits.limit, s=seconds),
            429,
            seconds,
        )
    sample = speech_svc.listen_text(text)
    slots = _slots()
    if not slots.acquire(timeout=LISTEN_WAIT_S):
        return _listen_error(ann, _("正在生成其他试听，请稍后再试"), 503, 5)
    try:
        clip = _renderer().render(
            sample, voice=voice, rate=rate, lexicon=speech_svc.lexicon(db(), area)
        )
    except AudioError as exc:
        log.warning("listen sample failed: %s", exc)
        return _listen_error(ann, _("试听音频生成失败：{e}").format(e=audio_text(exc)), 502)
    finally:
        slots.release()
    if str(clip.engine) == "edge" or clip.fallback_reason:
        recent_outcomes().append(
            speech_svc.Outcome(settings().now(), str(clip.engine), clip.fallback_reason)
        )
    info = speech_svc.ENGINES.get(str(clip.engine))
    result = {
        "error": None,
        "url": url_for("schedule.sample_audio", key=clip.key),
        "engine": str(clip.engine),
        "label": _(info.label) if info else str(clip.engine),
        "reason": stored_text(clip.fallback_reason),
        "text": sample,
        "duration": round(clip.duration, 1),
        "voice_heard": bool(info and info.named_voice),
    }
    result["summary"] = _("由{label}朗读，约 {s} 秒：{text}").format(
        label=result["label"], s=result["duration"], text=sample
    )
    if _fetching():
        return jsonify(result)
    return _editor(ann, listen=result)
