"""A loopback WebSocket server that speaks edge-tts's protocol, with injectable faults.

It drives the real ``edge_tts`` client: handshake with the query string edge-tts builds,
``speech.config`` and SSML requests, ``turn.start``, binary ``audio`` frames (real MP3,
24 kHz, 48 kbit/s CBR, mono, as the service sends), boundary metadata and ``turn.end``.

Use it as a context manager (or :func:`serving_edge_tts`, which also patches edge-tts);
it runs its own event loop in a thread, so synchronous and asynchronous tests can both
use it::

    with FakeEdgeServer() as server:
        monkeypatch.setattr(edge_tts.communicate, "WSS_URL", server.url)
        ...
        server.fail(Fault.FORBIDDEN, times=2)   # the next two handshakes get 403
        with server.refusing():                 # nothing listens: connection refused
            ...
        assert server.requests[-1].text == "…"

Audio is a 220 Hz tone burst per character (0.192 s) and 0.288 s of silence after each
sentence, so durations, loudness and silence trimming can be checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import re
import subprocess
import threading
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from xml.sax.saxutils import escape

from aiohttp import WSMsgType, web

from tests.fakes.loopback import LoopbackServer

__all__ = ["Fault", "FakeEdgeServer", "SynthesisRequest", "serving_edge_tts"]

_FRAME_BYTES = 144  # MPEG-2 Layer III, 24 kHz, 48 kbit/s: every frame 144 bytes
_FRAME_SECONDS = 576 / 24_000
CHAR_FRAMES = 8
CHAR_SECONDS = CHAR_FRAMES * _FRAME_SECONDS
"""Audio per non-space character: 0.192 s (about the pace of a neural voice)."""
PAUSE_FRAMES = 12
SENTENCE_PAUSE_SECONDS = PAUSE_FRAMES * _FRAME_SECONDS
"""Silence after each sentence: 0.288 s."""
_SENTENCE = re.compile(r"[^。！？；!?;\n]+[。！？；!?;\n]*")


class Fault(enum.Enum):
    """A failure the server can inject into the next connections."""

    FORBIDDEN = "403"
    """Refuse the WebSocket handshake with HTTP 403 (edge-tts retries this once itself)."""
    CUT = "cut"
    """Send about half of the audio, then close the socket without ``turn.end``."""
    SLOW = "slow"
    """Wait :attr:`FakeEdgeServer.slow_seconds` before answering (client timeouts)."""
    EMPTY = "empty"
    """Answer ``turn.start`` and ``turn.end`` with no audio in between."""
    RESET = "reset"
    """Accept the TCP connection and drop it before the handshake completes."""
    GARBAGE = "garbage"
    """Answer with a malformed ``audio.metadata`` message (broken JSON)."""


@dataclass
class SynthesisRequest:
    """One SSML request as the server understood it."""

    voice: str
    rate: str
    volume: str
    pitch: str
    text: str
    ssml: str
    query: dict[str, str]
    config: dict = field(default_factory=dict)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _frames(expr: str, seconds: float) -> list[bytes]:
    """MP3 frames (24 kHz, 48 kbit/s CBR, mono, bit reservoir off) of an aevalsrc expression."""
    cmd = [
        _ffmpeg(), "-v", "error", "-f", "lavfi", "-i",
        f"aevalsrc='{expr}':s=24000:d={seconds}", "-ac", "1", "-ar", "24000",
        "-c:a", "libmp3lame", "-b:a", "48k", "-reservoir", "0", "-write_xing", "0",
        "-id3v2_version", "0", "-write_id3v1", "0", "-f", "mp3", "-",
    ]  # fmt: skip
    data = subprocess.run(cmd, capture_output=True, check=True).stdout
    return [
        data[i : i + _FRAME_BYTES] for i in range(0, len(data) - _FRAME_BYTES + 1, _FRAME_BYTES)
    ]


def _syllable() -> list[bytes]:
    """One character: a 220 Hz tone with harmonics for 0.15 s, then near silence (8 frames)."""
    period = CHAR_FRAMES * _FRAME_SECONDS
    voice = "(0.35*sin(2*PI*220*t)+0.2*sin(2*PI*440*t)+0.1*sin(2*PI*880*t))"
    frames = _frames(f"lt(mod(t,{period}),0.15)*{voice}", period * 6)
    # Frames from the middle: past the encoder's start-up, each self-contained.
    return frames[2 * CHAR_FRAMES : 3 * CHAR_FRAMES]


def _pause() -> bytes:
    return b"".join(_frames("0", 1.0)[4 : 4 + PAUSE_FRAMES])


class FakeEdgeServer:
    """The fake service. Start it with ``with`` or :meth:`start`; stop with :meth:`stop`.

    Args:
        host: address to bind (loopback).
        port: 0 picks a free port.
        slow_seconds: how long :attr:`Fault.SLOW` stalls.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, slow_seconds: float = 3.0) -> None:
        self.host = host
        self.port = port
        self.slow_seconds = slow_seconds
        self.requests: list[SynthesisRequest] = []
        self.connections = 0
        self.faults_served: list[Fault] = []
        self._faults: deque[Fault] = deque()
        self._sticky: Fault | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._syllable: list[bytes] = []
        self.char_frames = CHAR_FRAMES
        """Frames per character (1–8, 24 ms each); lower it for fast tests of long texts."""
        self._pause_audio: bytes | None = None

    # -- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The value for ``edge_tts.communicate.WSS_URL`` (or ``DALABA_EDGE_WSS_URL``)."""
        return (
            f"ws://{self.host}:{self.port}/consumer/speech/synthesize/readaloud/edge/v1"
            "?TrustedClientToken=6A5AA1D4EAFF4E9FB37E23D68491D6F4"
        )

    def start(self) -> FakeEdgeServer:
        """Start serving in a background thread; returns self once the port is bound."""
        self._syllable = _syllable()
        self._pause_audio = _pause()
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._start())
            except BaseException as exc:  # reported to the starting thread
                errors.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._runner.cleanup() if self._runner else asyncio.sleep(0))
            LoopbackServer._finish(loop)

        self._thread = threading.Thread(target=run, name="fake-edge-tts", daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            raise errors[0]
        return self

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/consumer/speech/synthesize/readaloud/edge/v1", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        self.port = self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> FakeEdgeServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, coro) -> None:  # type: ignore[no-untyped-def]
        assert self._loop is not None, "server not started"
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # -- faults ----------------------------------------------------------------------

    def fail(self, fault: Fault, times: int | None = 1) -> None:
        """Inject ``fault`` into the next ``times`` connections (``None``: until :meth:`heal`)."""
        with self._lock:
            if times is None:
                self._sticky = fault
            else:
                self._faults.extend([fault] * times)

    def heal(self) -> None:
        """Forget pending faults, restore the normal pace, listen again if stopped."""
        with self._lock:
            self._faults.clear()
            self._sticky = None
        self.char_frames = CHAR_FRAMES
        self.resume_listening()

    def stop_listening(self) -> None:
        """Close the listening socket: new connections are refused by the kernel."""
        if self._site is not None:
            self._call(self._site.stop())
            self._site = None

    def resume_listening(self) -> None:
        """Listen again on the same port after :meth:`stop_listening`."""
        if self._site is None and self._runner is not None:

            async def restart() -> None:
                assert self._runner is not None
                self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
                await self._site.start()

            self._call(restart())

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Within the block, connections are refused (``ECONNREFUSED``)."""
        self.stop_listening()
        try:
            yield
        finally:
            self.resume_listening()

    def _next_fault(self) -> Fault | None:
        with self._lock:
            fault = self._faults.popleft() if self._faults else self._sticky
            if fault is not None:
                self.faults_served.append(fault)
            return fault

    # -- protocol --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.connections += 1
        fault = self._next_fault()
        if fault is Fault.FORBIDDEN:
            return web.Response(status=403, headers={"Date": formatdate(usegmt=True)})
        if fault is Fault.RESET:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        for name in ("TrustedClientToken", "ConnectionId", "Sec-MS-GEC", "Sec-MS-GEC-Version"):
            if name not in request.query:
                return web.Response(status=400, text=f"missing {name}")
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        config: dict = {}
        async for message in ws:
            if message.type != WSMsgType.TEXT:
                continue
            headers, body = _split_text(message.data)
            if headers.get("Path") == "speech.config":
                config = json.loads(body)
            elif headers.get("Path") == "ssml":
                try:
                    await self._answer(
                        ws, request, config, headers.get("X-RequestId", ""), body, fault
                    )
                except ConnectionResetError:  # the client gave up (timeouts)
                    return ws
                if fault is Fault.CUT:
                    break
        await ws.close()
        return ws

    async def _answer(
        self,
        ws: web.WebSocketResponse,
        request: web.Request,
        config: dict,
        request_id: str,
        ssml: str,
        fault: Fault | None,
    ) -> None:
        try:
            root = ET.fromstring(ssml)
        except ET.ParseError:
            await ws.close(code=1007, message=b"invalid SSML")
            return
        ns = "{http://www.w3.org/2001/10/synthesis}"
        voice = root.find(f"{ns}voice")
        prosody = root.find(f".//{ns}prosody")
        text = "".join(prosody.itertext()) if prosody is not None else ""
        self.requests.append(
            SynthesisRequest(
                voice=voice.get("name", "") if voice is not None else "",
                rate=prosody.get("rate", "") if prosody is not None else "",
                volume=prosody.get("volume", "") if prosody is not None else "",
                pitch=prosody.get("pitch", "") if prosody is not None else "",
                text=text,
                ssml=ssml,
                query=dict(request.query),
                config=config,
            )
        )
        if fault is Fault.SLOW:
            await asyncio.sleep(self.slow_seconds)
        request_id = request_id or uuid.uuid4().hex
        await ws.send_str(
            _text_message(request_id, "turn.start", {"context": {"serviceTag": "fake"}})
        )
        if fault is Fault.EMPTY:
            await ws.send_str(_text_message(request_id, "turn.end", {}))
            return
        if fault is Fault.GARBAGE:
            await ws.send_str(
                f'X-RequestId:{request_id}\r\nPath:audio.metadata\r\n\r\n{{"Metadata": [{{'
            )
            return
        options = config.get("context", {}).get("synthesis", {}).get("audio", {})
        word = options.get("metadataoptions", {}).get("wordBoundaryEnabled") == "true"
        audio = bytearray()
        ticks = 0
        for sentence in _SENTENCE.findall(text) or [text]:
            spoken = [ch for ch in sentence if not ch.isspace()]
            char_audio = b"".join(self._syllable[: self.char_frames])
            seconds = len(spoken) * self.char_frames * _FRAME_SECONDS
            meta = {
                "Type": "WordBoundary" if word else "SentenceBoundary",
                "Data": {
                    "Offset": ticks,
                    "Duration": int(seconds * 10_000_000),
                    "text": {
                        "Text": escape(sentence.strip()),
                        "Length": len(sentence.strip()),
                        "BoundaryType": "WordBoundary" if word else "SentenceBoundary",
                    },
                },
            }
            await ws.send_str(_text_message(request_id, "audio.metadata", {"Metadata": [meta]}))
            sentence_audio = char_audio * len(spoken) + self._pause_audio  # type: ignore[operator]
            ticks += round(len(sentence_audio) * 8 / 48_000 * 10_000_000)
            audio += sentence_audio
        if fault is Fault.CUT:
            audio = audio[: max(_FRAME_BYTES, len(audio) // 2 // _FRAME_BYTES * _FRAME_BYTES)]
        for start in range(0, len(audio), _FRAME_BYTES * 8):
            await ws.send_bytes(
                _audio_message(request_id, bytes(audio[start : start + _FRAME_BYTES * 8]))
            )
        if fault is Fault.CUT:
            return
        await ws.send_bytes(_audio_message(request_id, b"", content_type=False))
        await ws.send_str(_text_message(request_id, "turn.end", {}))

    def expected_seconds(self, text: str) -> float:
        """Audio length the server sends for ``text`` (as received, after SSML unescaping)."""
        total = 0.0
        for sentence in _SENTENCE.findall(text) or [text]:
            chars = sum(1 for ch in sentence if not ch.isspace())
            total += chars * self.char_frames * _FRAME_SECONDS + SENTENCE_PAUSE_SECONDS
        return total


def _split_text(data: str) -> tuple[dict[str, str], str]:
    head, _, body = data.partition("\r\n\r\n")
    headers = {}
    for line in head.split("\r\n"):
        key, _, value = line.partition(":")
        headers[key] = value
    return headers, body


def _text_message(request_id: str, path: str, body: dict) -> str:
    return (
        f"X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n{json.dumps(body, ensure_ascii=False)}"
    )


def _audio_message(request_id: str, data: bytes, content_type: bool = True) -> bytes:
    header = f"X-RequestId:{request_id}\r\n"
    if content_type:
        header += "Content-Type:audio/mpeg\r\n"
    header += "X-StreamId:fake\r\nPath:audio"
    encoded = header.encode()
    return (len(encoded) + 2).to_bytes(2, "big") + encoded + b"\r\n" + data


@contextlib.contextmanager
def serving_edge_tts(**kwargs: object) -> Iterator[FakeEdgeServer]:
    """Start a :class:`FakeEdgeServer` and point ``edge_tts.communicate.WSS_URL`` at it.

    For tests outside ``tests/audio`` (the scheduler's, the bot's)::

        with serving_edge_tts() as server:
            ...  # or pass server.url as DALABA_EDGE_WSS_URL / Renderer(edge_wss_url=...)
    """
    import edge_tts.communicate

    saved = edge_tts.communicate.WSS_URL
    with FakeEdgeServer(**kwargs) as server:  # type: ignore[arg-type]
        edge_tts.communicate.WSS_URL = server.url
        try:
            yield server
        finally:
            edge_tts.communicate.WSS_URL = saved
