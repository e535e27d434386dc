"""Speech engines behind one small interface: edge-tts (online) and eSpeak NG (offline).

An engine turns a list of text chunks into one raw audio file plus subtitle cues. It
does no normalisation and no mastering; :class:`audio.render.Renderer` chooses the
engine, caches the result and masters it.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import ctypes
import logging
import math
import shutil
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from audio.errors import N_, EdgeError, OfflineError, Reason
from audio.ffmpeg import atomic_path
from audio.subtitles import Cue
from audio.voices import Voice

__all__ = ["EdgeEngine", "OfflineEngine", "RetryPolicy", "Speech", "SpeechEngine", "pcm_speech"]

log = logging.getLogger(__name__)

EDGE_BITRATE_BPS = 48_000
"""edge-tts always asks for ``audio-24khz-48kbitrate-mono-mp3`` (constant bitrate)."""


@dataclass(frozen=True)
class Speech:
    """Raw engine output.

    Attributes:
        path: the audio file (MP3 from edge-tts, WAV from eSpeak NG).
        duration: its length in seconds.
        cues: one cue per sentence, timed against ``path``.
        compute_s: seconds the engine computed, when it measures that (its real-time
            factor is ``compute_s / duration``).
    """

    path: Path
    duration: float
    cues: tuple[Cue, ...]
    compute_s: float | None = None


class SpeechEngine(Protocol):
    """What the renderer needs from an engine."""

    name: str

    def synthesize(self, chunks: Sequence[str], voice: Voice, rate: int, out: Path) -> Speech:
        """Speak ``chunks`` in order into ``out`` (written atomically)."""
        ...


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try edge-tts before giving up (and, in auto mode, falling back).

    Attributes:
        attempts: tries per chunk (edge-tts itself retries a 403 once inside a try).
        backoff_s: delay before the second try; doubled for each further try.
        max_backoff_s: ceiling of that delay.
        timeout_s: limit for one try of one chunk, connection included.
        cooldown_s: after a failure, the auto mode skips edge-tts for this long, so a
            batch of renders during an outage does not wait through every retry.
    """

    attempts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 8.0
    timeout_s: float = 30.0
    cooldown_s: float = 120.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("attempts must be at least 1")
        if min(self.backoff_s, self.max_backoff_s, self.cooldown_s) < 0 or self.timeout_s <= 0:
            raise ValueError("delays must not be negative and the timeout must be positive")

    def delay(self, failed_attempts: int) -> float:
        """Seconds to wait after ``failed_attempts`` failures."""
        return min(self.max_backoff_s, self.backoff_s * 2.0 ** (failed_attempts - 1))


_T = TypeVar("_T")


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run a coroutine to completion from synchronous code, even inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _proportional_cues(chunks: Sequence[str], start: float, duration: float) -> list[Cue]:
    """Share ``duration`` among ``chunks`` by length: the cue timing when no boundaries came."""
    total = sum(len(c) for c in chunks) or 1
    cues = []
    at = start
    for chunk in chunks:
        length = duration * len(chunk) / total
        cues.append(Cue(at, at + length, chunk))
        at += length
    return cues


_url_lock = threading.Lock()


