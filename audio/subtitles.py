"""Subtitle cues and their SRT and WebVTT renderings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Cue", "shift_cues", "to_srt", "to_vtt"]


@dataclass(frozen=True)
class Cue:
    """One subtitle line: ``text`` is spoken from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    text: str


def shift_cues(cues: Sequence[Cue], shift: float, limit: float | None = None) -> list[Cue]:
    """Move cues by ``shift`` seconds, clamped to ``0 … limit``; empty cues are dropped."""
    moved = []
    for cue in cues:
        start = max(0.0, cue.start + shift)
        end = max(start, cue.end + shift)
        if limit is not None:
            start, end = min(start, limit), min(end, limit)
        if end > start and cue.text.strip():
            moved.append(Cue(round(start, 3), round(end, 3), cue.text.strip()))
    return moved


def _stamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _one_line(text: str) -> str:
    # A blank line ends a cue in both formats, and "-->" would start a new timing line.
    return " ".join(text.split()).replace("-->", "→")


def to_srt(cues: Sequence[Cue]) -> str:
    """Render cues as SubRip (``.srt``)."""
    blocks = [
        f"{index}\n{_stamp(c.start, ',')} --> {_stamp(c.end, ',')}\n{_one_line(c.text)}\n"
        for index, c in enumerate(cues, start=1)
    ]
    return "\n".join(blocks)


def to_vtt(cues: Sequence[Cue]) -> str:
    """Render cues as WebVTT (``.vtt``)."""
    blocks = [
        f"{_stamp(c.start, '.')} --> {_stamp(c.end, '.')}\n{_one_line(c.text)}\n" for c in cues
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)
