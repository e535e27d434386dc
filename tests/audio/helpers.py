"""Helpers for the audio tests: audio files made with ffmpeg, decoding checks, a clock."""

from __future__ import annotations

import subprocess
from pathlib import Path

from audio import RetryPolicy
from audio.ffmpeg import ffmpeg_exe

FAST_RETRY = RetryPolicy(attempts=2, backoff_s=0.5, max_backoff_s=1.0, timeout_s=1.0, cooldown_s=60)


class FakeClock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def ffmpeg_decode_errors(path: Path) -> str:
    """Everything ffmpeg complains about while decoding ``path`` completely."""
    proc = subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stderr.strip() + ("" if proc.returncode == 0 else f" (exit {proc.returncode})")


def decoded_seconds(path: Path, sample_rate: int = 16_000) -> float:
    """Duration by decoding the whole file (no ffprobe)."""
    from audio.ffmpeg import decode_pcm

    return len(decode_pcm(path, sample_rate=sample_rate)) / 2 / sample_rate


def make_tone(
    path: Path, seconds: float, *, volume: float = 0.3, codec: list[str] | None = None
) -> Path:
    """An audio file of a voice-like tone (or silence at volume 0), in any format."""
    expr = f"{volume}*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*3*t))" if volume else "0"
    subprocess.run(
        [ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
         f"aevalsrc='{expr}':s=44100:d={seconds}", "-ac", "1", *(codec or []), str(path)],
        check=True,
    )  # fmt: skip
    return path
