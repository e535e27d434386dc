"""Downloads leave the request path at once: file wrapper, batched records, few queries."""

from __future__ import annotations

import http.client
import os
import socket
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError
from waitress import wasyncore
from waitress.buffers import ReadOnlyFileBasedBuffer
from werkzeug.test import EnvironBuilder

from cms.models import DownloadEvent
from cms.services import operators as svc
from cms.web.downloads import DownloadLog, flush_downloads
from cms.web.sendfile import CHUNK, TURN_BYTES, BodyFile, LoopBuffer, bytes_body
from cms.web.server import make_server
from tests.operators.conftest import write_program

BIG = 12 * 1024 * 1024  # more than loopback's socket buffers can hold for a reader that stalls


@pytest.fixture
def served(app, make_outlet, make_program, link, day):  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    program = make_program(outlet, day, 0, seconds=3.0)
    return app, f"{link(outlet)}/{day}/0730.mp3", Path(program.path).read_bytes(), program


def _call(app: Any, url: str, wrapper: Any, headers: dict[str, str] | None = None) -> Any:
    """Call the WSGI app as a server would; returns (status, headers, app_iter)."""
    environ = EnvironBuilder(path=url, headers=headers or {}).get_environ()
    environ["wsgi.file_wrapper"] = wrapper
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc=None):  # type: ignore[no-untyped-def]
        started["status"], started["headers"] = status, dict(response_headers)

    body = app(environ, start_response)
    return started["status"], started["headers"], body


def _drain_from_io_thread(buffer: ReadOnlyFileBasedBuffer, length: int) -> tuple[bytes, list[int]]:
    """Read a waitress buffer as its I/O loop does; returns the bytes and what each turn sent.

    A turn of the loop calls get and, when the socket took the bytes, skip, until get gives
    nothing or the socket refuses; the next turn starts over.
    """
    out: list[bytes] = []
    turns: list[int] = []

    def loop() -> None:
        assert buffer.prepare(length) == length
        while len(buffer):
            sent = 0
            while chunk := buffer.get(1 << 22):  # waitress asks for its socket buffer size
                out.append(chunk)
                buffer.skip(len(chunk), True)
                sent += len(chunk)
            turns.append(sent)

    io_thread = threading.Thread(target=loop)
    io_thread.start()
    io_thread.join(timeout=10)
    return b"".join(out), turns


@pytest.mark.parametrize(
    ("range_header", "status", "cut"),
    [(None, "200 OK", slice(None)), ("bytes=100-4099", "206 PARTIAL CONTENT", slice(100, 4100))],
)
def test_waitress_gets_its_file_wrapper_for_whole_files_and_ranges(
    served, range_header, status, cut
) -> None:  # type: ignore[no-untyped-def]
    app, url, data, _ = served
    headers = {"Range": range_header} if range_header else {}
    got_status, got_headers, body = _call(app, url, ReadOnlyFileBasedBuffer, headers)
    assert got_status == status
    # Waitress streams from its I/O loop only what is an instance of its file wrapper.
    assert isinstance(body, ReadOnlyFileBasedBuffer)
    assert isinstance(body, LoopBuffer) and isinstance(body.file, BodyFile)
    length = int(got_headers["Content-Length"])
    assert length == len(data[cut])
    # The worker thread that ran the view is given nothing to send …
    assert body.get(1 << 22) == b""
    # … the I/O loop gets exactly the range, however much it asks for at a time.
    assert _drain_from_io_thread(body, length)[0] == data[cut]
    body.close()
    assert body.file.closed and not body.file.body.handles


