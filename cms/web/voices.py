"""The admin page of offline neural voices: installed models, install from an upload, a trial."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cms.models import Role
from cms.services import voices as voices_svc
from cms.services.text import clean_filename
from cms.web.auth import rule
from cms.web.db import db, lock_released, read_only, settings, transaction
from cms.web.forms import audio_text

bp = Blueprint("voices", __name__, url_prefix="/admin/voices")

TRIAL_TEXT = "各位村民请注意，明天上午八点在村委会开会。"
TRIAL_MAX_CHARS = 100
ARCHIVE_SUFFIXES = (".tar.bz2", ".tar.gz", ".tgz", ".tar.xz", ".tar")


def allow_large_upload() -> None:
    """Model archives are larger than other uploads: raise the cap for this one endpoint.

    Registered before CSRF protection, which reads the form (and so the body) first.
    """
    if request.endpoint == "voices.upload":
        from audio.install import MAX_ARCHIVE_BYTES

        request.max_content_length = MAX_ARCHIVE_BYTES


def _page(**extra: Any) -> Any:
    from audio.catalogue import CATALOGUE
    from audio.voices import VOICES

    config = settings()
    rows = voices_svc.installed_models(config)
    return render_template(
        "admin/voices.html",
        rows=rows,
        catalogue=CATALOGUE,
        installed_names={row.name for row in rows},
        voices=VOICES,
        engine=config.tts_engine,
        model_dir=config.neural_model_dir,
        trial_text=TRIAL_TEXT,
        **extra,
    )


@bp.get("/")
@rule(Role.ADMIN)
def index() -> Any:
    """Installed models and the catalogue."""
    return _page()


@bp.post("/upload")
@rule(Role.ADMIN)
def upload() -> Any:
    """Install a model archive brought on a USB stick."""
    file = request.files.get("archive")
    name = clean_filename(file.filename or "") if file else ""
    if file is None or not name:
        flash(_("请选择模型压缩包（.tar.bz2）"), "error")
        return redirect(url_for(".index"))
    if not name.endswith(ARCHIVE_SUFFIXES):
        flash(_("模型压缩包应为 .tar.bz2、.tar.gz、.tar.xz 或 .tar 文件"), "error")
        return redirect(url_for(".index"))
    root = voices_svc.models_root(settings())
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".upload-", dir=root))
    try:
        with transaction() as tx:
            path = folder / name
            # Saving, unpacking and trying the model take long: not while holding the writer lock.
            with lock_released():
                file.save(path)
                row = voices_svc.install_upload(
                    db(), g.user, settings(), path, request.form.get("sha256", "").strip() or None
                )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not tx.ok:
        return redirect(url_for(".index"))
    flash(_("已安装 {name}，试加载通过").format(name=row.name), "success")
    if not row.in_use:
        flash(
            _("重启 dalaba serve 后，未设置 DALABA_NEURAL_MODEL_DIR 时即使用它；现在可以先试听"),
            "info",
        )
    return redirect(url_for(".index", trial=row.name))


@bp.post("/trial")
@rule(Role.ADMIN)
@read_only
def trial() -> Any:
    """Speak a sentence with an installed model, to hear it before using it."""
    from audio.errors import AudioError
    from audio.render import Renderer
    from audio.voices import VOICES

    rows = {row.name: row for row in voices_svc.installed_models(settings())}
    row = rows.get(request.form.get("model", ""))
    text = request.form.get("text", "").strip()[:TRIAL_MAX_CHARS] or TRIAL_TEXT
    voice = request.form.get("voice", "")
    if row is None or voice not in VOICES:
        flash(_("请选择已安装的模型和列表中的声音"), "error")
        return redirect(url_for(".index"))
    try:
        clip = Renderer(
            settings().audio_dir / "cache", engine="neural", neural_model_dir=row.folder
        ).render(text, voice=voice)
    except AudioError as exc:
        flash(_("试听音频生成失败：{e}").format(e=audio_text(exc)), "error")
        return redirect(url_for(".index", trial=row.name))
    return _page(
        trial_result={
            "model": row.name,
            "voice": voice,
            "text": text,
            "url": url_for("schedule.sample_audio", key=clip.key),
            "duration": round(clip.duration, 1),
        }
    )