class EdgeEngine:
    """Microsoft's neural voices through edge-tts, with bounded retries.

    Args:
        wss_url: replaces ``edge_tts.communicate.WSS_URL`` (same form, query string
            included) while this engine synthesises; ``None`` keeps edge-tts's own.
        retry: retry policy.
        sleep: called with the backoff delay between tries (injected in tests).
    """

    name = "edge"

    def __init__(
        self,
        wss_url: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if wss_url is not None and not wss_url.startswith(("ws://", "wss://")):
            raise ValueError("wss_url must start with ws:// or wss://")
        if wss_url is not None and "?" not in wss_url:
            raise ValueError("wss_url needs its query string (…/edge/v1?TrustedClientToken=…)")
        self.wss_url = wss_url
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def synthesize(self, chunks: Sequence[str], voice: Voice, rate: int, out: Path) -> Speech:
        """Speak each chunk with edge-tts and join the MP3 streams.

        Raises:
            EdgeError: a chunk failed on every try; ``reason`` says how.
        """
        audio = bytearray()
        cues: list[Cue] = []
        for chunk in chunks:
            start = len(audio) * 8 / EDGE_BITRATE_BPS
            data, chunk_cues = self._chunk_with_retries(chunk, voice, rate)
            duration = len(data) * 8 / EDGE_BITRATE_BPS
            if chunk_cues:
                cues += [Cue(start + c.start, start + c.end, c.text) for c in chunk_cues]
            else:
                cues += _proportional_cues([chunk], start, duration)
            audio += data
        with atomic_path(out) as tmp:
            tmp.write_bytes(bytes(audio))
        return Speech(out, len(audio) * 8 / EDGE_BITRATE_BPS, tuple(cues))

    def _chunk_with_retries(self, chunk: str, voice: Voice, rate: int) -> tuple[bytes, list[Cue]]:
        reason = Reason("")
        for attempt in range(1, self.retry.attempts + 1):
            try:
                return _run(self._chunk(chunk, voice, rate))
            except Exception as exc:  # classified below; anything else is a bug and re-raised
                classified = _classify(exc)
                if classified is None:
                    raise
                reason = classified
                log.warning(
                    "edge-tts attempt %d/%d failed: %s", attempt, self.retry.attempts, reason
                )
                if attempt < self.retry.attempts:
                    self._sleep(self.retry.delay(attempt))
        raise EdgeError(
            N_("在线语音合成失败（已尝试 {attempts} 次）：{reason}"),
            reason=reason,
            attempts=self.retry.attempts,
        )

    async def _chunk(self, chunk: str, voice: Voice, rate: int) -> tuple[bytes, list[Cue]]:
        import edge_tts
        import edge_tts.communicate

        timeout = self.retry.timeout_s
        whole = max(1, math.ceil(timeout))
        communicate = edge_tts.Communicate(
            chunk,
            voice.name,
            rate=f"{rate:+d}%",
            boundary="SentenceBoundary",
            connect_timeout=whole,
            receive_timeout=whole,
        )
        audio = bytearray()
        cues: list[Cue] = []

        async def collect() -> None:
            async for message in communicate.stream():
                if message["type"] == "audio":
                    audio.extend(message["data"])
                elif message["type"] == "SentenceBoundary":
                    start = message["offset"] / 10_000_000
                    cues.append(
                        Cue(start, start + message["duration"] / 10_000_000, message["text"])
                    )

        if self.wss_url is None:
            await asyncio.wait_for(collect(), timeout)
        else:
            # edge-tts reads the module global when it connects; hold the lock so two
            # engines with different URLs in one process never cross.
            with _url_lock:
                # WSS_URL is imported into edge_tts.communicate, not re-exported by it.
                saved = edge_tts.communicate.WSS_URL  # type: ignore[attr-defined]
                edge_tts.communicate.WSS_URL = self.wss_url  # type: ignore[attr-defined]
                try:
                    await asyncio.wait_for(collect(), timeout)
                finally:
                    edge_tts.communicate.WSS_URL = saved  # type: ignore[attr-defined]
        # edge-tts ends its stream quietly when the socket closes before "turn.end";
        # the bytes of an unfinished turn are then still counted as pending.
        if communicate.state.get("chunk_audio_bytes", 0):
            raise _Truncated(f"stream ended before turn.end after {len(audio)} bytes")
        seconds = len(audio) * 8 / EDGE_BITRATE_BPS
        spoken_chars = sum(1 for ch in chunk if ch.isalnum())
        if seconds < 0.03 * spoken_chars:
            raise _Truncated(f"{seconds:.2f} s of audio for {spoken_chars} characters")
        return bytes(audio), cues


class _Truncated(Exception):
    """edge-tts delivered less audio than the text needs."""


def _classify(exc: BaseException) -> Reason | None:
    """A short reason for a recoverable edge-tts failure, or None for a bug."""
    import aiohttp
    from edge_tts import exceptions as edge_exc

    detail = f"{type(exc).__name__}: {exc}".strip(" :")[:160]
    if isinstance(exc, _Truncated):
        return Reason.of(N_("音频流中断（{detail}）"), detail=str(exc))
    if isinstance(exc, aiohttp.ClientResponseError):
        if exc.status == 403:
            return Reason(N_("服务拒绝访问（HTTP 403）"))
        return Reason.of(N_("服务返回 HTTP {status}"), status=exc.status)
    if isinstance(exc, aiohttp.ClientConnectorError | ConnectionRefusedError):
        return Reason.of(N_("无法连接服务（{detail}）"), detail=detail)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return Reason.of(N_("连接或接收超时（{detail}）"), detail=detail)
    if isinstance(exc, edge_exc.NoAudioReceived):
        return Reason.of(N_("没有收到音频（{detail}）"), detail=detail)
    if isinstance(exc, edge_exc.EdgeTTSException):
        return Reason.of(N_("服务响应异常（{detail}）"), detail=detail)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Reason.of(N_("连接中断（{detail}）"), detail=detail)
    if isinstance(exc, ValueError | KeyError):
        # edge-tts parses the service's headers and JSON without checking them first.
        return Reason.of(N_("服务响应格式异常（{detail}）"), detail=detail)
    return None


class _ESpeak:
    """The eSpeak NG shared library bundled by espeakng-loader, used through ctypes.

    eSpeak NG keeps state between syntheses that no API call resets: static variables of
    its wave generator (gain control, cycle counters) and a noise generator seeded from
    the clock when it initialises (the breathy variants such as ``cmn+f3`` use it). The
    same text after other texts, or in another process, gave other bytes, and the cache
    is content-addressed. So every :meth:`speak` gets a pristine library: loaded,
    initialised, seeded with :attr:`SEED`, used once, terminated and unloaded, which
    resets its static data (3–4 ms more per sentence: 10–13 ms against 7–10 ms for five
    seconds of speech; a worker process per synthesis would cost more and still need
    the seed). It is loaded
    from a private copy of the file: another user of espeakng-loader in the process
    holding the shared library open would otherwise keep it, and its state, loaded.

    The library is not re-entrant: every call holds ``lock``.
    """

    lock = threading.Lock()
    _instance: _ESpeak | None = None

    AUDIO_OUTPUT_SYNCHRONOUS = 2
    POS_CHARACTER = 1
    CHARS_UTF8 = 1
    RATE = 1
    DEFAULT_WPM = 175
    SEED = 1

    def __init__(self) -> None:
        import espeakng_loader

        self._path = _private_copy(Path(espeakng_loader.get_library_path()))
        self._data_path = espeakng_loader.get_data_path().encode()
        self._buffer: list[bytes] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )
        # Keep a reference: the library calls it long after it was handed over.
        self._callback = callback_type(self._collect)
        lib = self._open()
        _unload(lib)
        self.sample_rate: int = self._rate

    def _open(self) -> ctypes.CDLL:
        """Load and initialise a fresh instance of the library, seeded with :attr:`SEED`."""
        lib = ctypes.CDLL(self._path)
        try:
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_Initialize.argtypes = [
                ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
            ]  # fmt: skip
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
            lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
            lib.espeak_Synth.argtypes = [
                ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
            ]  # fmt: skip
            rate = lib.espeak_Initialize(self.AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_path, 0)
            if rate <= 0:
                raise OSError(f"espeak_Initialize returned {rate}")
        except (OSError, AttributeError) as exc:
            _unload(lib)
            raise OSError(str(exc)) from exc
        self._rate = rate
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_ng_SetRandSeed(self.SEED)
        return lib

    def _collect(self, wav: Any, samples: int, _events: Any) -> int:
        if samples > 0:
            self._buffer.append(ctypes.string_at(wav, samples * 2))
        return 0

    @classmethod
    def get(cls) -> _ESpeak:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def speak(self, text: str, voice: str, rate: int) -> bytes:
        """Mono 16-bit PCM at :attr:`sample_rate` for ``text``; the caller holds ``lock``.

        Raises:
            OfflineError: the library failed to load, lacks the voice, or failed.
        """
        try:
            lib = self._open()
        except OSError as exc:
            raise _unloadable(exc) from exc
        try:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise OfflineError(N_("离线语音引擎没有发音人 {voice}"), voice=voice)
            wpm = round(self.DEFAULT_WPM * (1 + rate / 100))
            lib.espeak_SetParameter(self.RATE, wpm, 0)
            encoded = text.encode("utf-8") + b"\0"
            self._buffer = []
            status = lib.espeak_Synth(
                encoded, len(encoded), 0, self.POS_CHARACTER, 0, self.CHARS_UTF8, None, None
            )
            if status != 0:
                raise OfflineError(
                    N_("离线语音合成失败（espeak_Synth 返回 {status}）"), status=status
                )
            return b"".join(self._buffer)
        finally:
            lib.espeak_Terminate()
            _unload(lib)


