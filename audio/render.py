"""The renderer: text or a recording in, a mastered and cached :class:`Clip` out.

Cache layout under ``cache_dir`` (every file written atomically; a clip exists once its
``.json`` sidecar exists, which is written last)::

    speech/ab/<speech key>.mp3|.wav|.upload   raw engine output or the uploaded recording
    speech/ab/<speech key>.json               its duration and subtitle cues
    clips/cd/<clip key>.mp3|.ogg              the mastered clip
    clips/cd/<clip key>.srt, .vtt, .json      its subtitles and metadata

Keys are SHA-256 hashes of everything that determines the bytes (spoken text, engine,
voice, rate, profile, pipeline version), so the same inputs never render twice, across
processes and restarts, and a loudspeaker clip and a voice note of one text share one
synthesis. Two processes rendering the same key at once both write the same bytes; the
atomic replace makes that harmless.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from audio.engines import EdgeEngine, OfflineEngine, RetryPolicy, Speech
from audio.errors import (
    N_,
    EdgeError,
    MasteringError,
    NeuralError,
    Reason,
    RecordingError,
    SilentAudioError,
    SilentSpeechError,
    SynthesisError,
    TextError,
)
from audio.ffmpeg import atomic_path, decode_pcm, run_ffmpeg, write_atomic
from audio.master import PROFILES, Profile, master
from audio.mp3 import id3v2_tag
from audio.neural import NeuralEngine
from audio.subtitles import Cue, shift_cues, to_srt, to_vtt
from audio.text import Lexicon, pack, split_sentences, spoken_text
from audio.voices import DEFAULT_VOICE, Voice, check_rate, get_voice

__all__ = [
    "DEFAULT_CLOSING",
    "MAX_RECORDING_BYTES",
    "MAX_RECORDING_S",
    "MIN_RECORDING_S",
    "Clip",
    "EngineMode",
    "EngineName",
    "Renderer",
    "export_file",
]

log = logging.getLogger(__name__)

PIPELINE_VERSION = 2
"""Bump when synthesis or mastering changes the bytes: old cache entries are then unused."""

EDGE_CHUNK_CHARS = 300
"""Characters per edge-tts request (≈ 900 UTF-8 bytes escaped, well under its 4,096)."""
SENTENCE_CHARS = 120

MIN_RECORDING_S = 1.0
MAX_RECORDING_S = 15 * 60.0
MAX_RECORDING_BYTES = 200 * 1024 * 1024
_SILENCE_RMS = 32768 * 10 ** (-50 / 20)
"""A recording whose loudest 50 ms window stays below −50 dBFS has nothing audible."""

DEFAULT_CLOSING = "以上是今天的广播内容，谢谢收听。"
CHIME_TARGET_OFFSET_LU = -3.0
"""The chime sits this far below the speech target: noticeable without startling."""


class EngineMode(StrEnum):
    """Which engine :meth:`Renderer.render` uses."""

    AUTO = "auto"
    """edge-tts with retries, then the neural model if one is configured, then eSpeak NG,
    recording why."""
    EDGE = "edge"
    """edge-tts only; failures raise."""
    OFFLINE = "offline"
    """eSpeak NG only, no network at all."""
    NEURAL = "neural"
    """The offline neural model (sherpa-onnx) only; failures raise."""


class EngineName(StrEnum):
    """What made a clip."""

    EDGE = "edge"
    OFFLINE = "offline"
    NEURAL = "neural"
    RECORDING = "recording"
    TONE = "tone"
    """The synthesised chime."""


@dataclass(frozen=True)
class Clip:
    """A mastered, cached piece of audio.

    Attributes:
        key: content hash; identical inputs give identical keys (and bytes).
        path: the MP3 (loudspeaker profile) or OGG/Opus (voice-note profile).
        profile: the mastering profile.
        duration: playing time in seconds, from the encoded file.
        engine: what produced the speech.
        voice: the whitelisted voice asked for (``None`` for recordings and the chime).
        rate: speaking rate in percent.
        spoken_text: the normalised text that was spoken (empty for the chime).
        fallback_reason: why edge-tts (and the neural model, when one is configured) was
            not used although the mode was auto; ``None`` when nothing fell back.
            Describes this call, not the one that filled the cache. Stored form of a
            :class:`~audio.errors.Reason` (JSON: :attr:`fallback` reads it, and so does the
            CMS's ``Message.loads``, which shows it in the reader's language).
        srt_path: SubRip subtitles beside the clip.
        vtt_path: WebVTT subtitles beside the clip.
        source_key: key of the raw speech or upload, shared by both profiles.
        neural_model: for engine ``neural``, the identity (SHA-256) of the model folder
            that spoke; ``None`` otherwise.
    """

    key: str
    path: Path
    profile: Profile
    duration: float
    engine: EngineName
    voice: str | None
    rate: int
    spoken_text: str
    fallback_reason: str | None
    srt_path: Path
    vtt_path: Path
    source_key: str
    neural_model: str | None = None

    @property
    def fallback(self) -> Reason | None:
        """:attr:`fallback_reason` as a :class:`~audio.errors.Reason` (``str()``: in Chinese)."""
        return None if self.fallback_reason is None else Reason.loads(self.fallback_reason)

    @property
    def srt(self) -> str:
        """The SRT subtitles as text."""
        return self.srt_path.read_text(encoding="utf-8")

    @property
    def vtt(self) -> str:
        """The WebVTT subtitles as text."""
        return self.vtt_path.read_text(encoding="utf-8")

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready dict (paths as strings); :meth:`from_dict` reverses it."""
        data = asdict(self)
        for name in ("path", "srt_path", "vtt_path"):
            data[name] = str(data[name])
        data["profile"] = str(self.profile)
        data["engine"] = str(self.engine)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Clip:
        """Rebuild a clip from :meth:`to_dict` output."""
        values = dict(data)
        for name in ("path", "srt_path", "vtt_path"):
            values[name] = Path(str(values[name]))
        values["profile"] = Profile(str(values["profile"]))
        values["engine"] = EngineName(str(values["engine"]))
        return cls(**values)  # type: ignore[arg-type]


