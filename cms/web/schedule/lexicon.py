"""The pronunciation lexicon: the county's and each township's own entries, and samples."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cms import tree
from cms.models import LexiconEntry
from cms.roles import STAFF
from cms.services import lexicon as lexicon_svc
from cms.services import speech as speech_svc
from cms.services import township
from cms.services.errors import ValidationError
from cms.services.scope import Scope
from cms.web.auth import rule
from cms.web.db import db, read_only, settings, transaction
from cms.web.forms import audio_text, chosen_area
from cms.web.schedule import bp
from cms.web.schedule.common import send_audio

SAMPLE_MAX_CHARS = 200


@bp.route("/lexicon", methods=["GET", "POST"])
@rule(*STAFF)
def lexicon() -> Any:
    """The pronunciation lexicon: the county's and each township's own; add an entry, listen."""
    errors: dict[str, str] = {}
    form = request.form if request.method == "POST" else {}
    area = chosen_area(errors)
    if request.method == "POST" and not errors:
        with transaction(catch=ValidationError, flash=False) as tx:
            entry = lexicon_svc.save_entry(
                db(),
                g.user,
                written=request.form.get("written"),
                spoken=request.form.get("spoken"),
                note=request.form.get("note", ""),
                area=area,
            )
            affected = lexicon_svc.affected_revisions(db(), entry.written, area)
        errors = tx.fields
        if tx.ok:
            flash(
                _("已保存“{w}”→“{s}”；{n} 条公告的音频和相关节目将自动重新生成。").format(
                    w=entry.written, s=entry.spoken, n=len(affected)
                ),
                "info",
            )
            return redirect(url_for("schedule.lexicon", area_id=area.id if area else None))
    entries = lexicon_svc.all_entries(db(), area)
    counts = {e.id: len(lexicon_svc.affected_revisions(db(), e.written, area)) for e in entries}
    # A township also sees the county's entries it inherits, and which of them it overrides.
    own = {e.written for e in entries}
    inherited = (
        [(w, s, w in own) for w, s in tree.lexicon_pairs(db(), area.parent)]
        if area is not None
        else []
    )
    sample_key = request.args.get("sample", "")
    return render_template(
        "schedule/lexicon.html",
        entries=entries,
        counts=counts,
        inherited=inherited,
        area=area,
        townships=township.scoped_townships(db(), g.user),
        errors=errors,
        form=form,
        sample_key=sample_key if _renderer().get_clip(sample_key) else None,
        sample_text=request.args.get("text", "")[:SAMPLE_MAX_CHARS],
    ), (400 if errors else 200)


@bp.post("/lexicon/<int:entry_id>/delete")
@rule(*STAFF)
def lexicon_delete(entry_id: int) -> Any:
    """Remove a lexicon entry (affected clips are re-rendered)."""
    entry = db().get(LexiconEntry, entry_id)
    # The county's (install's) entries are the whole install's; a township's, its office's.
    if entry is None or not Scope.of(g.user).contains(entry.area):
        abort(404, description=_("读音条目 {id} 不存在").format(id=entry_id))
    area_id = entry.area_id
    with transaction(catch=(), missing=True):
        lexicon_svc.delete_entry(db(), g.user, entry_id)
    flash(_("已删除读音条目"), "info")
    return redirect(url_for("schedule.lexicon", area_id=area_id))


def _renderer() -> Any:
    """One renderer per app for samples (it shares the scheduler's content-addressed cache)."""
    renderer = current_app.extensions.get("dalaba.sample_renderer")
    if renderer is None:
        renderer = speech_svc.make_renderer(settings())
        current_app.extensions["dalaba.sample_renderer"] = renderer
    return renderer


@bp.post("/lexicon/sample")
@rule(*STAFF)
@read_only
def lexicon_sample() -> Any:
    """Render a short sample text with the current lexicon and play it."""
    from audio.errors import AudioError
    from audio.text import Lexicon

    errors: dict[str, str] = {}
    area = chosen_area(errors)
    back = area.id if area else None
    text = request.form.get("text", "").strip()[:SAMPLE_MAX_CHARS]
    if errors:
        flash("；".join(errors.values()), "error")
        return redirect(url_for("schedule.lexicon"))
    if not text:
        flash(_("请输入要试听的文字"), "error")
        return redirect(url_for("schedule.lexicon", area_id=back))
    entries = tuple(tree.lexicon_pairs(db(), area))
    try:
        clip = _renderer().render(text, lexicon=Lexicon(entries))
    except AudioError as exc:
        flash(_("试听音频生成失败：{e}").format(e=audio_text(exc)), "error")
        return redirect(url_for("schedule.lexicon", area_id=back))
    return redirect(url_for("schedule.lexicon", area_id=back, sample=clip.key, text=text))


@bp.get("/audio/sample/<key>")
@rule(*STAFF)
def sample_audio(key: str) -> Any:
    """A lexicon sample from the render cache."""
    clip = _renderer().get_clip(key)
    return send_audio(str(clip.path) if clip else None)
