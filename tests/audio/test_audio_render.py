"""The renderer: content-addressed cache, subtitles, voices, the chime, recordings."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import audio.master
from audio import (
    DEFAULT_VOICE,
    VOICES,
    Clip,
    Lexicon,
    MasteringError,
    RecordingError,
    Renderer,
    TextError,
    VoiceError,
    get_voice,
    measure_loudness,
)
from audio.render import MIN_RECORDING_S
from tests.audio.helpers import make_tone
from tests.fakes.edge_server import FakeEdgeServer


def count_masters(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Record every mastering run (the expensive step a cache hit must skip)."""
    calls: list[Path] = []
    original = audio.master.master

    def spy(raw: Path, out: Path, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls.append(out)
        return original(raw, out, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("audio.render.master", spy)
    return calls


def test_same_inputs_never_render_twice_even_after_restart(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], monkeypatch: pytest.MonkeyPatch
) -> None:
    masters = count_masters(monkeypatch)
    first = make_renderer("auto").render("明天停水，请提前储水。")
    again = make_renderer("auto").render("明天停水，请提前储水。")  # a new process, same cache
    assert again == first
    assert len(edge.requests) == 1 and len(masters) == 1
    assert first.engine == "edge"


def test_voice_note_reuses_the_speech(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], monkeypatch: pytest.MonkeyPatch
) -> None:
    renderer = make_renderer("edge")
    loud = renderer.render("请注意防火。")
    note = renderer.voice_note(loud)
    assert len(edge.requests) == 1
    assert note.source_key == loud.source_key and note.key != loud.key
    assert note.path.suffix == ".ogg" and loud.path.suffix == ".mp3"
    assert renderer.render("请注意防火。", profile="voice_note") == note
    assert len(edge.requests) == 1


def test_keys_depend_on_voice_rate_profile_and_text(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer]
) -> None:
    renderer = make_renderer("edge")
    base = renderer.render("今天开会。")
    variants = [
        renderer.render("今天开会。", voice="zh-CN-YunjianNeural"),
        renderer.render("今天开会。", rate=20),
        renderer.render("今天开会。", profile="voice_note"),
        renderer.render("明天开会。"),
    ]
    assert len({base.key, *(v.key for v in variants)}) == 5
    assert [r.voice for r in edge.requests][:2] == [
        "Microsoft Server Speech Text to Speech Voice (zh-CN, XiaoxiaoNeural)",
        "Microsoft Server Speech Text to Speech Voice (zh-CN, YunjianNeural)",
    ]
    # the lexicon changes the spoken text, hence the key
    lexed = renderer.render("今天开会。", lexicon=Lexicon.from_mapping({"开会": "召开会议"}))
    assert lexed.spoken_text == "今天召开会议。" and lexed.key != base.key


def test_cache_files_are_complete_and_clips_reload(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], tmp_path: Path
) -> None:
    renderer = make_renderer("edge")
    clip = renderer.render("缓存测试。")
    leftovers = [p for p in (tmp_path / "cache").rglob("*") if p.name.startswith(".")]
    assert leftovers == []
    assert renderer.get_clip(clip.key) == clip
    assert renderer.get_clip("0" * 64) is None and renderer.get_clip("../etc") is None
    assert Clip.from_dict(json.loads(json.dumps(clip.to_dict()))) == clip
    # a cache directory that moved still serves its clips
    moved = tmp_path / "moved"
    os.rename(tmp_path / "cache", moved)
    found = make_renderer("edge", cache=moved).get_clip(clip.key)
    assert found is not None and found.path.is_relative_to(moved) and found.path.exists()


def test_subtitles_follow_the_mastered_audio(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer]
) -> None:
    clip = make_renderer("edge").render("第一句话。第二句话！")
    assert clip.srt.startswith("1\n00:00:00,120 --> 00:00:01,")
    assert "第一句话。" in clip.srt and "2\n" in clip.srt and "第二句话！" in clip.srt
    assert clip.vtt.startswith("WEBVTT\n\n00:00:00.120 --> ")
    last_end = clip.vtt.strip().splitlines()[-2].split(" --> ")[1]
    h, m, s = last_end.split(":")
    assert float(s) <= clip.duration


def test_offline_clip_has_a_subtitle_per_sentence(offline_renderer: Renderer) -> None:
    clip = offline_renderer.render("第一句。第二句。第三句。")
    assert clip.engine == "offline" and clip.fallback_reason is None
    assert clip.srt.count("-->") == 3


def test_voice_and_rate_are_validated(offline_renderer: Renderer) -> None:
    with pytest.raises(VoiceError, match="不支持的发音人"):
        offline_renderer.render("你好。", voice="zh-CN-Xiaoxiao'/><evil>")
    with pytest.raises(VoiceError, match="语速"):
        offline_renderer.render("你好。", rate=60)
    with pytest.raises(TextError):
        offline_renderer.render("★")
    assert {"zh-CN-XiaoxiaoNeural", "zh-CN-YunjianNeural"} <= set(VOICES)
    assert get_voice(DEFAULT_VOICE).gender == "female"
    assert get_voice("zh-CN-YunjianNeural").gender == "male"
    assert all(v.label and v.name.startswith("zh-CN-") for v in VOICES.values())