def _key(payload: dict[str, object]) -> str:
    canonical = json.dumps(
        {"pipeline": PIPELINE_VERSION, **payload}, sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class Renderer:
    """Renders announcements to mastered clips, with a content-addressed cache.

    Thread-safe: renders of different texts may run in parallel threads; eSpeak NG
    serialises itself. Every method blocks (network, ffmpeg); from asyncio code call
    them with ``await asyncio.to_thread(renderer.render, …)``.

    Args:
        cache_dir: where speech and clips are kept (created if missing).
        engine: ``auto`` (default), ``edge``, ``offline`` or ``neural``.
        edge_wss_url: replaces edge-tts's service URL (``DALABA_EDGE_WSS_URL``), same
            form as ``edge_tts.communicate.WSS_URL``, query string included.
        neural_model_dir: the neural model folder (``DALABA_NEURAL_MODEL_DIR``); without
            one, auto mode goes from edge-tts straight to eSpeak NG.
        neural_threads: onnxruntime threads for the neural model (default: the cores).
        on_synthesis: called with the engine's name and its raw :class:`Speech` after
            every fresh synthesis (not for cache hits), e.g. to report a real-time factor.
        retry: edge-tts retry, timeout and cool-down settings.
        sleep: backoff sleep, injected in tests.
        clock: monotonic clock for the cool-down, injected in tests.

    Raises:
        ValueError: unknown engine mode or malformed URL.
    """

    def __init__(
        self,
        cache_dir: Path | str,
        *,
        engine: EngineMode | str = EngineMode.AUTO,
        edge_wss_url: str | None = None,
        neural_model_dir: Path | str | None = None,
        neural_threads: int | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_synthesis: Callable[[str, Speech], None] | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir)
        self.mode = EngineMode(engine)
        self.retry = retry or RetryPolicy()
        self._edge = EdgeEngine(edge_wss_url, self.retry, sleep)
        self._offline = OfflineEngine()
        self.neural = NeuralEngine(neural_model_dir, neural_threads)
        self._on_synthesis = on_synthesis
        self._clock = clock
        self._state_lock = threading.Lock()
        self._edge_down_until = 0.0
        self._edge_down_reason = Reason("")

    # -- public API --------------------------------------------------------------------

    def render(
        self,
        text: str,
        *,
        voice: str = DEFAULT_VOICE,
        rate: int = 0,
        profile: Profile | str = Profile.LOUDSPEAKER,
        lexicon: Lexicon | None = None,
    ) -> Clip:
        """Speak ``text`` and master it, or return the cached clip.

        In auto mode, speech edge-tts already made for these inputs is reused without
        network; otherwise edge-tts is tried (unless it failed within the cool-down) and
        when it fails the neural model stands in (if a folder is configured), then eSpeak
        NG, the clip's ``fallback_reason`` saying why.

        Args:
            text: written announcement text (normalised here with the lexicon).
            voice: a name from :data:`audio.VOICES`.
            rate: speaking rate, −50…+50 percent.
            profile: ``loudspeaker`` (MP3, house format) or ``voice_note`` (OGG/Opus).
            lexicon: pronunciation substitutions.

        Returns:
            The clip.

        Raises:
            TextError: nothing speakable, or too long.
            VoiceError: voice not whitelisted or rate out of range.
            EdgeError: engine mode ``edge`` and edge-tts failed.
            OfflineError: the offline engine was needed and failed.
            NeuralError: engine mode ``neural`` and the model is missing or failed.
            SynthesisError: the speech could not be mastered (ffmpeg failed, or the
                engine returned silence).
        """
        spoken = spoken_text(text, lexicon)
        return self.render_spoken(spoken, voice=voice, rate=rate, profile=profile)

    def render_spoken(
        self,
        spoken: str,
        *,
        voice: str = DEFAULT_VOICE,
        rate: int = 0,
        profile: Profile | str = Profile.LOUDSPEAKER,
    ) -> Clip:
        """Like :meth:`render` for text already passed through :func:`audio.spoken_text`."""
        if not isinstance(spoken, str) or not any(ch.isalnum() for ch in spoken):
            raise TextError(N_("文本中没有可朗读的内容"))
        chosen = get_voice(voice)
        check_rate(rate)
        profile = Profile(profile)
        if self.mode is EngineMode.OFFLINE:
            return self._render_with(self._offline, spoken, chosen, rate, profile, None)
        if self.mode is EngineMode.EDGE:
            return self._render_with(self._edge, spoken, chosen, rate, profile, None)
        if self.mode is EngineMode.NEURAL:
            return self._render_with(self.neural, spoken, chosen, rate, profile, None)
        if self._edge_speech_cached(spoken, chosen, rate):
            # edge-tts speech for this text is already on disk: no network needed.
            return self._render_with(self._edge, spoken, chosen, rate, profile, None)
        cooling = self._edge_cooling_down()
        if cooling is None:
            try:
                return self._render_with(self._edge, spoken, chosen, rate, profile, None)
            except EdgeError as exc:
                edge_why = Reason.of(N_("在线语音不可用：{reason}"), reason=exc.reason)
                reason = Reason.of(
                    N_("在线语音不可用，已改用离线语音：{reason}"), reason=exc.reason
                )
                with self._state_lock:
                    self._edge_down_until = self._clock() + self.retry.cooldown_s
                    self._edge_down_reason = exc.reason
        else:
            edge_why = Reason.of(N_("在线语音暂不可用（刚才失败：{reason}）"), reason=cooling)
            reason = Reason.of(N_("{edge}，已改用离线语音"), edge=edge_why)
        if self.neural.configured:
            try:
                return self._render_with(
                    self.neural, spoken, chosen, rate, profile,
                    Reason.of(N_("{edge}，已改用离线神经语音"), edge=edge_why),
                )  # fmt: skip
            except NeuralError as exc:
                log.warning("neural fallback failed: %s", exc)
                reason = Reason.of(
                    N_("{edge}；离线神经语音不可用：{neural}，已改用离线语音"),
                    edge=edge_why,
                    neural=exc.message,
                )
        log.info("offline fallback: %s", reason)
        return self._render_with(self._offline, spoken, chosen, rate, profile, reason)

    def render_recording(
        self,
        recording: bytes | Path | str,
        *,
        profile: Profile | str = Profile.LOUDSPEAKER,
        text: str | None = None,
    ) -> Clip:
        """Check and master an uploaded recording (dialect or Yi-language versions).

        Args:
            recording: the uploaded file's bytes, or its path.
            profile: the mastering profile.
            text: the announcement text, used as a single subtitle cue if given.

        Returns:
            The clip, engine ``recording``.

        Raises:
            RecordingError: not decodable audio, shorter than 1 s, longer than 15 min,
                larger than 200 MB, or silent.
            MasteringError: ffmpeg failed while mastering.
        """
        if isinstance(recording, Path | str):
            try:
                data = Path(recording).read_bytes()
            except OSError as exc:
                raise RecordingError(
                    N_("无法读取上传的录音文件：{detail}"), detail=str(exc.strerror or exc)
                ) from exc
        else:
            data = recording
        if not data:
            raise RecordingError(N_("上传的录音是空文件"))
        if len(data) > MAX_RECORDING_BYTES:
            raise RecordingError(
                N_("录音文件太大（{size} MB），上限 200 MB"), size=len(data) // 1024 // 1024
            )
        source_key = _key({"recording": hashlib.sha256(data).hexdigest()})
        raw = self._speech_path(source_key, ".upload")
        meta_path = self._speech_path(source_key, ".json")
        if not meta_path.exists():
            if not raw.exists():
                write_atomic(raw, data)
            duration = _check_recording(raw)
            write_atomic(meta_path, json.dumps({"duration": duration, "cues": []}))
        meta = json.loads(meta_path.read_text())
        cues: tuple[Cue, ...] = ()
        if text and text.strip():
            cues = (Cue(0.0, float(meta["duration"]), " ".join(text.split())),)
        speech = Speech(raw, float(meta["duration"]), cues)
        try:
            return self._master_cached(
                speech, source_key, Profile(profile), EngineName.RECORDING, None, 0, "", None
            )
        except MasteringError as exc:
            raise RecordingError(N_("录音无法处理：{detail}"), detail=exc.message) from exc

    def chime(self, profile: Profile | str = Profile.LOUDSPEAKER) -> Clip:
        """The opening chime: three descending bell tones (G5, E5, C5), synthesised here.

        Returns:
            A cached clip, engine ``tone``, 3 LU below the profile's speech target.

        Raises:
            MasteringError: ffmpeg failed.
        """
        profile = Profile(profile)
        source_key = _key({"chime": 1})
        raw = self._speech_path(source_key, ".wav")
        if not raw.exists():
            notes = ((0.0, 784.0), (0.42, 659.25), (0.84, 523.25))
            partials = "+".join(
                f"gte(t,{at})*exp(-3.2*(t-{at}))*(0.55*sin(2*PI*{f}*(t-{at}))"
                f"+0.22*sin(2*PI*{2 * f}*(t-{at}))+0.08*sin(2*PI*{3 * f}*(t-{at})))"
                for at, f in notes
            )
            with atomic_path(raw) as tmp:
                run_ffmpeg(
                    ["-y", "-f", "lavfi", "-i", f"aevalsrc='0.5*({partials})':s=44100:d=2.4",
                     "-ac", "1", "-c:a", "pcm_s16le", "-f", "wav", str(tmp)],
                    what=N_("生成提示音"),
                )  # fmt: skip
        speech = Speech(raw, 2.4, ())
        target = PROFILES[profile].integrated_lufs + CHIME_TARGET_OFFSET_LU
        return self._master_cached(
            speech, source_key, profile, EngineName.TONE, None, 0, "", None, target=target
        )

    def remaster(self, clip: Clip, profile: Profile | str) -> Clip:
        """The same speech mastered for another profile (e.g. a voice note of a loudspeaker clip).

        Raises:
            SynthesisError: the clip's raw speech is no longer in the cache.
        """
        profile = Profile(profile)
        if profile is clip.profile:
            return clip
        if clip.engine is EngineName.TONE:
            return self.chime(profile)
        for suffix in (".mp3", ".wav", ".upload"):
            raw = self._speech_path(clip.source_key, suffix)
            if raw.exists():
                break
        else:
            raise SynthesisError(N_("缓存中找不到这段音频的原始语音，请重新生成"))
        meta = json.loads(self._speech_path(clip.source_key, ".json").read_text())
        speech = Speech(raw, float(meta["duration"]), tuple(Cue(*c) for c in meta["cues"]))
        return self._master_cached(
            speech, clip.source_key, profile, clip.engine, clip.voice, clip.rate,
            clip.spoken_text, clip.fallback_reason, model=clip.neural_model,
        )  # fmt: skip

    def voice_note(self, clip: Clip) -> Clip:
        """The clip as an OGG/Opus voice note (48 kHz mono, 32 kbit/s) for Telegram."""
        return self.remaster(clip, Profile.VOICE_NOTE)

    def get_clip(self, key: str) -> Clip | None:
        """A clip from the cache by key, or ``None`` if it is not (or no longer) there."""
        if not (len(key) == 64 and all(c in "0123456789abcdef" for c in key)):
            return None
        meta = self._clip_path(key, ".json")
        if not meta.exists():
            return None
        clip = Clip.from_dict(json.loads(meta.read_text(encoding="utf-8")))
        # Paths follow the cache directory, which may have moved since the clip was made.
        clip = dataclasses.replace(
            clip,
            path=self._clip_path(key, PROFILES[clip.profile].suffix),
            srt_path=self._clip_path(key, ".srt"),
            vtt_path=self._clip_path(key, ".vtt"),
        )
        if not clip.path.exists():
            return None
        with contextlib.suppress(OSError):
            os.utime(meta)  # "last used", for prune()
        return clip

    def prune(
        self,
        *,
        keep: Iterable[str] = (),
        unused_for_s: float = 90 * 86_400,
        now: float | None = None,
    ) -> int:
        """Delete clips not used for ``unused_for_s`` seconds, and speech no clip needs.

        A clip counts as used whenever :meth:`render` or :meth:`get_clip` returns it.
        Clips whose key is in ``keep`` (e.g. every clip a stored revision points to) and
        the raw speech they were made from are never deleted.

        Args:
            keep: clip keys to keep regardless of age.
            unused_for_s: age in seconds after which an unused clip goes.
            now: the current time (``time.time()``), injected in tests.

        Returns:
            The number of clips deleted.
        """
        cutoff = (time.time() if now is None else now) - unused_for_s
        keep = set(keep)
        needed: set[str] = set()
        deleted = 0
        for meta in sorted((self.cache_dir / "clips").glob("*/*.json")):
            key = meta.stem
            try:
                source = json.loads(meta.read_text(encoding="utf-8"))["source_key"]
                used = meta.stat().st_mtime
            except (OSError, ValueError, KeyError):
                continue
            if key in keep or used >= cutoff:
                needed.add(source)
                continue
            meta.unlink(missing_ok=True)  # first: the clip stops existing for readers
            for other in meta.parent.glob(f"{key}.*"):
                other.unlink(missing_ok=True)
            deleted += 1
        for meta in sorted((self.cache_dir / "speech").glob("*/*.json")):
            with contextlib.suppress(OSError):
                if meta.stem not in needed and meta.stat().st_mtime < cutoff:
                    for other in meta.parent.glob(f"{meta.stem}.*"):
                        other.unlink(missing_ok=True)
        return deleted

    # -- internals ---------------------------------------------------------------------

    def _speech_path(self, key: str, suffix: str) -> Path:
        return self.cache_dir / "speech" / key[:2] / f"{key}{suffix}"

    def _clip_path(self, key: str, suffix: str) -> Path:
        return self.cache_dir / "clips" / key[:2] / f"{key}{suffix}"

    def _speech_key(
        self, engine: str, spoken: str, voice: Voice, rate: int, model: str | None = None
    ) -> str:
        if engine == EngineName.NEURAL:
            # The model's files and the voice's speaker decide (one-speaker models speak
            # every voice alike, so those voices share their speech).
            return _key(
                {
                    "engine": engine,
                    "model": model,
                    "speaker": self.neural.model().speaker_for(voice).sid,
                    "rate": rate,
                    "text": spoken,
                }
            )
        # Offline, whitelisted voices that share an eSpeak variant share their speech.
        voice_id = voice.name if engine == EngineName.EDGE else voice.espeak
        return _key({"engine": engine, "voice": voice_id, "rate": rate, "text": spoken})

    def _clip_key(self, source_key: str, profile: Profile, target: float | None) -> str:
        return _key({"source": source_key, "profile": str(profile), "target": target})

    def _edge_speech_cached(self, spoken: str, voice: Voice, rate: int) -> bool:
        key = self._speech_key(EngineName.EDGE, spoken, voice, rate)
        return self._speech_path(key, ".json").exists() and self._speech_path(key, ".mp3").exists()

    def _edge_cooling_down(self) -> Reason | None:
        """The reason edge-tts failed if that was within the cool-down, else ``None``."""
        with self._state_lock:
            if self._clock() < self._edge_down_until:
                return self._edge_down_reason
        return None

    def _render_with(
        self,
        engine: EdgeEngine | OfflineEngine | NeuralEngine,
        spoken: str,
        voice: Voice,
        rate: int,
        profile: Profile,
        why: Reason | None,
    ) -> Clip:
        reason = None if why is None else why.dumps()
        model = engine.model().identity if isinstance(engine, NeuralEngine) else None
        source_key = self._speech_key(engine.name, spoken, voice, rate, model)
        cached = self.get_clip(self._clip_key(source_key, profile, None))
        if cached is not None:
            return _with_reason(cached, reason)
        speech = self._speech(engine, source_key, spoken, voice, rate)
        try:
            return self._master_cached(
                speech,
                source_key,
                profile,
                EngineName(engine.name),
                voice.name,
                rate,
                spoken,
                reason,
                model=model,
            )
        except SilentAudioError as exc:
            raise SilentSpeechError(
                N_("这段文字读出来没有声音（例如只有字母或符号），请改写成可以朗读的文字后重新提交")
            ) from exc
        except MasteringError as exc:
            raise SynthesisError(N_("语音合成结果无法使用：{detail}"), detail=exc.message) from exc

    def _speech(
        self,
        engine: EdgeEngine | OfflineEngine | NeuralEngine,
        key: str,
        spoken: str,
        voice: Voice,
        rate: int,
    ) -> Speech:
        suffix = ".mp3" if engine.name == EngineName.EDGE else ".wav"
        raw = self._speech_path(key, suffix)
        meta_path = self._speech_path(key, ".json")
        if raw.exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            return Speech(raw, float(meta["duration"]), tuple(Cue(*c) for c in meta["cues"]))
        sentences = split_sentences(spoken, SENTENCE_CHARS)
        chunks = pack(sentences, EDGE_CHUNK_CHARS) if engine.name == EngineName.EDGE else sentences
        speech = engine.synthesize(chunks, voice, rate, raw)
        if self._on_synthesis is not None:
            self._on_synthesis(engine.name, speech)
        meta = {
            "duration": speech.duration,
            "cues": [[c.start, c.end, c.text] for c in speech.cues],
        }
        write_atomic(meta_path, json.dumps(meta, ensure_ascii=False))
        return speech

    def _master_cached(
        self,
        speech: Speech,
        source_key: str,
        profile: Profile,
        engine: EngineName,
        voice: str | None,
        rate: int,
        spoken: str,
        reason: str | None,
        *,
        target: float | None = None,
        model: str | None = None,
    ) -> Clip:
        key = self._clip_key(source_key, profile, target)
        cached = self.get_clip(key)
        if cached is not None:
            return _with_reason(cached, reason)
        path = self._clip_path(key, PROFILES[profile].suffix)
        mastered = master(speech.path, path, profile, target_lufs=target)
        cues = shift_cues(speech.cues, mastered.shift, limit=mastered.duration)
        srt_path, vtt_path = self._clip_path(key, ".srt"), self._clip_path(key, ".vtt")
        write_atomic(srt_path, to_srt(cues))
        write_atomic(vtt_path, to_vtt(cues))
        clip = Clip(
            key=key,
            path=path,
            profile=profile,
            duration=mastered.duration,
            engine=engine,
            voice=voice,
            rate=rate,
            spoken_text=spoken,
            fallback_reason=None,
            srt_path=srt_path,
            vtt_path=vtt_path,
            source_key=source_key,
            neural_model=model,
        )
        write_atomic(self._clip_path(key, ".json"), json.dumps(clip.to_dict(), ensure_ascii=False))
        return _with_reason(clip, reason)


def _with_reason(clip: Clip, reason: str | None) -> Clip:
    if clip.fallback_reason == reason:
        return clip
    return dataclasses.replace(clip, fallback_reason=reason)


def _check_recording(path: Path) -> float:
    """Decode an upload and check it; returns its duration in seconds.

    Raises:
        RecordingError: with a message for the officer.
    """
    rate = 16_000
    try:
        pcm = decode_pcm(path, sample_rate=rate, what=N_("读取录音"))
    except MasteringError as exc:
        raise RecordingError(
            N_("无法识别的录音文件：请上传 MP3、M4A、WAV、OGG 等常见音频格式")
        ) from exc
    duration = len(pcm) / 2 / rate
    if duration == 0:
        raise RecordingError(N_("文件中没有音频内容：请上传录音文件"))
    if duration < MIN_RECORDING_S:
        raise RecordingError(
            N_("录音太短（{seconds} 秒），至少需要 {least} 秒"),
            seconds=f"{duration:.1f}",
            least=f"{MIN_RECORDING_S:.0f}",
        )
    if duration > MAX_RECORDING_S:
        raise RecordingError(
            N_("录音太长（{minutes} 分钟），单条最长 {most} 分钟"),
            minutes=f"{duration / 60:.1f}",
            most=f"{MAX_RECORDING_S / 60:.0f}",
        )
    window = rate // 20 * 2
    with warnings.catch_warnings():
        # audioop is deprecated in 3.11–3.12 and comes from audioop-lts on 3.13.
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop

        loudest = max(audioop.rms(pcm[i : i + window], 2) for i in range(0, len(pcm), window))
    if loudest < _SILENCE_RMS:
        raise RecordingError(N_("录音中没有声音（全是静音），请检查麦克风后重新录制"))
    return round(duration, 3)


def export_file(
    clip: Clip, destination: Path | str, *, title: str | None = None, date: str = ""
) -> Path:
    """Copy a clip's audio to ``destination`` atomically (the CLI's ``-o``).

    Args:
        clip: the clip.
        destination: the file to write.
        title: for an MP3 clip, an ID3 tag with this title (and ``date``) is added to the
            copy; the cached clip itself stays untagged so it can still be joined.
        date: ISO date for the tag.

    Returns:
        ``destination`` as a path.
    """
    target = Path(destination)
    with atomic_path(target) as tmp:
        if title and clip.profile is Profile.LOUDSPEAKER:
            tmp.write_bytes(
                id3v2_tag(title=title, artist="大喇叭", date=date) + clip.path.read_bytes()
            )
        else:
            shutil.copyfile(clip.path, tmp)
    return target
