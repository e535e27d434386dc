"""Running ffmpeg (from imageio-ffmpeg; never a system ffmpeg, never ffprobe) and measuring audio."""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from glob import escape as glob_escape
from pathlib import Path

from audio.errors import N_, AudioError, DiskFullError, MasteringError, Reason

__all__ = [
    "Loudness",
    "atomic_path",
    "decode_pcm",
    "disk_full_in",
    "ffmpeg_exe",
    "measure_loudness",
    "parse_ebur128",
    "run_ffmpeg",
    "write_atomic",
]

log = logging.getLogger(__name__)

# How ffmpeg reports ENOSPC/EDQUOT (strerror, from any muxer or the trailer writer). The
# line can be anywhere in the log: the last lines are usually the progress summary.
_DISK_FULL_MARKERS = ("no space left on device", "disk quota exceeded")
_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def disk_full_in(log_text: str) -> bool:
    """True when an ffmpeg log says a write failed because the disk (or quota) is full."""
    lowered = log_text.lower()
    return any(marker in lowered for marker in _DISK_FULL_MARKERS)


def _disk_full(what: str) -> DiskFullError:
    return DiskFullError(N_("{what}失败：磁盘空间不足，无法写入音频文件"), what=Reason(what))


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg binary bundled with imageio-ffmpeg.

    Raises:
        MasteringError: imageio-ffmpeg has no binary for this platform.
    """
    try:
        import imageio_ffmpeg

        exe: str = imageio_ffmpeg.get_ffmpeg_exe()
        return exe
    except Exception as exc:  # imageio-ffmpeg raises RuntimeError, or OSError on odd systems
        raise MasteringError(
            N_("找不到 ffmpeg（imageio-ffmpeg 未提供本平台的可执行文件）")
        ) from exc


def _spawn(cmd: list[str], what: str) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg's ``cmd`` to its end, whatever its exit status.

    Raises:
        MasteringError: ffmpeg could not be started, or ran past 15 minutes.
    """
    try:
        return subprocess.run(cmd, capture_output=True, check=False, timeout=900)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MasteringError(
            N_("{what}失败：无法运行 ffmpeg（{detail}）"), what=Reason(what), detail=str(exc)
        ) from exc


def _failure(stderr: str, detail: str, what: str) -> AudioError:
    """The error for an ffmpeg that exited with an error: a full disk, or ``detail``'s end."""
    if disk_full_in(stderr):
        return _disk_full(what)
    return MasteringError(
        N_("{what}失败（ffmpeg：{detail}）"), what=Reason(what), detail=detail[-300:]
    )


