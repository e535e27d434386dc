"""Serving files from open handles: conditional GET, byte ranges, file names, streamed ZIPs.

A body is a list of parts: byte strings and slices of files opened once. A program that is
rebuilt meanwhile is replaced by ``os.replace``; the handle still reads the old inode to the
end, so a download is always one complete version, never a mix.

The view only decides what to send and opens the files; the server sends. The response is
``wsgi.file_wrapper`` over a read-only file that presents exactly the bytes to send (the
whole body or one range): waitress then streams it from its I/O loop and the worker thread
is free at once, however slowly the client reads.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.utils import format_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from flask import Response, request
from waitress.buffers import ReadOnlyFileBasedBuffer
from werkzeug.http import parse_date, parse_etags, unquote_etag
from werkzeug.wsgi import wrap_file

# What one read returns. Waitress asks for as much as the socket's send buffer holds (MBs
# on loopback) and re-reads whatever a partial send left over: small blocks waste little.
CHUNK = 256 * 1024
# What one download sends per turn of waitress's I/O loop (see LoopBuffer).
TURN_BYTES = 256 * 1024
MAX_RANGES = 1  # multi-range requests get the full body (RFC 9110 lets a server ignore Range)
# A byte position with more digits than this is absurd (over an exabyte): such a Range is
# answered 416 rather than parsed (Python refuses ints of over 4300 digits anyway).
MAX_POSITION_DIGITS = 18


@dataclass
class Part:
    """Either literal bytes or ``length`` bytes of ``handle`` from ``offset``."""

    data: bytes = b""
    handle: BinaryIO | None = None
    offset: int = 0
    length: int = 0

    @property
    def size(self) -> int:
        return self.length if self.handle is not None else len(self.data)


@dataclass
class Body:
    """What a response sends, with the validators that identify this exact version."""

    parts: list[Part]
    etag: str
    last_modified: datetime
    handles: list[BinaryIO] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
        self.handles.clear()

    def read(self, at: int, count: int) -> bytes:
        """Up to ``count`` bytes from position ``at``, from one part (``os.pread`` for files).

        ``pread`` leaves the handle's position alone, so one handle may serve many ranges.
        """
        pos = 0
        for part in self.parts:
            end = pos + part.size
            if at < end:
                lo = at - pos
                count = min(count, part.size - lo)
                if part.handle is None:
                    return part.data[lo : lo + count]
                block = os.pread(part.handle.fileno(), count, part.offset + lo)
                if not block:
                    raise OSError("file shrank while being served")
                return block
            pos = end
        return b""


class BodyFile(io.RawIOBase):
    """Bytes ``start`` to ``stop`` (exclusive) of a body as a read-only, seekable file.

    This is what ``wsgi.file_wrapper`` wraps. Waitress's wrapper measures it with
    ``seek``/``tell``, sends at most the Content-Length, reads with ``read``, steps on with
    ``seek(n, 1)`` and closes it when done or when the client goes away; closing it closes
    the body's handles. Other servers' wrappers read it to its end, which is the range's end.
    """

    def __init__(
        self, body: Body, start: int, stop: int, on_close: Callable[[int, int], None] | None = None
    ) -> None:
        super().__init__()
        self.body, self.start, self.length = body, start, stop - start
        self.pos = 0
        # Told (start, bytes sent) once at close. Waitress peeks with read + seek back and
        # steps on with seek(n, SEEK_CUR) only for what the socket took; other servers read
        # through: either way the position at close is what went out.
        self.on_close = on_close

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self.pos = base + offset
        return self.pos

    def read(self, size: int | None = -1) -> bytes:
        """At most ``size`` bytes, and at most CHUNK at a time (a short read is allowed)."""
        if size is None or size < 0:
            return self.readall()
        left = self.length - self.pos
        if left <= 0 or size == 0:
            return b""
        data = self.body.read(self.start + self.pos, min(size, left, CHUNK))
        self.pos += len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.body.close()
            if self.on_close is not None:
                self.on_close(self.start, min(self.pos, self.length))
        super().close()


def open_file(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open once and stat the handle (not the path): validators describe what is read."""
    handle = path.open("rb")
    try:
        return handle, os.fstat(handle.fileno())
    except OSError:
        handle.close()
        raise