def _unloadable(exc: OSError) -> OfflineError:
    return OfflineError(N_("离线语音引擎（eSpeak NG）无法加载：{detail}"), detail=str(exc))


def pcm_speech(
    out: Path,
    pcm: bytes | bytearray,
    sample_rate: int,
    cues: Sequence[Cue],
    compute_s: float | None = None,
) -> Speech:
    """Write mono 16-bit ``pcm`` at ``sample_rate`` to ``out`` as a WAV file (atomically)."""
    with atomic_path(out) as tmp, wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(bytes(pcm))
    return Speech(out, len(pcm) / 2 / sample_rate, tuple(cues), compute_s=compute_s)


def _private_copy(library: Path) -> str:
    """A copy of ``library`` in a temporary folder removed at exit: loaded only by us."""
    folder = Path(tempfile.mkdtemp(prefix="dalaba-espeak-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    copy = folder / library.name
    shutil.copyfile(library, copy)
    return str(copy)


def _unload(lib: ctypes.CDLL) -> None:
    """Close ``lib``'s handle: the last one unloads it, so its static data starts afresh."""
    import _ctypes

    close = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")  # noqa: B009
    close(lib._handle)


class OfflineEngine:
    """eSpeak NG's Mandarin voice: robotic but always available, no network needed."""

    name = "offline"

    def synthesize(self, chunks: Sequence[str], voice: Voice, rate: int, out: Path) -> Speech:
        """Speak each chunk with eSpeak NG into one WAV file, one cue per chunk.

        Raises:
            OfflineError: the library cannot be loaded or produced no audio.
        """
        with _ESpeak.lock:
            try:
                espeak = _ESpeak.get()
            except OSError as exc:
                raise _unloadable(exc) from exc
            pcm = bytearray()
            cues = []
            for chunk in chunks:
                start = len(pcm) / 2 / espeak.sample_rate
                pcm += espeak.speak(chunk, voice.espeak, rate)
                cues.append(Cue(start, len(pcm) / 2 / espeak.sample_rate, chunk))
            sample_rate = espeak.sample_rate
        if not pcm:
            raise OfflineError(N_("离线语音引擎没有生成音频"))
        return pcm_speech(out, pcm, sample_rate, cues)
