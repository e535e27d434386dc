"""Human recordings (dialect or Yi-language versions) that replace synthesis for an announcement.

A recording belongs to the announcement, not to one revision, so it may only change while the
announcement is a draft: the reviewer then hears exactly what will go out, and an approved
announcement's audio never changes without a new review.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from cms.models import Announcement, Recording, Status, User
from cms.roles import EDITORS
from cms.services import audit
from cms.services.errors import (
    N_,
    Message,
    PermissionDenied,
    ValidationError,
    WorkflowError,
    audio_message,
)
from cms.services.text import clean_filename

if TYPE_CHECKING:
    from audio.render import Renderer

ALLOWED_SUFFIXES = {
    ".mp3",
    ".m4a",
    ".aac",
    ".wav",
    ".ogg",
    ".opus",
    ".amr",
    ".flac",
    ".wma",
    ".webm",
    ".3gp",
}


def active(session: Session, ann: Announcement) -> Recording | None:
    return session.scalar(
        select(Recording)
        .where(Recording.announcement_id == ann.id, Recording.active)
        .order_by(Recording.created_at.desc(), Recording.id.desc())
    )


def _check_editable(user: User, ann: Announcement) -> None:
    if user.role not in EDITORS:
        raise PermissionDenied(N_("只有编辑或管理员可以上传录音"))
    if ann.status is not Status.DRAFT:
        raise WorkflowError(
            N_("录音只能在草稿状态下更换：请先修改公告（生成新版本）再上传，审核员会一起审听")
        )


def add_recording(
    session: Session,
    user: User,
    ann: Announcement,
    *,
    filename: str,
    data: bytes,
    renderer: Renderer,
    directory: Path,
) -> Recording:
    """Check an upload with the audio library, keep the original, make it the active recording.

    Raises:
        ValidationError: on field ``recording``, with audio's message (format, length, silence).
    """
    from audio.errors import AudioError, DiskFullError

    _check_editable(user, ann)
    name = clean_filename(filename, "recording")
    suffix = Path(name).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise ValidationError(
            {
                "recording": Message(
                    N_("不支持的文件类型“{suffix}”：请上传 MP3、M4A、WAV、OGG 等录音文件"),
                    {"suffix": suffix or name},
                )
            }
        )
    try:
        clip = renderer.render_recording(data)
    except DiskFullError:
        raise  # not the recording's fault: the web answers "disk full"
    except AudioError as exc:
        # audio's messages are already written for the officer (and translated like ours).
        raise ValidationError({"recording": audio_message(exc)}) from exc
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{ann.id}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)
    # The checks again, on the row as it is now: the audio work above may have run outside
    # any transaction (see cms.web.db.lock_released), and someone may have submitted it.
    # Flushed first: a refresh would drop this session's own unflushed changes to the row.
    session.flush()
    session.refresh(ann)
    _check_editable(user, ann)
    session.execute(
        update(Recording).where(Recording.announcement_id == ann.id).values(active=False)
    )
    row = Recording(
        announcement_id=ann.id,
        original_name=name,
        path=str(target),
        duration=clip.duration,
        uploaded_by_id=user.id,
        active=True,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        user,
        "recording.add",
        ann,
        recording=row.id,
        name=name,
        duration=round(clip.duration, 1),
    )
    return row


def remove_recording(session: Session, user: User, ann: Announcement) -> None:
    """Go back to synthesised speech."""
    _check_editable(user, ann)
    session.execute(
        update(Recording).where(Recording.announcement_id == ann.id).values(active=False)
    )
    audit.record(session, user, "recording.remove", ann)