def file_etag(st: os.stat_result) -> str:
    # A rebuild writes a new inode (tmp + os.replace) and files are never edited in place,
    # so inode, mtime and size identify the bytes: a strong validator without hashing.
    return f'"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"'


def file_body(path: Path) -> Body:
    handle, st = open_file(path)
    return Body(
        parts=[Part(handle=handle, offset=0, length=st.st_size)],
        etag=file_etag(st),
        last_modified=datetime.fromtimestamp(st.st_mtime, UTC),
        handles=[handle],
    )


def bytes_body(data: bytes, last_modified: datetime) -> Body:
    return Body(
        parts=[Part(data=data)],
        etag='"' + hashlib.sha256(data).hexdigest()[:32] + '"',
        last_modified=last_modified,
    )


# --- Content-Disposition ----------------------------------------------------------------------

_UNSAFE_ASCII = re.compile(r"[^A-Za-z0-9._-]+")


def content_disposition(filename: str, fallback: str, *, attachment: bool = True) -> str:
    """RFC 6266 header with an ASCII ``filename`` for old clients and RFC 5987 ``filename*``."""
    ascii_name = _UNSAFE_ASCII.sub("_", fallback).strip("._") or "download"
    kind = "attachment" if attachment else "inline"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


# --- Conditional requests and ranges ---------------------------------------------------------
#
# Werkzeug parses the validators. Its Response.make_conditional (and so send_file) is not
# used: it answers 416 to a malformed Range, to other units and to several ranges, where RFC
# 9110 says to ignore the header and send the whole file, and it wraps a range in an
# iterator of its own that the server can no longer stream from its I/O loop.


def precondition_failed(body: Body) -> bool:
    """RFC 9110 §13.2.2 steps 1–2: If-Match (strong comparison; ``*`` matches any current
    version) and, only without it, If-Unmodified-Since. True: answer 412, send nothing."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        etags = parse_etags(if_match)
        return not (etags.star_tag or etags.contains(unquote_etag(body.etag)[0]))
    since = parse_date(request.headers.get("If-Unmodified-Since"))
    return since is not None and body.last_modified.replace(microsecond=0) > since


def not_modified(body: Body) -> bool:
    """RFC 9110 §13.2.2: If-None-Match (weakly compared) wins; If-Modified-Since only without."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        return parse_etags(inm).contains_weak(unquote_etag(body.etag)[0])
    since = parse_date(request.headers.get("If-Modified-Since"))
    return since is not None and body.last_modified.replace(microsecond=0) <= since