def test_the_io_loop_sends_a_download_a_share_per_turn() -> None:
    """One fast reader cannot keep the loop from every other connection for megabytes."""
    data = os.urandom(3 * TURN_BYTES + 1000)
    body = bytes_body(data, datetime.now(UTC))
    buffer = LoopBuffer(BodyFile(body, 0, len(data)))
    sent, turns = _drain_from_io_thread(buffer, len(data))
    assert sent == data
    assert turns == [TURN_BYTES, TURN_BYTES, TURN_BYTES, 1000]
    # A refused send ends a turn as well: the next get starts a new one, from the same place.
    buffer = LoopBuffer(BodyFile(body, 0, len(data)))
    box: list[bytes] = []

    def refused_then_taken() -> None:
        buffer.prepare(len(data))
        box.append(buffer.get(CHUNK))  # the socket takes none of it: no skip
        box.append(buffer.get(CHUNK))
        buffer.skip(len(box[-1]), True)

    io_thread = threading.Thread(target=refused_then_taken)
    io_thread.start()
    io_thread.join(timeout=10)
    assert box[0] == box[1] == data[:CHUNK]
    assert buffer.turn_sent == CHUNK


def test_any_servers_file_wrapper_is_used_and_limited_to_the_range(served) -> None:  # type: ignore[no-untyped-def]
    app, url, data, _ = served

    class Wrapper:
        """A server's file wrapper that, like most, reads the file to its end."""

        def __init__(self, file: Any, block_size: int = 8192) -> None:
            self.file, self.block_size = file, block_size

        def __iter__(self):  # type: ignore[no-untyped-def]
            while block := self.file.read(self.block_size):
                yield block

        def close(self) -> None:
            self.file.close()

    status, headers, body = _call(app, url, Wrapper, {"Range": "bytes=10-"})
    assert status.startswith("206") and isinstance(body, Wrapper)
    assert b"".join(body) == data[10:]
    body.close()
    status, headers, body = _call(app, url, Wrapper)
    assert status.startswith("200") and b"".join(body) == data
    body.close()


