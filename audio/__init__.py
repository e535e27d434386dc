"""dalaba's audio library: text to spoken text, speech, mastered clips and programs.

A pure library: no Flask, no database, no Telegram. The CMS and the scheduler call it::

    from audio import Renderer, ProgramItem, build_program, DEFAULT_CLOSING

    renderer = Renderer(settings.audio_dir / "cache", engine="auto",
                        edge_wss_url=settings.edge_wss_url)
    clip = renderer.render("明天8:00-10:00召开户长会。", voice="zh-CN-XiaoxiaoNeural")
    note = renderer.voice_note(clip)                 # OGG/Opus for Telegram
    build_program([ProgramItem(clip, revision="12.3", repeats=3)], "out/新村-早.mp3",
                  title="新村 早间广播", date="2024-03-05",
                  chime=renderer.chime(), closing=renderer.render(DEFAULT_CLOSING))

Names are imported lazily, so ``import audio`` stays cheap (edge-tts, aiohttp and wetext
load only when used).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_CLOSING",
    "DEFAULT_VOICE",
    "MAX_RATE",
    "MIN_RATE",
    "PROFILES",
    "VOICES",
    "AudioError",
    "Clip",
    "Cue",
    "DiskFullError",
    "EdgeError",
    "EngineMode",
    "EngineName",
    "Lexicon",
    "Loudness",
    "LoopResult",
    "MasteringError",
    "NeuralError",
    "OfflineError",
    "Profile",
    "ProgramError",
    "ProgramItem",
    "ProgramResult",
    "RecordingError",
    "Renderer",
    "RetryPolicy",
    "SynthesisError",
    "TextError",
    "Voice",
    "VoiceError",
    "build_loop",
    "build_program",
    "check_rate",
    "estimate_duration",
    "export_file",
    "get_voice",
    "manifest_path",
    "measure_loudness",
    "ogg_opus_duration",
    "spoken_text",
    "split_sentences",
]

_WHERE = {
    "DEFAULT_CLOSING": "render",
    "Clip": "render",
    "EngineMode": "render",
    "EngineName": "render",
    "Renderer": "render",
    "export_file": "render",
    "RetryPolicy": "engines",
    "DEFAULT_VOICE": "voices",
    "MAX_RATE": "voices",
    "MIN_RATE": "voices",
    "VOICES": "voices",
    "Voice": "voices",
    "check_rate": "voices",
    "get_voice": "voices",
    "PROFILES": "master",
    "Profile": "master",
    "Cue": "subtitles",
    "Loudness": "ffmpeg",
    "measure_loudness": "ffmpeg",
    "Lexicon": "text",
    "estimate_duration": "text",
    "spoken_text": "text",
    "split_sentences": "text",
    "LoopResult": "program",
    "ProgramItem": "program",
    "ProgramResult": "program",
    "build_loop": "program",
    "build_program": "program",
    "manifest_path": "program",
    "ogg_opus_duration": "master",
    **{
        name: "errors"
        for name in (
            "AudioError",
            "DiskFullError",
            "EdgeError",
            "MasteringError",
            "NeuralError",
            "OfflineError",
            "ProgramError",
            "RecordingError",
            "SynthesisError",
            "TextError",
            "VoiceError",
        )
    },
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'audio' has no attribute {name!r}")
    value = getattr(import_module(f"audio.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from audio.engines import RetryPolicy
    from audio.errors import (
        AudioError,
        DiskFullError,
        EdgeError,
        MasteringError,
        NeuralError,
        OfflineError,
        ProgramError,
        RecordingError,
        SynthesisError,
        TextError,
        VoiceError,
    )
    from audio.ffmpeg import Loudness, measure_loudness
    from audio.master import PROFILES, Profile, ogg_opus_duration
    from audio.program import (
        LoopResult,
        ProgramItem,
        ProgramResult,
        build_loop,
        build_program,
        manifest_path,
    )
    from audio.render import (
        DEFAULT_CLOSING,
        Clip,
        EngineMode,
        EngineName,
        Renderer,
        export_file,
    )
    from audio.subtitles import Cue
    from audio.text import Lexicon, estimate_duration, split_sentences, spoken_text
    from audio.voices import (
        DEFAULT_VOICE,
        MAX_RATE,
        MIN_RATE,
        VOICES,
        Voice,
        check_rate,
        get_voice,
    )
