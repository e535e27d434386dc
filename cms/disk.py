"""A full disk is a state, not a crash: free space in the data folder, and "disk full" errors.

Renders and program builds check :func:`check` first and wait (without using an attempt)
while the audio folder has less than ``DALABA_MIN_FREE_MB`` free; staff pages show a
banner meanwhile. A write that fails for lack of space anyway (ffmpeg, a file, SQLite's
"database or disk is full", PostgreSQL's ``disk_full``) is recognised by
:func:`is_disk_full` and becomes one clear message: a 503 page, a 503 ``disk_full`` API
error, or a CLI error with its own exit code.
"""

from __future__ import annotations

import errno
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from audio.errors import DiskFullError
from cms.services.errors import N_, Message
from cms.settings import Settings

log = logging.getLogger(__name__)

MB = 1024 * 1024
WAIT_REASON = N_("磁盘空间不足（剩余 {free} MB，至少需要 {need} MB）")
"""Why a render or build waits (stored in the job's ``last_error``)."""
BANNER = N_("磁盘空间不足：剩余 {free} MB（至少需要 {need} MB），音频生成已暂停，请清理磁盘")
DISK_FULL = N_("磁盘空间不足，操作未能完成：请清理磁盘后再试")
"""What a request or command that failed on a full disk answers."""

_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_SQLITE_FULL = 13
_PG_DISK_FULL = "53100"


@dataclass(frozen=True)
class DiskSpace:
    """Free space where audio is written, against the configured minimum (MB)."""

    free_mb: int | None
    need_mb: int

    @property
    def short(self) -> bool:
        """True when audio work must wait (an unknown free space never stops it)."""
        return self.free_mb is not None and self.free_mb < self.need_mb

    def reason(self) -> Message:
        return Message(WAIT_REASON, {"free": self.free_mb, "need": self.need_mb})

    def banner(self) -> Message:
        return Message(BANNER, {"free": self.free_mb, "need": self.need_mb})


def free_mb(path: Path) -> int | None:
    """Megabytes an ordinary process can still write where ``path`` is (or would be created)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free // MB
    except OSError as exc:
        log.warning("cannot read the free space of %s: %s", probe, exc)
        return None


def check(settings: Settings) -> DiskSpace:
    """Free space of the audio folder (renders, programs, recordings) against the minimum."""
    return DiskSpace(free_mb(settings.audio_dir), settings.min_free_mb)


def waiting_reason_prefix() -> str:
    """How the stored :data:`WAIT_REASON` begins, to find the jobs that wait for space."""
    return Message.stored_prefix(WAIT_REASON)


def is_disk_full(exc: BaseException) -> bool:
    """True when ``exc``, or an error that caused it, means the disk (or quota) is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _means_full(current):
            return True
        current = current.__cause__ or current.__context__
    return False


def _means_full(exc: BaseException) -> bool:
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError) and exc.errno in _ERRNOS:
        return True
    # SQLAlchemy's DBAPIError wraps the driver's error in ``orig``.
    orig = getattr(exc, "orig", None)
    for candidate in (exc, orig):
        if candidate is None:
            continue
        if getattr(candidate, "sqlite_errorcode", None) == _SQLITE_FULL:
            return True
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if code == _PG_DISK_FULL:
            return True
        if "database or disk is full" in str(candidate).lower():
            return True
    return False