def test_chime_is_synthesised_cached_and_quieter(offline_renderer: Renderer) -> None:
    chime = offline_renderer.chime()
    assert chime.engine == "tone" and 1.5 < chime.duration < 3.0
    assert offline_renderer.chime() == chime
    assert measure_loudness(chime.path).integrated == pytest.approx(-17.0, abs=1.0)
    assert offline_renderer.remaster(chime, "voice_note").path.suffix == ".ogg"


# -- recordings ---------------------------------------------------------------------------


def test_recording_is_mastered_and_cached(
    tmp_path: Path, make_renderer: Callable[..., Renderer]
) -> None:
    upload = make_tone(tmp_path / "upload.m4a", 3.0, codec=["-c:a", "aac", "-b:a", "64k"])
    renderer = make_renderer("offline")
    clip = renderer.render_recording(upload.read_bytes(), text="彝语版通知")
    assert clip.engine == "recording" and clip.voice is None
    assert clip.duration == pytest.approx(3.0 + 0.42, abs=0.3)
    assert measure_loudness(clip.path).integrated == pytest.approx(-14.0, abs=1.0)
    assert "彝语版通知" in clip.srt
    assert renderer.render_recording(upload) == clip
    note = renderer.voice_note(clip)
    assert note.engine == "recording" and note.path.suffix == ".ogg"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "空文件"),
        (b"this is a text file, not audio" * 100, "无法识别的录音文件"),
        ("silence", "没有声音"),
        ("short", "录音太短"),
        ("long", "录音太长"),
    ],
)
def test_unusable_recordings_are_refused(
    tmp_path: Path,
    make_renderer: Callable[..., Renderer],
    monkeypatch: pytest.MonkeyPatch,
    content: bytes | str,
    message: str,
) -> None:
    monkeypatch.setattr("audio.render.MAX_RECORDING_S", 4.0)
    if content == "silence":
        content = make_tone(tmp_path / "s.wav", 2.0, volume=0).read_bytes()
    elif content == "short":
        content = make_tone(tmp_path / "s.mp3", MIN_RECORDING_S / 2).read_bytes()
    elif content == "long":
        content = make_tone(tmp_path / "l.ogg", 5.0, codec=["-c:a", "libopus"]).read_bytes()
    with pytest.raises(RecordingError, match=message):
        make_renderer("offline").render_recording(content)


def test_missing_recording_file(tmp_path: Path, make_renderer: Callable[..., Renderer]) -> None:
    with pytest.raises(RecordingError, match="无法读取"):
        make_renderer("offline").render_recording(tmp_path / "nope.mp3")


def test_recording_that_ffmpeg_cannot_master_is_a_recording_error(
    tmp_path: Path, make_renderer: Callable[..., Renderer], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise MasteringError("ffmpeg 崩溃")

    monkeypatch.setattr("audio.render.master", broken)
    upload = make_tone(tmp_path / "ok.wav", 2.0)
    with pytest.raises(RecordingError, match="录音无法处理"):
        make_renderer("offline").render_recording(upload)


def test_parallel_renders_share_the_offline_engine_safely(
    make_renderer: Callable[..., Renderer],
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    renderer = make_renderer("offline")
    texts = ["第一条通知。", "第二条通知。", "第一条通知。", "第三条通知。"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        clips = list(pool.map(renderer.render, texts))
    assert clips[0].key == clips[2].key
    assert len({c.key for c in clips}) == 3
    for clip in clips:
        assert measure_loudness(clip.path).integrated == pytest.approx(-14.0, abs=1.0)


def test_render_works_inside_a_running_event_loop(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer]
) -> None:
    import asyncio

    renderer = make_renderer("edge")

    async def handler() -> Clip:
        # What a bot handler should do: keep the loop free while ffmpeg and edge-tts run.
        return await asyncio.to_thread(renderer.render, "异步调用。")

    async def careless() -> Clip:
        return renderer.render("直接调用。")  # blocks the loop, but must still work

    assert asyncio.run(handler()).engine == "edge"
    assert asyncio.run(careless()).engine == "edge"


def test_prune_removes_unused_clips_but_keeps_what_is_referenced(
    make_renderer: Callable[..., Renderer], tmp_path: Path
) -> None:
    import time

    renderer = make_renderer("offline")
    old, kept, fresh = (renderer.render(t) for t in ("旧通知。", "保留的通知。", "新通知。"))
    note = renderer.voice_note(kept)
    long_ago = time.time() - 200 * 86_400
    for clip in (old, kept, note):
        os.utime(clip.path.with_suffix(".json"), (long_ago, long_ago))
    for speech in (tmp_path / "cache" / "speech").glob("*/*"):
        os.utime(speech, (long_ago, long_ago))

    assert renderer.prune(keep=[kept.key]) == 2  # the old clip and the unused voice note
    assert renderer.get_clip(old.key) is None and not old.path.exists()
    assert renderer.get_clip(note.key) is None
    assert renderer.get_clip(kept.key) == kept and renderer.get_clip(fresh.key) == fresh
    # the kept clip's speech survived: it can still be remastered without synthesis
    assert renderer.voice_note(kept).path.exists()
    remaining = {p.stem for p in (tmp_path / "cache" / "speech").glob("*/*.json")}
    assert remaining == {kept.source_key, fresh.source_key}
