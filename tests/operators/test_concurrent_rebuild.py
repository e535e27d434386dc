"""Downloads while the program is rebuilt: every completed download is one whole version."""

from __future__ import annotations

import http.client
import io
import threading
import zipfile
from pathlib import Path

import pytest

from tests.operators.conftest import write_program

READERS = 6
ROUNDS = 8


@pytest.fixture
def versions(tones) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    old, new = tones(20.0, 440), tones(25.0, 880)
    assert old != new
    return old, new


@pytest.fixture
def server(waitress_port) -> int:  # type: ignore[no-untyped-def]
    """The app behind waitress on a loopback port (the production path, with its file wrapper)."""
    return waitress_port(threads=READERS)  # type: ignore[no-any-return]


def _rebuild_while(path: Path, versions: tuple[bytes, bytes], stop: threading.Event) -> int:
    count = 0
    while not stop.is_set() and count < 2000:
        write_program(path, versions[count % 2])
        count += 1
    return count


def _hammer(fetch, path: Path, versions: tuple[bytes, bytes]) -> tuple[list[bytes], int]:  # type: ignore[no-untyped-def]
    results: list[bytes] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    rebuilds = [0]

    def writer() -> None:
        rebuilds[0] = _rebuild_while(path, versions, stop)

    def reader() -> None:
        try:
            for _ in range(ROUNDS):
                results.append(fetch())
        except BaseException as exc:  # reported below, the test must not hang
            errors.append(exc)

    writing = threading.Thread(target=writer)
    writing.start()
    readers = [threading.Thread(target=reader) for _ in range(READERS)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(timeout=60)
    stop.set()
    writing.join(timeout=10)
    assert not errors, errors[:3]
    return results, rebuilds[0]


def test_waitress_downloads_during_rebuild(
    server, make_outlet, make_program, link, day, versions
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    program = make_program(outlet, day, 0, seconds=20.0, frequency=440)
    url = f"{link(outlet)}/{day}/0730.mp3"
    path = Path(program.path)

    def fetch() -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
        try:
            conn.request("GET", url)
            response = conn.getresponse()
            assert response.status == 200
            body = response.read()
            assert len(body) == int(response.getheader("Content-Length"))
            return body
        finally:
            conn.close()

    results, rebuilds = _hammer(fetch, path, versions)
    assert rebuilds > READERS  # the file really was replaced while being read
    assert len(results) == READERS * ROUNDS
    assert all(body in versions for body in results)


def test_ranges_during_rebuild_match_their_etag(
    server, make_outlet, make_program, link, day, versions
) -> None:  # type: ignore[no-untyped-def]
    """A resumed download pinned with If-Range never stitches two versions together."""
    outlet = make_outlet()
    program = make_program(outlet, day, 0, seconds=20.0, frequency=440)
    url = f"{link(outlet)}/{day}/0730.mp3"

    def fetch() -> bytes:
        conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
        try:
            conn.request("GET", url, headers={"Range": "bytes=0-999"})
            first = conn.getresponse()
            head, etag = first.read(), first.getheader("ETag")
            conn.request("GET", url, headers={"Range": "bytes=1000-", "If-Range": etag})
            rest = conn.getresponse()
            body = rest.read()
            # Same version: the rest; replaced meanwhile: the whole new file.
            return head + body if rest.status == 206 else body
        finally:
            conn.close()

    results, _ = _hammer(fetch, Path(program.path), versions)
    assert all(body in versions for body in results)


def test_test_client_stream_and_zip_during_rebuild(
    client, make_outlet, make_program, link, day, versions
) -> None:  # type: ignore[no-untyped-def]
    """Werkzeug's file wrapper (the test client has no server's) and the ZIP behave the same."""
    outlet = make_outlet()
    program = make_program(outlet, day, 0, seconds=20.0, frequency=440)
    base = link(outlet)
    path = Path(program.path)
    mp3_results, _ = _hammer(lambda: client.get(f"{base}/{day}/0730.mp3").data, path, versions)
    assert all(body in versions for body in mp3_results)

    def fetch_zip() -> bytes:
        archive = zipfile.ZipFile(io.BytesIO(client.get(f"{base}/{day}.zip").data))
        assert archive.testzip() is None
        return archive.read(archive.namelist()[0])

    zip_results, _ = _hammer(fetch_zip, path, versions)
    assert all(body in versions for body in zip_results)
