"""Programs and loops: joined without re-encoding, manifests, rebuilds that do no work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import audio.program
from audio import (
    DEFAULT_CLOSING,
    ProgramError,
    ProgramItem,
    Renderer,
    build_loop,
    build_program,
    measure_loudness,
)
from audio.mp3 import HOUSE_FORMAT, parse_frames
from tests.audio.helpers import decoded_seconds, ffmpeg_decode_errors


@pytest.fixture(scope="module")
def clips(offline_renderer: Renderer) -> dict[str, object]:
    r = offline_renderer
    return {
        "meeting": r.render("明天上午八点召开户长会。"),
        "fire": r.render("森林防火，人人有责。"),
        "water": r.render("周三停水，请提前储水。"),
        "chime": r.chime(),
        "closing": r.render(DEFAULT_CLOSING),
    }


def items(clips: dict) -> list[ProgramItem]:
    return [
        ProgramItem(clips["meeting"], "7.2", "户长会", repeats=1),
        ProgramItem(clips["fire"], "9.1", "森林防火", repeats=3, priority=10),
        ProgramItem(clips["water"], "8.1", "停水", repeats=2),
    ]


def build(clips: dict, out: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    return build_program(
        kwargs.pop("items", items(clips)),  # type: ignore[arg-type]
        out,
        title="新村 早间广播",
        date="2024-03-05",
        chime=clips["chime"],
        closing=clips["closing"],
        **kwargs,  # type: ignore[arg-type]
    )


def test_program_order_repeats_and_manifest(clips: dict, tmp_path: Path) -> None:
    result = build(clips, tmp_path / "p.mp3")
    assert result.rebuilt
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest == result.manifest
    kinds = [(s["kind"], s.get("revision"), s.get("repeat")) for s in manifest["segments"]]
    assert kinds == [
        ("chime", None, None),
        ("announcement", "9.1", 1),  # highest priority first
        ("announcement", "9.1", 2),
        ("announcement", "9.1", 3),
        ("announcement", "7.2", 1),  # then the caller's order
        ("announcement", "8.1", 1),
        ("announcement", "8.1", 2),
        ("closing", None, None),
    ]
    assert [i["revision"] for i in manifest["items"]] == ["9.1", "7.2", "8.1"]
    segments = manifest["segments"]
    for before, after in zip(segments, segments[1:], strict=False):
        assert after["start"] >= before["start"] + before["duration"]
    gaps = manifest["gaps"]
    fire_2 = segments[2]["start"] - (segments[1]["start"] + segments[1]["duration"])
    assert fire_2 == pytest.approx(gaps["repeat"], abs=HOUSE_FORMAT.frame_seconds)
    between = segments[4]["start"] - (segments[3]["start"] + segments[3]["duration"])
    assert between == pytest.approx(gaps["item"], abs=HOUSE_FORMAT.frame_seconds)
    audible = sum(s["duration"] for s in segments)
    silence = gaps["lead"] + 3 * gaps["repeat"] + 3 * gaps["item"]
    assert result.duration == pytest.approx(audible + silence, abs=0.2)
    assert manifest["bytes"] == result.path.stat().st_size


def test_program_joins_bytes_without_reencoding(clips: dict, tmp_path: Path) -> None:
    result = build(clips, tmp_path / "p.mp3")
    data = result.path.read_bytes()
    assert data.startswith(b"ID3") and data.count(b"ID3") == 1  # one tag, at the head
    assert clips["fire"].path.read_bytes() in data  # the clip's frames, byte for byte
    frames = parse_frames(data)
    assert frames.format == HOUSE_FORMAT
    assert frames.duration == pytest.approx(result.duration, abs=0.001)
    assert ffmpeg_decode_errors(result.path) == ""
    assert decoded_seconds(result.path) == pytest.approx(result.duration, abs=0.1)
    assert b"TIT2" in data[:20] and "新村 早间广播".encode("utf-16") in data[:400]
    # clips were mastered to one target, so the program needs no loudness work
    assert measure_loudness(result.path).integrated == pytest.approx(-14.0, abs=1.5)


def test_rebuild_with_nothing_changed_does_no_audio_work(
    clips: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "p.mp3"
    first = build(clips, out)
    mtime = out.stat().st_mtime_ns

    def no_audio_work(*args: object) -> None:
        raise AssertionError("audio was touched")

    monkeypatch.setattr(audio.program, "_frames", no_audio_work)
    monkeypatch.setattr(audio.program, "_silence", no_audio_work)
    again = build(clips, out)
    assert not again.rebuilt and again.duration == first.duration
    assert out.stat().st_mtime_ns == mtime
    monkeypatch.undo()

    # any change rebuilds: order/priority, repeats, gaps, tags
    changed = items(clips)
    changed[0] = ProgramItem(clips["meeting"], "7.2", "户长会", repeats=2)
    assert build(clips, out, items=changed).rebuilt
    assert build(clips, out, items=changed, item_gap_s=1.0).rebuilt
    assert not build(clips, out, items=changed, item_gap_s=1.0).rebuilt
    # a damaged program file is rebuilt even if the manifest matches
    out.write_bytes(out.read_bytes()[:-100])
    assert build(clips, out, items=changed, item_gap_s=1.0).rebuilt


def test_many_outlets_share_the_clips(clips: dict, tmp_path: Path) -> None:
    results = [
        build(clips, tmp_path / f"outlet-{n}.mp3", items=items(clips)[: 1 + n % 3])
        for n in range(6)
    ]
    assert all(r.rebuilt for r in results)
    assert {r.path.read_bytes() for r in results[:3]} == {r.path.read_bytes() for r in results[3:]}


def test_program_errors(clips: dict, tmp_path: Path, offline_renderer: Renderer) -> None:
    with pytest.raises(ProgramError, match="没有任何内容"):
        build_program([], tmp_path / "x.mp3", title="t", date="2024-03-05")
    with pytest.raises(ProgramError, match="重复次数"):
        ProgramItem(clips["fire"], "1", repeats=9)
    note = offline_renderer.voice_note(clips["fire"])
    with pytest.raises(ProgramError, match="大喇叭格式"):
        ProgramItem(note, "1")
    bogus = tmp_path / "bogus.mp3"
    bogus.write_bytes(b"\xff\xfb" + b"junk" * 100)
    import dataclasses

    broken = dataclasses.replace(clips["fire"], path=bogus, key="f" * 64)
    with pytest.raises(ProgramError):
        build(clips, tmp_path / "y.mp3", items=[ProgramItem(broken, "1")])
    assert not (tmp_path / "y.mp3").exists()


def test_loop_lasts_exactly_the_minutes_with_whole_programs(clips: dict, tmp_path: Path) -> None:
    program = build(clips, tmp_path / "p.mp3", items=items(clips)[1:2])
    loop = build_loop(program, 2, tmp_path / "loop.mp3", gap_s=5.0)
    frame = HOUSE_FORMAT.frame_seconds
    assert loop.repeats == int(120 // (program.duration + 5)) >= 2
    assert loop.duration == pytest.approx(120, abs=frame / 2)  # what it says, to one frame
    assert loop.pause >= 5.0
    assert loop.duration == pytest.approx(
        loop.repeats * (program.duration + loop.pause), abs=loop.repeats * frame
    )
    assert ffmpeg_decode_errors(loop.path) == ""
    assert decoded_seconds(loop.path) == pytest.approx(120, abs=0.15)
    assert parse_frames(loop.path.read_bytes()).duration == pytest.approx(120, abs=frame / 2)
    assert loop.path.read_bytes().count(b"ID3") == 1
    manifest = json.loads(loop.path.with_suffix(".json").read_text())
    assert manifest["minutes"] == 2 and manifest["repeats"] == loop.repeats
    assert not build_loop(program, 2, tmp_path / "loop.mp3", gap_s=5.0).rebuilt
    # A program (and its least pause) longer than the loop plays once, whole, never cut.
    longer = build_loop(program, 1, tmp_path / "short.mp3", gap_s=60.0)
    assert longer.repeats == 1 and longer.pause == pytest.approx(60, abs=frame)
    assert longer.duration == pytest.approx(program.duration + 60, abs=frame)
    with pytest.raises(ProgramError):
        build_loop(program, 0, tmp_path / "loop.mp3")
