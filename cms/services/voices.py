"""Offline neural voice models for the admin page: what is installed, installing an upload.

The installing itself is :mod:`audio.install` (checksums, safe unpacking); this adds the
trial load (a model that cannot speak is taken out again, and the previous default kept)
and the audit entry.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from cms.models import User
from cms.services.audit import record
from cms.services.errors import N_, DomainError, Message, audio_message
from cms.settings import Settings


@dataclass(frozen=True)
class ModelRow:
    """One installed model as the admin page shows it."""

    name: str
    folder: Path
    family: str | None
    speakers: int
    default: bool
    in_use: bool
    catalogued: bool
    licence: str | None
    problem: Message | None


def models_root(settings: Settings) -> Path:
    from audio.install import models_dir

    return models_dir(settings.data_dir)


def installed_models(settings: Settings) -> list[ModelRow]:
    """Every installed model with its family and speakers (from its files, not loading it)."""
    from audio.errors import NeuralError
    from audio.install import installed
    from audio.neural import locate_model

    rows = []
    for item in installed(models_root(settings)):
        family, speakers, problem = None, 0, None
        try:
            model = locate_model(item.folder)
            family, speakers = model.family, len(model.speakers)
        except NeuralError as exc:
            problem = audio_message(exc)
        rows.append(
            ModelRow(
                item.name,
                item.folder,
                family,
                speakers,
                item.default,
                settings.neural_model_dir is not None
                and settings.neural_model_dir.resolve() == item.folder.resolve(),
                item.entry is not None,
                item.entry.licence if item.entry else None,
                problem,
            )
        )
    return rows


def install_upload(
    session: Session, actor: User, settings: Settings, archive: Path, sha256: str | None
) -> ModelRow:
    """Install an uploaded archive, try it in a child process, keep it only if it speaks.

    Raises:
        DomainError: the archive was refused (checksum, unsafe, too large) or the model
            cannot speak; the message says why. Nothing is left installed then, and the
            previous default model stays the default.
    """
    from audio.errors import AudioError
    from audio.install import DEFAULT_FILE, install_archive
    from audio.neural import check_model

    root = models_root(settings)
    default_file = root / DEFAULT_FILE
    before = default_file.read_text(encoding="utf-8") if default_file.is_file() else None
    try:
        result = install_archive(archive, root, sha256=sha256 or None)
    except AudioError as exc:
        raise DomainError(N_("模型未能安装：{reason}"), reason=audio_message(exc)) from exc
    try:
        check_model(result.folder)
    except AudioError as exc:
        shutil.rmtree(result.folder, ignore_errors=True)
        if before is None:
            default_file.unlink(missing_ok=True)
        else:
            default_file.write_text(before, encoding="utf-8")
        raise DomainError(
            N_("模型未能通过试加载，已移除：{reason}"), reason=audio_message(exc)
        ) from exc
    record(session, actor, "voice.install", None, name=result.name, sha256=result.sha256)
    return next(row for row in installed_models(settings) if row.name == result.name)