def test_head_and_not_modified_close_the_file(served, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app, url, data, _ = served
    _, headers, body = _call(app, url, ReadOnlyFileBasedBuffer)
    body.close()
    closed: list[int] = []
    close = BodyFile.close

    def counting_close(self: BodyFile) -> None:
        closed.append(len(self.body.handles))
        close(self)

    monkeypatch.setattr(BodyFile, "close", counting_close)
    environ = EnvironBuilder(path=url, method="HEAD").get_environ()
    environ["wsgi.file_wrapper"] = ReadOnlyFileBasedBuffer
    result = app(environ, lambda *args: None)
    assert list(result) == []
    result.close()  # what every WSGI server does
    assert closed[:1] == [1]  # the file opened for the HEAD is closed
    status, _, result = _call(app, url, ReadOnlyFileBasedBuffer, {"If-None-Match": headers["ETag"]})
    assert status.startswith("304")
    result.close()


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-" + "9" * 5000,
        "bytes=" + "9" * 5000 + "-",
        "bytes=-" + "9" * 5000,
        "bytes=0-9," + "1" * 19 + "-",
    ],
)
def test_absurd_ranges_are_unsatisfiable_not_a_crash(client, served, header) -> None:  # type: ignore[no-untyped-def]
    _, url, data, _ = served
    response = client.get(url, headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    # Eighteen digits are still a number (beyond the file: clamped to its end).
    near = client.get(url, headers={"Range": "bytes=0-" + "9" * 18})
    assert near.status_code == 206 and near.data == data


def test_downloads_are_recorded_after_a_flush(app, client, served, session, day) -> None:  # type: ignore[no-untyped-def]
    _, url, _, program = served
    downloads = DownloadLog(app.extensions["dalaba.sessions"], interval=3600)
    app.extensions["dalaba.downloads"] = downloads
    try:
        client.get(url)
        client.get(url)  # the same fetch again: dropped in memory already
        client.get(url, headers={"Range": "bytes=100-"})  # a resume: not a download
        assert downloads.pending() == 1
        assert session.scalars(select(DownloadEvent)).all() == []  # nothing written yet
        session.rollback()
        assert flush_downloads(app) == 1
        assert downloads.pending() == 0
        events = session.scalars(select(DownloadEvent)).all()
        assert [(e.program_id, e.kind, e.day) for e in events] == [(program.id, "mp3", day)]
        session.rollback()
        assert flush_downloads(app) == 0
    finally:
        downloads.close()


def test_the_log_writes_by_itself_and_keeps_a_batch_the_database_refused(
    app, session, served, day, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    _, _, _, program = served
    downloads = DownloadLog(app.extensions["dalaba.sessions"], interval=0.02)
    written = threading.Event()
    real = svc.record_download
    calls = {"n": 0}

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 1:
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        event = real(*args, **kwargs)
        written.set()
        return event

    monkeypatch.setattr(svc, "record_download", flaky)
    try:
        downloads.add(program.outlet_id, day, "mp3", [program.id], datetime.now(UTC))
        assert written.wait(timeout=10), "the thread never wrote the download"
    finally:
        downloads.close()
    assert calls["n"] == 2  # refused once, kept, written on the next tick
    assert len(session.scalars(select(DownloadEvent)).all()) == 1


def test_a_download_is_one_read_query_and_no_write(app, client, served, engine) -> None:  # type: ignore[no-untyped-def]
    _, url, data, _ = served
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:  # type: ignore[no-untyped-def]
        if not statement.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            statements.append(statement)

    client.get(url)  # warm: the first request loads the translations and such
    event.listen(engine, "before_cursor_execute", seen)
    try:
        response = client.get(url)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert response.status_code == 200 and response.data == data
    # The record goes to memory (no INSERT): the request path takes no write lock.
    assert len(statements) == 1 and statements[0].lstrip().upper().startswith("SELECT")


def test_a_slow_reader_holds_no_worker_and_no_database_connection(
    waitress_port, make_outlet, make_program, link, day, engine
) -> None:  # type: ignore[no-untyped-def]
    """One worker thread: a stalled download of a big file, and still another answer."""
    outlet = make_outlet()
    program = make_program(outlet, day, 0, seconds=3.0)
    frames = Path(program.path).read_bytes()
    big = frames * (BIG // len(frames) + 1)
    write_program(Path(program.path), big)
    base = link(outlet)
    # A small buffer high-water mark: a worker streaming the body itself would stop and wait
    # for the reader after a megabyte, and the second request would never be answered.
    port = waitress_port(threads=1, outbuf_high_watermark=1 << 20)

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    slow.connect(("127.0.0.1", port))
    slow.settimeout(30)
    slow.sendall(f"GET {base}/{day}/0730.mp3 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += slow.recv(4096)
    assert head.startswith(b"HTTP/1.1 200") and f"Content-Length: {len(big)}".encode() in head
    received = len(head.split(b"\r\n\r\n", 1)[1])
    try:
        other = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        other.request("GET", f"{base}/{day}/0730.mp3", headers={"Range": "bytes=0-99"})
        answer = other.getresponse()
        assert answer.status == 206 and answer.read() == big[:100]
        other.close()
        # The stalled download holds no database connection either.
        assert engine.pool.checkedout() == 0
        rest = bytearray()
        while received + len(rest) < len(big):
            block = slow.recv(1 << 20)
            assert block, "connection closed early"
            rest += block
    finally:
        slow.close()
    assert head.split(b"\r\n\r\n", 1)[1] + bytes(rest) == big


@pytest.mark.parametrize(("limit", "accepted"), [(500, 5), (4, 2)])
def test_the_server_accepts_every_waiting_connection_in_one_turn(app, limit, accepted) -> None:  # type: ignore[no-untyped-def]
    """Waitress takes one connection per turn of its loop; dalaba takes all that wait."""
    server = make_server(app, "127.0.0.1", 0, threads=1, connection_limit=limit)
    clients = [socket.create_connection(("127.0.0.1", server.effective_port)) for _ in range(5)]
    try:
        server.handle_accept()  # one turn of the loop found the listening socket readable
        # Up to the connection limit (waitress counts itself and its wake-up pipe).
        assert len(server.active_channels) == accepted
    finally:
        for client in clients:
            client.close()
        server.task_dispatcher.shutdown(timeout=5)
        wasyncore.close_all(server._map)