def run_ffmpeg(args: Sequence[str], *, what: str = N_("处理音频")) -> str:
    """Run ffmpeg with ``args`` and return its log (stderr).

    Raises:
        DiskFullError: ffmpeg could not write its output because the disk is full.
        MasteringError: ffmpeg exited with an error; the message names ``what`` (a message
            id marked with ``N_``).
    """
    proc = _spawn([ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", *args], what)
    stderr = proc.stderr.decode("utf-8", "replace")
    if proc.returncode != 0:
        tail = " / ".join(stderr.strip().splitlines()[-3:])
        log.warning("ffmpeg failed (%s): %s", proc.returncode, tail)
        raise _failure(stderr, tail, what)
    return stderr


def decode_pcm(path: Path, *, sample_rate: int = 16_000, what: str = N_("解码音频")) -> bytes:
    """Decode any audio file to mono signed 16-bit little-endian PCM.

    Raises:
        DiskFullError: ffmpeg reported that the disk is full.
        MasteringError: ffmpeg cannot decode the file.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-vn"]
    cmd += ["-ac", "1", "-ar", str(sample_rate), "-f", "s16le", "-"]
    proc = _spawn(cmd, what)
    if proc.returncode != 0:
        stderr = proc.stderr.decode("utf-8", "replace").strip()
        raise _failure(stderr, stderr, what)
    return proc.stdout


@dataclass(frozen=True)
class Loudness:
    """EBU R128 measurement of a file.

    Attributes:
        integrated: integrated loudness in LUFS (``-inf`` for silence), to 0.1 LU.
        true_peak: maximum true peak in dBTP (BS.1770 with 192 kHz oversampling), to
            about 0.01 dB.
        lra: loudness range in LU.
    """

    integrated: float
    true_peak: float
    lra: float


def parse_ebur128(log_text: str) -> dict[str, float]:
    """Read the summary the ``ebur128`` filter logs at the end of a run.

    Returns:
        ``integrated`` (LUFS), ``threshold`` (LUFS, the integrated gate), ``lra`` (LU) and,
        when the filter ran with ``peak=true``, ``true_peak`` (dBTP).

    Raises:
        MasteringError: no summary in the log.
    """
    summary = log_text[log_text.rfind("Summary:") :]
    number = r"(-?[\d.]+|-inf)"
    found = {
        "integrated": re.search(rf"I:\s+{number}\s+LUFS", summary),
        "threshold": re.search(rf"Threshold:\s+{number}\s+LUFS", summary),
        "lra": re.search(rf"LRA:\s+{number}\s+LU", summary),
        "true_peak": re.search(rf"Peak:\s+{number}\s+dBFS", summary),
    }
    if "Summary:" not in log_text or not all(found[k] for k in ("integrated", "threshold", "lra")):
        raise MasteringError(N_("无法读取响度测量结果（ffmpeg ebur128 输出格式异常）"))
    return {k: float(m.group(1)) for k, m in found.items() if m}


def measure_loudness(path: Path) -> Loudness:
    """Measure integrated loudness, true peak and loudness range with ffmpeg's ebur128.

    Args:
        path: any file ffmpeg decodes.

    Returns:
        The measurement.

    Raises:
        MasteringError: ffmpeg cannot decode the file.
    """
    out = run_ffmpeg(
        ["-i", str(path), "-af", f"ebur128=peak=true:metadata=1:framelog=quiet,{_PEAK_PRINT}",
         "-f", "null", "-"],
        what=N_("测量响度"),
    )  # fmt: skip
    stats = parse_ebur128(out)
    return Loudness(stats["integrated"], _true_peak(out, stats["true_peak"]), stats["lra"])


# The summary prints the true peak to 0.1 dB, too coarse to check a ceiling with: the
# running maximum ebur128 attaches to every frame (linear, three decimals) is finer.
_PEAK_KEY = "lavfi.r128.true_peaks_ch0"
_PEAK_PRINT = f"ametadata=mode=print:key={_PEAK_KEY}"
_PEAK_VALUE = re.compile(re.escape(_PEAK_KEY) + r"=([\d.]+)")


def _true_peak(log_text: str, summary_dbtp: float) -> float:
    """The true peak in dBTP to ~0.01 dB: the last running maximum of channel 0, or the
    summary's value when that is higher (another channel peaks louder)."""
    values = _PEAK_VALUE.findall(log_text[log_text.rfind(_PEAK_KEY) - 1 :])
    if not values or float(values[-1]) <= 0:
        return summary_dbtp
    precise = 20 * math.log10(float(values[-1]))
    return summary_dbtp if summary_dbtp > precise + 0.05 else round(precise, 2)


_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", os.uname().nodename)[:40] or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _sweep_orphans(target: Path) -> None:
    """Remove temporary files of ``target`` left by a process of this host that has died
    (killed between writing and renaming). The writer's host and pid are in the name, so a
    file another live process (or another machine sharing the folder) is writing stays."""
    prefix = f".{target.name}.{_HOST}-"
    for leftover in target.parent.glob(f"{glob_escape(prefix)}*.tmp"):
        pid = leftover.name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it replaces ``target`` atomically.

    Readers never see a half-written file, even across processes: the temporary file is
    in the same directory and ``os.replace`` is atomic on one filesystem.

    Raises:
        DiskFullError: a write inside the block (or creating the file) found the disk full;
            the partial file is removed.
    """
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _sweep_orphans(target)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.{_HOST}-{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS and not isinstance(exc, DiskFullError):
            raise _disk_full("写入文件") from exc
        raise
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        if exc.errno in _DISK_FULL_ERRNOS and not isinstance(exc, DiskFullError):
            raise _disk_full("写入文件") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: Path, data: bytes | str) -> None:
    """Write ``data`` to ``target`` atomically (see :func:`atomic_path`)."""
    with atomic_path(target) as tmp:
        if isinstance(data, str):
            tmp.write_text(data, encoding="utf-8")
        else:
            tmp.write_bytes(data)