def _range_still_valid(body: Body) -> bool:
    """If-Range: the range applies only to the version the client already has part of."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return parse_etags(value).contains(unquote_etag(body.etag)[0])  # strong comparison
    when = parse_date(value)
    return when is not None and body.last_modified.replace(microsecond=0) == when


_RANGE_SPEC = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")


def parse_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """Satisfiable ranges as (start, stop) with stop exclusive; None to ignore the header.

    An empty list means syntactically valid but unsatisfiable (416). Positions are ASCII
    digits only; one longer than ``MAX_POSITION_DIGITS`` makes the whole header unsatisfiable.
    """
    if not header:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for spec in specs.split(","):
        if not spec.strip():
            continue
        match = _RANGE_SPEC.fullmatch(spec)
        if match is None:
            return None
        first, last = match.groups()
        if first == "" and last == "":
            return None
        if len(first) > MAX_POSITION_DIGITS or len(last) > MAX_POSITION_DIGITS:
            return []
        if first == "":
            suffix = int(last)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(0, size - suffix), size))
            continue
        start = int(first)
        if last != "" and int(last) < start:
            return None
        if start >= size:
            continue
        stop = size if last == "" else min(int(last) + 1, size)
        ranges.append((start, stop))
    return ranges


def accel_redirect_uri(path: Path, data_dir: Path, prefix: str) -> str | None:
    """The internal nginx URI for ``path`` under ``prefix`` (mapped to the data folder)."""
    try:
        relative = path.resolve().relative_to(data_dir.resolve())
    except ValueError:
        return None
    return prefix.rstrip("/") + "/" + quote(relative.as_posix())


def respond(
    body: Body,
    *,
    mimetype: str,
    filename: str,
    fallback: str,
    attachment: bool = False,
    cache_control: str = "private, no-cache",
    on_close: Callable[[int, int], None] | None = None,
) -> Response:
    """A GET/HEAD response for ``body``: 412, 304, 206, 416 or 200, with validators and a file
    name.

    The body (or its one range) goes out through ``wsgi.file_wrapper``; the handles are
    closed when the server has sent it, or at once for a 304, 416 or HEAD.
    """
    headers = {
        "ETag": body.etag,
        "Last-Modified": format_datetime(body.last_modified.astimezone(UTC), usegmt=True),
        "Cache-Control": cache_control,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(filename, fallback, attachment=attachment),
    }
    if precondition_failed(body):
        body.close()
        return Response(status=412, headers=headers)
    if not_modified(body):
        body.close()
        return Response(status=304, headers=headers)
    size = body.size
    ranges = parse_ranges(request.headers.get("Range"), size) if _range_still_valid(body) else None
    if ranges is not None and not ranges:
        body.close()
        headers["Content-Range"] = f"bytes */{size}"
        return Response(status=416, headers=headers, mimetype="text/plain")
    if ranges is not None and len(ranges) > MAX_RANGES:
        ranges = None
    start, stop, status = 0, size, 200
    if ranges:
        (start, stop), status = ranges[0], 206
        headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    response = Response(
        _file_wrapper(BodyFile(body, start, stop, on_close)),
        status=status,
        headers=headers,
        mimetype=mimetype,
    )
    # Waitress streams a file wrapper only when the response has a Content-Length, and sends
    # no more than it says.
    response.content_length = stop - start
    # Werkzeug hands the wrapper itself to the server (no buffering or re-encoding); the
    # server calls close(), which closes the handles, also when a client disconnects early.
    response.direct_passthrough = True
    return response


class LoopBuffer(ReadOnlyFileBasedBuffer):
    """Waitress's ``wsgi.file_wrapper``, sent by waitress's I/O loop a share at a time.

    Handing a file wrapper to the connection, waitress's worker thread first sends what the
    socket takes at once (megabytes on a fast link) and only then serves the next request.
    This wrapper gives the worker nothing to send, so the worker sends the headers and is
    free, and the I/O loop, woken by waitress, sends the body. ``get`` is how a connection
    reads its buffers; a WSGI middleware iterating the wrapper reads through ``__next__``
    and is not affected.

    The loop sends each connection what its socket takes in one turn; a client that reads
    fast would take megabytes and keep every other connection waiting, new ones included.
    So a turn ends after TURN_BYTES: ``get`` answers nothing, the connection stops for this
    turn and, its socket still writable, continues in the next.
    """

    def __init__(self, file: BodyFile, block_size: int = CHUNK) -> None:
        # types-waitress asks for a BytesIO; waitress takes any seekable binary file.
        super().__init__(file, block_size)  # type: ignore[arg-type]
        self.worker = threading.get_ident()
        self.turn_sent = 0
        self.turn_over = False  # the connection stopped asking: the next get starts a turn

    def get(self, numbytes: int = -1, skip: bool = False) -> bytes:
        if threading.get_ident() == self.worker:
            return b""
        if self.turn_over:
            self.turn_sent, self.turn_over = 0, False
        # Over until skip() reports the bytes sent: a refused send ends the turn too.
        self.turn_over = True
        if self.turn_sent >= TURN_BYTES:
            return b""
        return super().get(numbytes, skip)  # type: ignore[no-any-return]

    def skip(self, numbytes: int, allow_prune: int = 0) -> None:
        super().skip(numbytes, allow_prune)
        self.turn_sent += numbytes
        self.turn_over = False


def _file_wrapper(file: BodyFile) -> Iterable[bytes]:
    """The server's ``wsgi.file_wrapper`` over ``file`` (Werkzeug's stand-in without one)."""
    if request.environ.get("wsgi.file_wrapper") is ReadOnlyFileBasedBuffer:
        # types-waitress types next() as bytes | None; waitress raises StopIteration instead.
        return LoopBuffer(file, CHUNK)  # type: ignore[return-value]
    # A RawIOBase is a binary file, but typeshed's IO[bytes] is a class, not a protocol.
    return wrap_file(request.environ, file, CHUNK)  # type: ignore[arg-type]


def served_from_start(response: Response) -> bool:
    """True when this GET sends the body from its first byte (counts as a download)."""
    if request.method != "GET":
        return False
    if response.status_code == 200:
        return True
    sent = response.content_range
    return response.status_code == 206 and sent is not None and sent.start == 0


# --- ZIP for USB sticks -----------------------------------------------------------------------

_crc_cache: OrderedDict[tuple[int, int, int, int], int] = OrderedDict()
_crc_lock = threading.Lock()


def _crc32(handle: BinaryIO, st: os.stat_result) -> int:
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _crc_lock:
        if key in _crc_cache:
            _crc_cache.move_to_end(key)
            return _crc_cache[key]
    crc, at, fd = 0, 0, handle.fileno()
    while at < st.st_size:
        block = os.pread(fd, CHUNK, at)
        if not block:
            break
        crc = zlib.crc32(block, crc)
        at += len(block)
    with _crc_lock:
        _crc_cache[key] = crc
        while len(_crc_cache) > 512:
            _crc_cache.popitem(last=False)
    return crc


def _dos_time(when: datetime) -> tuple[int, int]:
    t = when if when.year >= 1980 else when.replace(year=1980, month=1, day=1)
    return (t.hour << 11) | (t.minute << 5) | (t.second // 2), ((t.year - 1980) << 9) | (
        t.month << 5
    ) | t.day


def zip_body(members: list[tuple[str, Path]], tz: tzinfo) -> Body:
    """A stored (uncompressed: MP3 does not shrink) ZIP of ``members`` (name, file).

    Sizes and CRCs are known before the first byte, so the archive has a Content-Length,
    supports ranges (a USB-stick download can resume) and needs no data descriptors, which
    some unzippers mishandle for stored entries. Names are UTF-8 with the language flag set.
    """
    parts: list[Part] = []
    central: list[bytes] = []
    handles: list[BinaryIO] = []
    offset = 0
    latest = datetime(1980, 1, 1, tzinfo=UTC)
    digest = hashlib.sha256()
    try:
        for name, path in members:
            handle, st = open_file(path)
            handles.append(handle)
            if st.st_size >= 0xFFFFFFFF:
                raise OSError("ZIP64 not supported for files over 4 GiB")
            crc = _crc32(handle, st)
            modified = datetime.fromtimestamp(st.st_mtime, UTC)
            latest = max(latest, modified)
            dtime, ddate = _dos_time(modified.astimezone(tz))
            raw = name.encode("utf-8")
            # The fields the local header and the central directory entry share (APPNOTE
            # 4.3.7, 4.3.12): version needed, flags (bit 11: UTF-8 names), method (stored),
            # time, date, CRC-32, compressed and uncompressed size, name length.
            shared = (20, 0x0800, 0, dtime, ddate, crc, st.st_size, st.st_size, len(raw))
            local = struct.pack("<IHHHHHIIIHH", 0x04034B50, *shared, 0)
            # Made by Unix, version 2.0; then no extra field, comment, disk number or
            # internal attributes; external attributes: a regular file, rw-r--r--.
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (3 << 8) | 20,
                    *shared,
                    0,
                    0,
                    0,
                    0,
                    0o100644 << 16,
                    offset,
                )
                + raw
            )
            parts.append(Part(data=local + raw))
            parts.append(Part(handle=handle, offset=0, length=st.st_size))
            offset += len(local) + len(raw) + st.st_size
            digest.update(raw + b"\0" + file_etag(st).encode())
    except BaseException:
        for handle in handles:
            handle.close()
        raise
    directory = b"".join(central)
    end = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), len(directory), offset, 0
    )
    parts.append(Part(data=directory + end))
    return Body(
        parts=parts,
        etag='"zip-' + digest.hexdigest()[:32] + '"',
        last_modified=latest,
        handles=handles,
    )
