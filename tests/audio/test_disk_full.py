"""A full disk is told apart from bad audio: ffmpeg's "No space left" and ENOSPC on writes."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from audio import ffmpeg
from audio.errors import AudioError, DiskFullError, MasteringError

# What ffmpeg 7 printed when the disk filled up while measuring (the report): the
# last lines are the progress summary, the real reason is further up.
FULL_LOG = """\
Input #0, mp3, from 'clip.mp3':
  Duration: 00:00:05.02, start: 0.000000, bitrate: 64 kb/s
[out#0/mp3 @ 0x55d0c8a4e400] Error writing trailer: No space left on device
[out#0/mp3 @ 0x55d0c8a4e400] Error closing file: No space left on device
[out#1/null @ 0x55d0c8a4f2c0] video:0KiB audio:940KiB subtitle:0KiB other streams:0KiB
size=       8KiB time=00:00:05.00 bitrate=  13.1kbits/s speed= 210x
Conversion failed!
"""


def _fake_run(stderr: str, returncode: int = 1):  # type: ignore[no-untyped-def]
    def run(cmd, **kwargs):  # type: ignore[no-untyped-def]
        return subprocess.CompletedProcess(cmd, returncode, b"", stderr.encode())

    return run


def test_disk_full_error_is_an_audio_error_and_an_enospc_oserror() -> None:
    exc = DiskFullError()
    assert isinstance(exc, AudioError) and isinstance(exc, OSError)
    assert exc.errno == errno.ENOSPC
    assert str(exc) == "磁盘空间不足，无法写入音频文件"
    assert not isinstance(exc, MasteringError)  # callers that rewrap ffmpeg failures let it pass


def test_ffmpeg_no_space_anywhere_in_its_log_is_disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", lambda: "ffmpeg")
    monkeypatch.setattr(ffmpeg.subprocess, "run", _fake_run(FULL_LOG))
    with pytest.raises(DiskFullError) as caught:
        ffmpeg.run_ffmpeg(["-i", "clip.mp3", "out.mp3"], what="测量响度")
    assert str(caught.value) == "测量响度失败：磁盘空间不足，无法写入音频文件"
    assert "size=" not in str(caught.value)
    with pytest.raises(DiskFullError):
        ffmpeg.decode_pcm(Path("clip.mp3"))


def test_ffmpeg_quota_exceeded_is_disk_full_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", lambda: "ffmpeg")
    monkeypatch.setattr(
        ffmpeg.subprocess, "run", _fake_run("av_interleaved_write_frame(): Disk quota exceeded\n")
    )
    with pytest.raises(DiskFullError):
        ffmpeg.run_ffmpeg(["-i", "a", "b"])


def test_other_ffmpeg_failures_stay_mastering_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ffmpeg, "ffmpeg_exe", lambda: "ffmpeg")
    monkeypatch.setattr(
        ffmpeg.subprocess, "run", _fake_run("clip.mp3: Invalid data found when processing input\n")
    )
    with pytest.raises(MasteringError) as caught:
        ffmpeg.run_ffmpeg(["-i", "clip.mp3", "out.mp3"])
    assert not isinstance(caught.value, DiskFullError)
    assert "Invalid data" in str(caught.value)


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_real_ffmpeg_writing_to_a_full_device_raises_disk_full() -> None:
    """/dev/full answers every write with ENOSPC: ffmpeg's real log, not a made-up one."""
    args = ["-y", "-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-t", "2"]
    with pytest.raises(DiskFullError):
        ffmpeg.run_ffmpeg([*args, "-f", "mp3", "/dev/full"], what="编码音频")


def test_enospc_inside_atomic_path_is_disk_full_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "clip.mp3"
    target.write_bytes(b"old")
    with pytest.raises(DiskFullError) as caught, ffmpeg.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert isinstance(caught.value.__cause__, OSError)
    assert target.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [target]


def test_other_oserrors_inside_atomic_path_pass_unchanged(tmp_path: Path) -> None:
    with pytest.raises(PermissionError), ffmpeg.atomic_path(tmp_path / "x.mp3"):
        raise PermissionError(errno.EACCES, "Permission denied")
    assert list(tmp_path.iterdir()) == []


def test_write_atomic_on_a_full_disk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(DiskFullError):
        ffmpeg.write_atomic(tmp_path / "a.json", b"{}")
