"""Programs: the audio for one outlet, one day, one slot, joined from mastered clips.

A program is the opening chime, each announcement in priority order with its repeats
("重要的事情说三遍") and gaps, and the closing line. Clips are already mastered in the
house format (:data:`audio.mp3.HOUSE_FORMAT`), so a program is built by joining their MP3
frames byte by byte: no decoding, no re-encoding, no loudness work per outlet. Gaps are
frames of encoded silence in the same format. The joined file gets an ID3v2 tag (title,
date); the segments never carry one.

Beside ``program.mp3`` lies ``program.json``, the manifest: the revisions in order, their
repeats, the start and duration of every segment, the total, and a hash of the inputs. A
rebuild whose inputs hash the same returns at once without touching audio.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from audio.errors import N_, ProgramError, Reason
from audio.ffmpeg import atomic_path, ffmpeg_exe
from audio.master import PROFILES, Profile
from audio.mp3 import HOUSE_FORMAT, Mp3Frames, id3v2_tag, parse_frames
from audio.render import Clip

__all__ = [
    "MANIFEST_VERSION",
    "LoopResult",
    "ProgramItem",
    "ProgramResult",
    "build_loop",
    "build_program",
    "manifest_path",
    "silence_mp3",
]

MANIFEST_VERSION = 1
MAX_REPEATS = 5


@dataclass(frozen=True)
class ProgramItem:
    """One announcement in a program.

    Attributes:
        clip: its mastered loudspeaker clip.
        revision: the approved revision it comes from (opaque to this package; in the
            manifest).
        title: shown in the manifest.
        repeats: how many times it is read (1–5).
        priority: higher plays first; equal priorities keep the caller's order (so the
            caller may also sort, e.g. urgent first, and leave priorities at 0).
    """

    clip: Clip
    revision: str
    title: str = ""
    repeats: int = 1
    priority: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.repeats <= MAX_REPEATS:
            raise ProgramError(
                N_("重复次数应为 1 到 {most} 次（当前为 {repeats}）"),
                most=MAX_REPEATS,
                repeats=self.repeats,
            )
        if self.clip.profile is not Profile.LOUDSPEAKER:
            raise ProgramError(N_("节目只能由大喇叭格式（MP3）的音频组成"))


@dataclass(frozen=True)
class ProgramResult:
    """A built (or found unchanged) program.

    Attributes:
        path: the program MP3.
        manifest_path: the manifest JSON beside it.
        duration: total playing time in seconds.
        rebuilt: ``False`` when an identical program was already there and nothing was done.
        manifest: the manifest's content.
    """

    path: Path
    manifest_path: Path
    duration: float
    rebuilt: bool
    manifest: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class LoopResult:
    """A loop export for mobile speakers.

    Attributes:
        path: the loop MP3.
        repeats: whole readings of the program in it.
        duration: its playing time in seconds (the minutes asked for, to one frame).
        rebuilt: ``False`` when the same loop was already there.
        pause: seconds of silence after each reading.
    """

    path: Path
    repeats: int
    duration: float
    rebuilt: bool
    pause: float = 0.0


def manifest_path(program_path: Path) -> Path:
    """Where the manifest of ``program_path`` lives (same name, ``.json``)."""
    return program_path.with_suffix(".json")


@lru_cache(maxsize=128)
def _frames(path: Path, key: str) -> Mp3Frames:
    # Clips are content-addressed and never change once written: path + key identify
    # the bytes, so one parse serves every outlet's program in a build run.
    return _house_frames(
        path,
        missing=N_("找不到音频文件 {file}，请重新生成"),
        name=N_("音频 {file}"),
        not_house=N_("音频 {file} 不是统一的广播格式（{format}），请重新生成"),
    )


def _house_frames(path: Path, *, missing: str, name: str, not_house: str) -> Mp3Frames:
    """The frames of the MP3 at ``path``, which must be in the house format.

    The messages take ``{file}`` (the file's name); ``not_house`` may take ``{format}``.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProgramError(missing, file=path.name) from exc
    frames = parse_frames(data, name=Reason.of(name, file=path.name))
    if frames.format != HOUSE_FORMAT:
        raise ProgramError(not_house, file=path.name, format=str(frames.format))
    return frames


@cache
def _silence_frames() -> tuple[bytes, ...]:
    """Independent frames of digital silence in the house format (bit reservoir off)."""
    spec = PROFILES[Profile.LOUDSPEAKER]
    cmd = [
        ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
        f"anullsrc=r={HOUSE_FORMAT.sample_rate}:cl=mono", "-t", "2",
        "-ar", str(HOUSE_FORMAT.sample_rate), "-ac", "1", *spec.encoder, "-",
    ]  # fmt: skip
    try:
        data = subprocess.run(cmd, capture_output=True, check=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProgramError(N_("无法生成静音片段（ffmpeg 失败）")) from exc
    parsed = parse_frames(data, name=N_("静音片段"))
    frames, pos = [], 0
    while pos < len(parsed.data):
        length = 144 * HOUSE_FORMAT.bitrate_kbps * 1000 // HOUSE_FORMAT.sample_rate
        length += (parsed.data[pos + 2] >> 1) & 1
        frames.append(parsed.data[pos : pos + length])
        pos += length
    # Skip the first and last frames, which carry the encoder's start-up and flush.
    return tuple(frames[2:-2])


def _silence(seconds: float) -> tuple[bytes, int]:
    count = max(0, round(seconds / HOUSE_FORMAT.frame_seconds))
    return _silence_count(count), count


def _silence_count(count: int) -> bytes:
    pool = _silence_frames()
    cycles = b"".join(pool)
    whole, rest = divmod(count, len(pool))
    return cycles * whole + b"".join(pool[:rest])


def silence_mp3(seconds: float = 1.0) -> bytes:
    """Digital silence in the house format, no tags: an answer a dumb player plays as nothing.

    Args:
        seconds: how long (rounded to whole frames, at least one frame).

    Returns:
        The MP3 frames.

    Raises:
        ProgramError: ffmpeg failed.
    """
    return _silence_count(max(1, round(seconds / HOUSE_FORMAT.frame_seconds)))


def _input_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
    ).hexdigest()


def _unchanged(out_path: Path, input_hash: str) -> dict[str, Any] | None:
    try:
        manifest: dict[str, Any] = json.loads(manifest_path(out_path).read_text(encoding="utf-8"))
        size = out_path.stat().st_size
    except (OSError, ValueError):
        return None
    if manifest.get("input_hash") == input_hash and manifest.get("bytes") == size:
        return manifest
    return None


def build_program(
    items: Sequence[ProgramItem],
    out_path: Path | str,
    *,
    title: str,
    date: str,
    chime: Clip | None = None,
    closing: Clip | None = None,
    lead_s: float = 0.6,
    repeat_gap_s: float = 2.0,
    item_gap_s: float = 3.0,
    artist: str = "大喇叭",
) -> ProgramResult:
    """Join mastered clips into one program MP3 plus its manifest, atomically.

    Order: ``chime``, a lead gap, the items by descending priority (stable), each read
    ``repeats`` times with ``repeat_gap_s`` between readings and ``item_gap_s`` between
    items, then ``closing``. Get the chime from :meth:`Renderer.chime` and the closing
    line by rendering :data:`audio.DEFAULT_CLOSING` (both cached).

    Args:
        items: the announcements; may be empty (chime and closing only).
        out_path: the program file; ``.json`` beside it is the manifest.
        title: ID3 title, e.g. ``"新村 2024-03-05 早间广播"``.
        date: ISO date of the program (ID3 date).
        chime: opening chime clip, or ``None`` for none.
        closing: closing line clip, or ``None`` for none.
        lead_s: silence after the chime.
        repeat_gap_s: silence between readings of one announcement.
        item_gap_s: silence between announcements and before the closing line.
        artist: ID3 artist.

    Returns:
        The program; ``rebuilt`` is ``False`` when the same inputs had been built before.

    Raises:
        ProgramError: nothing to play, a clip is missing, or not in the house format.
    """
    out_path = Path(out_path)
    ordered = sorted(items, key=lambda item: -item.priority)
    for extra in (chime, closing):
        if extra is not None and extra.profile is not Profile.LOUDSPEAKER:
            raise ProgramError(N_("提示音和结束语必须是大喇叭格式（MP3）"))
    if not ordered and chime is None and closing is None:
        raise ProgramError(N_("节目中没有任何内容"))
    gaps = {"lead": lead_s, "repeat": repeat_gap_s, "item": item_gap_s}
    if min(gaps.values()) < 0 or max(gaps.values()) > 60:
        raise ProgramError(N_("间隔时间应在 0 到 60 秒之间"))
    input_hash = _input_hash(
        {
            "version": MANIFEST_VERSION,
            "title": title,
            "date": date,
            "artist": artist,
            "gaps": gaps,
            "chime": chime.key if chime else None,
            "closing": closing.key if closing else None,
            "items": [[i.clip.key, i.repeats, i.revision, i.title] for i in ordered],
        }
    )
    manifest = _unchanged(out_path, input_hash)
    if manifest is not None:
        return ProgramResult(
            out_path, manifest_path(out_path), manifest["total_duration"], False, manifest
        )

    parts: list[bytes] = []
    segments: list[dict[str, Any]] = []
    frames_total = 0

    def add(clip: Clip, kind: str, **extra: Any) -> None:
        nonlocal frames_total
        frames = _frames(clip.path, clip.key)
        segments.append(
            {
                "kind": kind,
                "start": round(frames_total * HOUSE_FORMAT.frame_seconds, 3),
                "duration": round(frames.duration, 3),
                "clip": clip.key,
                **extra,
            }
        )
        parts.append(frames.data)
        frames_total += frames.count

    def gap(seconds: float) -> None:
        nonlocal frames_total
        data, count = _silence(seconds)
        parts.append(data)
        frames_total += count

    if chime is not None:
        add(chime, "chime")
        if ordered or closing is not None:
            gap(lead_s)
    for index, item in enumerate(ordered):
        if index:
            gap(item_gap_s)
        for repeat in range(1, item.repeats + 1):
            if repeat > 1:
                gap(repeat_gap_s)
            add(item.clip, "announcement", revision=item.revision, title=item.title, repeat=repeat)
    if closing is not None:
        if ordered:
            gap(item_gap_s)
        add(closing, "closing")

    tag = id3v2_tag(title=title, artist=artist, album=title, date=date, comment="dalaba")
    total = round(frames_total * HOUSE_FORMAT.frame_seconds, 3)
    size = len(tag) + sum(len(p) for p in parts)
    manifest = {
        "version": MANIFEST_VERSION,
        "input_hash": input_hash,
        "title": title,
        "date": date,
        "format": {
            "codec": "mp3",
            "sample_rate": HOUSE_FORMAT.sample_rate,
            "channels": HOUSE_FORMAT.channels,
            "bitrate_kbps": HOUSE_FORMAT.bitrate_kbps,
        },
        "gaps": gaps,
        "items": [
            {
                "revision": item.revision,
                "title": item.title,
                "clip": item.clip.key,
                "priority": item.priority,
                "repeats": item.repeats,
                "duration": item.clip.duration,
                "engine": str(item.clip.engine),
            }
            for item in ordered
        ],
        "segments": segments,
        "frames": frames_total,
        "total_duration": total,
        "bytes": size,
    }
    with atomic_path(out_path) as tmp, tmp.open("wb") as handle:
        handle.write(tag)
        handle.writelines(parts)
    # The manifest goes last: a manifest that matches means its program is complete.
    with atomic_path(manifest_path(out_path)) as tmp:
        tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return ProgramResult(out_path, manifest_path(out_path), total, True, manifest)


def build_loop(
    program: Path | str | ProgramResult,
    minutes: float,
    out_path: Path | str,
    *,
    gap_s: float = 5.0,
) -> LoopResult:
    """Repeat a program for a mobile speaker: exactly ``minutes`` long, no reading cut.

    An operator who asks for a 30-minute loop drives a 30-minute route: the file lasts
    exactly that long (to one MP3 frame, 26 ms). It holds as many whole readings as fit
    with at least ``gap_s`` of silence after each; the time left over is shared out
    evenly as longer pauses after every reading (the last one too, so a player that
    repeats the file keeps the same rhythm). A reading is never cut: a program longer
    than ``minutes`` plays once, followed by ``gap_s``, and the file is that much longer.
    Joined without re-encoding.

    Args:
        program: the program file (or the result of :func:`build_program`).
        minutes: length of the loop, 1–600.
        out_path: the loop file; written atomically, skipped when unchanged.
        gap_s: the shortest silence after a reading.

    Returns:
        The loop file, its number of readings, its duration and the pause after each.

    Raises:
        ProgramError: the program is missing or not in the house format, or bad minutes.
    """
    source = program.path if isinstance(program, ProgramResult) else Path(program)
    out_path = Path(out_path)
    if not 1 <= minutes <= 600:
        raise ProgramError(N_("循环时长应在 1 到 600 分钟之间"))
    if not 0 <= gap_s <= 60:
        raise ProgramError(N_("间隔时间应在 0 到 60 秒之间"))
    frames = _house_frames(
        source,
        missing=N_("找不到节目文件 {file}"),
        name=N_("节目 {file}"),
        not_house=N_("节目 {file} 不是统一的广播格式"),
    )
    total = round(minutes * 60 / HOUSE_FORMAT.frame_seconds)
    least = round(gap_s / HOUSE_FORMAT.frame_seconds)
    repeats = max(1, total // (frames.count + least))
    spare = total - repeats * frames.count
    if spare < least:  # the program alone is longer than the loop
        pauses = [least]
    else:
        base, extra = divmod(spare, repeats)
        pauses = [base + 1] * extra + [base] * (repeats - extra)
    count = repeats * frames.count + sum(pauses)
    duration = round(count * HOUSE_FORMAT.frame_seconds, 3)
    pause = round(min(pauses) * HOUSE_FORMAT.frame_seconds, 3)
    title = source.stem
    try:
        meta = json.loads(manifest_path(source).read_text(encoding="utf-8"))
        title, date = meta["title"], meta["date"]
    except (OSError, ValueError, KeyError):
        date = ""
    input_hash = _input_hash(
        {
            "version": MANIFEST_VERSION,
            "program": hashlib.sha256(frames.data).hexdigest(),
            "minutes": minutes,
            "pauses": pauses,
            "title": title,
        }
    )
    if _unchanged(out_path, input_hash) is not None:
        return LoopResult(out_path, repeats, duration, False, pause)
    tag = id3v2_tag(title=f"{title}（循环 {minutes:g} 分钟）", artist="大喇叭", date=date)
    with atomic_path(out_path) as tmp, tmp.open("wb") as handle:
        handle.write(tag)
        for frames_of_pause in pauses:
            handle.write(frames.data)
            handle.write(_silence_count(frames_of_pause))
        size = handle.tell()
    manifest = {
        "version": MANIFEST_VERSION,
        "input_hash": input_hash,
        "program": source.name,
        "minutes": minutes,
        "repeats": repeats,
        "pause": pause,
        "total_duration": duration,
        "bytes": size,
    }
    with atomic_path(manifest_path(out_path)) as tmp:
        tmp.write_text(json.dumps(manifest, ensure_ascii=False, indent=1), encoding="utf-8")
    return LoopResult(out_path, repeats, duration, True, pause)
