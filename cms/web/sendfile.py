"""Serving files from open handles: conditional GET, byte ranges, file names, streamed ZIPs.

A body is a list of parts: byte strings and slices of files opened once. A program that is
rebuilt meanwhile is replaced by ``os.replace``; the handle still reads the old inode to the
end, so a download is always one complete version, never a mix.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from flask import Response, request

CHUNK = 256 * 1024
MAX_RANGES = 1  # multi-range requests get the full body (RFC 9110 lets a server ignore Range)


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

    def chunks(self, start: int, stop: int) -> Iterator[bytes]:
        """Bytes ``start`` (inclusive) to ``stop`` (exclusive), read with ``os.pread``.

        ``pread`` leaves the handle's position alone, so one handle may serve many ranges.
        """
        pos = 0
        for part in self.parts:
            end = pos + part.size
            if end <= start or pos >= stop:
                pos = end
                continue
            lo, hi = max(start, pos) - pos, min(stop, end) - pos
            if part.handle is None:
                yield part.data[lo:hi]
            else:
                fd = part.handle.fileno()
                at, left = part.offset + lo, hi - lo
                while left > 0:
                    block = os.pread(fd, min(CHUNK, left), at)
                    if not block:
                        raise OSError("file shrank while being served")
                    yield block
                    at += len(block)
                    left -= len(block)
            pos = end


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


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def not_modified(body: Body) -> bool:
    """RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since only without it."""
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        tags = _etags(inm)
        return "*" in tags or body.etag in tags
    ims = request.headers.get("If-Modified-Since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return body.last_modified.replace(microsecond=0) <= since
    return False


def _range_still_valid(body: Body) -> bool:
    """If-Range: the range applies only to the version the client already has part of."""
    value = request.headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == body.etag  # strong comparison only
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return body.last_modified.replace(microsecond=0) == when


_RANGE_SPEC = re.compile(r"[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*")
# Positions beyond any file (and beyond a 64-bit offset): such a header is answered 416, as
# nginx does, without asking int() to read 5000 digits (which it refuses with ValueError).
MAX_POSITION_DIGITS = 18


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
) -> Response:
    """A GET/HEAD response for ``body``: 304, 206, 416 or 200, with validators and a file name."""
    headers = {
        "ETag": body.etag,
        "Last-Modified": format_datetime(body.last_modified.astimezone(UTC), usegmt=True),
        "Cache-Control": cache_control,
        "Accept-Ranges": "bytes",
        "Content-Disposition": content_disposition(filename, fallback, attachment=attachment),
    }
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
        _iterable(body, start, stop), status=status, headers=headers, mimetype=mimetype
    )
    response.content_length = stop - start
    # Werkzeug must not buffer or re-encode the stream; the server sends it as it comes and
    # calls close(), which closes the handles (also when a client disconnects early).
    response.direct_passthrough = True
    return response


class _Stream:
    """A WSGI iterable over part of a body that closes the body's handles when closed."""

    def __init__(self, body: Body, start: int, stop: int) -> None:
        self.body, self.start, self.stop = body, start, stop

    def __iter__(self) -> Iterator[bytes]:
        return self.body.chunks(self.start, self.stop)

    def close(self) -> None:
        self.body.close()


def _iterable(body: Body, start: int, stop: int) -> object:
    """Hand a single-file slice to waitress's file wrapper, else stream with ``pread``.

    Waitress sends a ``ReadOnlyFileBasedBuffer`` from its I/O thread, bounded by the
    Content-Length, so a worker thread is free as soon as the view returns. Other servers'
    wrappers may read to end of file, so they get the generic stream.
    """
    wrapper = request.environ.get("wsgi.file_wrapper")
    single = len(body.parts) == 1 and body.parts[0].handle is not None
    if single and wrapper is not None and wrapper.__module__.startswith("waitress."):
        part = body.parts[0]
        assert part.handle is not None
        part.handle.seek(part.offset + start)
        return wrapper(part.handle, CHUNK)
    return _Stream(body, start, stop)


def served_from_start() -> bool:
    """True when this GET fetches the file from its first byte (counts as a download)."""
    if request.method != "GET":
        return False
    header = request.headers.get("Range", "")
    return not header or bool(re.match(r"^\s*bytes\s*=\s*0\s*-", header))


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
            flags = 0x0800
            local = struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                flags,
                0,
                dtime,
                ddate,
                crc,
                st.st_size,
                st.st_size,
                len(raw),
                0,
            )
            central.append(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (3 << 8) | 20,
                    20,
                    flags,
                    0,
                    dtime,
                    ddate,
                    crc,
                    st.st_size,
                    st.st_size,
                    len(raw),
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
