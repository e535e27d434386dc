"""A loopback HTTP server laid out like sherpa-onnx's GitHub release downloads, with faults.

``GET /<tag>/<file>`` (e.g. ``/tts-models/NAME.tar.bz2``) answers as GitHub does
(https://docs.github.com/en/repositories/releasing-projects-on-github/linking-to-releases):
a 302 redirect to the asset's storage address, which serves the bytes and honours byte
ranges as RFC 9110 §14 describes: ``Range: bytes=N-`` gets ``206 Partial Content`` with
``Content-Range: bytes N-M/SIZE``, a range past the end ``416``. A mirror
(``DALABA_MODEL_MIRROR``) keeps the same ``<tag>/<file>`` layout.

Faults (:class:`Fault`): ``CUT`` sends the headers of the whole file but closes the
connection after ``cut_at`` bytes (a dropped download), ``NO_RANGE`` ignores Range headers
(sends 200 and the whole file), ``MISSING`` answers 404. Every request is recorded with its
Range header.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Fault(enum.Enum):
    CUT = "cut"
    NO_RANGE = "no-range"
    MISSING = "missing"


@dataclass
class Request:
    path: str
    range: str | None


@dataclass
class ModelServer:
    """Serves ``files`` (``"tts-models/x.tar.bz2"`` → bytes) on 127.0.0.1."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    faults: dict[Fault, int] = field(default_factory=dict)
    cut_at: int = 0
    port: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def fail(self, fault: Fault, times: int = 1) -> None:
        self.faults[fault] = times

    def _take(self, fault: Fault) -> bool:
        left = self.faults.get(fault, 0)
        if left:
            self.faults[fault] = left - 1
        return bool(left)


def _handler(server: ModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.lstrip("/")
            server.requests.append(Request(path, self.headers.get("Range")))
            if not path.startswith("storage/"):
                if path not in server.files or server._take(Fault.MISSING):
                    self._plain(404, b"Not Found")
                    return
                self.send_response(302)
                self.send_header("Location", f"/storage/{path}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = server.files.get(path.removeprefix("storage/"))
            if body is None:
                self._plain(404, b"Not Found")
                return
            start = 0
            wanted = self.headers.get("Range")
            if wanted and not server._take(Fault.NO_RANGE):
                start = int(wanted.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            chunk = body[start:]
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if server._take(Fault.CUT):
                self.wfile.write(chunk[: server.cut_at])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(chunk)

        def _plain(self, code: int, text: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

    return Handler


@contextmanager
def serving_models(files: dict[str, bytes] | None = None) -> Iterator[ModelServer]:
    """Run a :class:`ModelServer` on a free loopback port for the duration of the block."""
    state = ModelServer(files=dict(files or {}))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
