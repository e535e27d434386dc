"""Serving program files: types, names, conditional requests, byte ranges, ZIP, loop."""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import select

from cms.models import DownloadEvent, OutletKind
from cms.web.downloads import flush_downloads
from tests.operators.conftest import write_program


@pytest.fixture
def served(client, make_outlet, make_program, link, day):  # type: ignore[no-untyped-def]
    outlet = make_outlet(name="石桥村/大喇叭")
    program = make_program(outlet, day, 0, seconds=3.0)
    data = Path(program.path).read_bytes()
    return client, link(outlet), program, data


def test_program_is_served_whole_with_type_and_names(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    response = client.get(f"{base}/{day}/0730.mp3")
    assert response.status_code == 200
    assert response.data == data
    assert response.mimetype == "audio/mpeg"
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["Accept-Ranges"] == "bytes"
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("inline; ")
    ascii_name = disposition.split('filename="', 1)[1].split('"', 1)[0]
    assert ascii_name.isascii() and ascii_name.endswith(f"{day}_0730.mp3")
    encoded = disposition.split("filename*=UTF-8''", 1)[1]
    # The slash of the outlet's name never reaches a file name.
    assert unquote(encoded) == f"石桥村_大喇叭_{day}_0730.mp3"
    assert " " not in encoded and "/" not in encoded
    download = client.get(f"{base}/{day}/0730.mp3?dl=1")
    assert download.headers["Content-Disposition"].startswith("attachment; ")


def test_today_and_slot_urls(client, make_outlet, make_program, link, clock, day) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet()
    morning = make_program(outlet, day, 0, frequency=440)
    evening = make_program(outlet, day, 1, frequency=880)
    base = link(outlet)
    morning_bytes = Path(morning.path).read_bytes()
    evening_bytes = Path(evening.path).read_bytes()
    assert morning_bytes != evening_bytes
    clock.set(day, 7, 25)  # before the morning slot: the morning program
    assert client.get(f"{base}/today.mp3").data == morning_bytes
    clock.set(day, 7, 35)  # during it: still the morning program
    assert client.get(f"{base}/today.mp3").data == morning_bytes
    clock.set(day, 12)  # after it: the evening program
    assert client.get(f"{base}/today.mp3").data == evening_bytes
    clock.set(day, 23)  # after the last slot: the last program, not a 404
    assert client.get(f"{base}/today.mp3").data == evening_bytes
    assert client.get(f"{base}/today/0730.mp3").data == morning_bytes
    assert client.get(f"{base}/today/1900.mp3").data == evening_bytes
    assert client.get(f"{base}/{day}/1900.mp3").data == evening_bytes
    assert client.get(f"{base}/today/1200.mp3").status_code == 404
    clock.set(day + timedelta(days=1), 6)  # a new day without programs
    assert client.get(f"{base}/today.mp3").status_code == 404


def test_unbuilt_program_is_404(client, make_outlet, make_program, link, day) -> None:  # type: ignore[no-untyped-def]
    from cms.models import JobState

    outlet = make_outlet()
    make_program(outlet, day, 0, state=JobState.PENDING)
    assert client.get(f"{link(outlet)}/{day}/0730.mp3").status_code == 404


def test_etag_and_last_modified_revalidate(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    url = f"{base}/{day}/0730.mp3"
    first = client.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and etag.endswith('"')
    for headers in (
        {"If-None-Match": etag},
        {"If-None-Match": f'"nope", {etag}'},
        {"If-None-Match": f"W/{etag}"},  # weak comparison for If-None-Match
        {"If-None-Match": "*"},
        {"If-Modified-Since": modified},
        {
            "If-Modified-Since": format_datetime(
                parsedate_to_datetime(modified) + timedelta(hours=1), usegmt=True
            )
        },
    ):
        again = client.get(url, headers=headers)
        assert again.status_code == 304, headers
        assert again.data == b""
        assert again.headers["ETag"] == etag
    # If-None-Match wins over If-Modified-Since when both are sent.
    assert (
        client.get(
            url, headers={"If-None-Match": '"other"', "If-Modified-Since": modified}
        ).status_code
        == 200
    )
    earlier = format_datetime(parsedate_to_datetime(modified) - timedelta(hours=1), usegmt=True)
    assert client.get(url, headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get(url, headers={"If-Modified-Since": "garbage"}).status_code == 200

    # A rebuild replaces the file: the old validators no longer match.
    write_program(Path(program.path), data + data)
    rebuilt = client.get(url, headers={"If-None-Match": etag})
    assert rebuilt.status_code == 200
    assert rebuilt.data == data + data
    assert rebuilt.headers["ETag"] != etag


def test_byte_ranges(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    url = f"{base}/{day}/0730.mp3"
    size = len(data)
    cases = {
        "bytes=0-99": (0, 100),
        "bytes=100-199": (100, 200),
        "bytes=100-": (100, size),  # open-ended
        "bytes=-500": (size - 500, size),  # suffix
        f"bytes=-{size * 3}": (0, size),  # suffix longer than the file: the whole file
        f"bytes=10-{size * 5}": (10, size),  # last byte beyond the end is clamped
        f"bytes={size - 1}-": (size - 1, size),
        "bytes= 5 - 9 ": (5, 10),
    }
    for header, (start, stop) in cases.items():
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 206, header
        assert response.data == data[start:stop], header
        assert response.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}", header
        assert response.headers["Content-Length"] == str(stop - start)
        assert response.mimetype == "audio/mpeg"


def test_unsatisfiable_and_ignored_ranges(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    url = f"{base}/{day}/0730.mp3"
    size = len(data)
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 416, header
        assert response.headers["Content-Range"] == f"bytes */{size}"
    # Malformed headers and other units are ignored: the whole file.
    for header in ("bytes=9-3", "bytes=abc", "items=0-5", "bytes=", "bytes=-", "bytes=1-2-3"):
        response = client.get(url, headers={"Range": header})
        assert response.status_code == 200, header
        assert response.data == data


def test_multi_range_is_refused_with_the_full_body(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    response = client.get(f"{base}/{day}/0730.mp3", headers={"Range": "bytes=0-9,20-29"})
    assert response.status_code == 200
    assert response.data == data
    assert "Content-Range" not in response.headers


def test_if_range(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    url = f"{base}/{day}/0730.mp3"
    etag = client.get(url).headers["ETag"]
    same = client.get(url, headers={"Range": "bytes=10-19", "If-Range": etag})
    assert same.status_code == 206 and same.data == data[10:20]
    changed = client.get(url, headers={"Range": "bytes=10-19", "If-Range": '"stale"'})
    assert changed.status_code == 200 and changed.data == data


def test_head_sends_headers_only(served, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    response = client.head(f"{base}/{day}/0730.mp3")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.data == b""


def test_downloads_are_recorded_once_not_per_range(served, session, day) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    url = f"{base}/{day}/0730.mp3"
    client.get(url, headers={"Range": "bytes=100-"})  # a resume in the middle: not counted
    flush_downloads(client.application)
    assert session.scalars(select(DownloadEvent)).all() == []
    session.rollback()  # end the read snapshot so later commits by the app are seen
    client.get(url)
    client.get(url)  # the same fetch again within minutes: one event
    etag = client.get(url).headers["ETag"]
    client.get(url, headers={"If-None-Match": etag})
    flush_downloads(client.application)
    session.rollback()
    events = session.scalars(select(DownloadEvent)).all()
    assert [(e.program_id, e.kind, e.day) for e in events] == [(program.id, "mp3", day)]


def test_zip_of_the_day(client, make_outlet, make_program, link, day, session) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(name="柳林村大喇叭")
    a = make_program(outlet, day, 0, frequency=440)
    b = make_program(outlet, day, 1, frequency=660)
    base = link(outlet)
    response = client.get(f"{base}/{day}.zip")
    assert response.status_code == 200
    assert response.mimetype == "application/zip"
    assert response.headers["Content-Length"] == str(len(response.data))
    disposition = response.headers["Content-Disposition"]
    assert disposition.startswith("attachment; ")
    assert unquote(disposition.split("''", 1)[1]) == f"柳林村大喇叭_{day}.zip"
    archive = zipfile.ZipFile(io.BytesIO(response.data))
    assert archive.testzip() is None
    assert archive.namelist() == [f"柳林村大喇叭_{day}_0730.mp3", f"柳林村大喇叭_{day}_1900.mp3"]
    assert all(info.flag_bits & 0x800 for info in archive.infolist())  # UTF-8 names
    assert archive.read(archive.namelist()[0]) == Path(a.path).read_bytes()
    assert archive.read(archive.namelist()[1]) == Path(b.path).read_bytes()
    # Stable bytes, validators and ranges: a USB-stick download can resume.
    assert client.get(f"{base}/today.zip").data == response.data
    etag = response.headers["ETag"]
    assert client.get(f"{base}/{day}.zip", headers={"If-None-Match": etag}).status_code == 304
    tail = client.get(f"{base}/{day}.zip", headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.data == response.data[-100:]
    flush_downloads(client.application)
    kinds = session.scalars(select(DownloadEvent.kind).order_by(DownloadEvent.id)).all()
    assert kinds == ["zip", "zip"]
    assert client.get(f"{base}/{day + timedelta(days=3)}.zip").status_code == 404


def test_loop_for_mobile_speakers(
    client, make_outlet, make_program, link, day, ffmpeg_decodes, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(kind=OutletKind.MOBILE, loop_minutes=1)
    program = make_program(outlet, day, 0, seconds=2.0)
    base = link(outlet)
    page = client.get(f"{base}/").get_data(as_text=True)
    assert 'data-testid="loop"' in page
    response = client.get(f"{base}/{day}/0730/loop.mp3")
    assert response.status_code == 200
    assert response.mimetype == "audio/mpeg"
    frames = Path(program.path).read_bytes()
    # About a minute of a two-second program: many repetitions, and it decodes cleanly.
    assert len(response.data) > 20 * len(frames)
    assert ffmpeg_decodes(response.data, tmp_path)
    assert "%E5%BE%AA%E7%8E%AF" in response.headers["Content-Disposition"]  # 循环
    # Cached: the same bytes and validators again; a rebuilt program gives a new loop.
    again = client.get(f"{base}/{day}/0730/loop.mp3")
    assert again.headers["ETag"] == response.headers["ETag"]
    write_program(Path(program.path), frames[: len(frames) // 2])
    rebuilt = client.get(f"{base}/{day}/0730/loop.mp3")
    assert rebuilt.headers["ETag"] != response.headers["ETag"]
    assert client.get(f"{base}/loop.mp3").status_code == 200


def test_accel_redirect_hands_the_file_to_nginx(served, day, settings, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    app = client.application
    configured = app.extensions["dalaba.settings"].with_(accel_redirect="/_dalaba_data/")
    monkeypatch.setitem(app.extensions, "dalaba.settings", configured)
    response = client.get(f"{base}/{day}/0730.mp3")
    relative = Path(program.path).relative_to(settings.data_dir).as_posix()
    assert response.headers["X-Accel-Redirect"] == f"/_dalaba_data/{relative}"
    assert response.data == b""
    assert response.mimetype == "audio/mpeg"


def test_x_sendfile_for_apache_or_lighttpd(served, day, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    client, base, program, data = served
    app = client.application
    configured = app.extensions["dalaba.settings"].with_(x_sendfile=True)
    monkeypatch.setitem(app.extensions, "dalaba.settings", configured)
    response = client.get(f"{base}/{day}/0730.mp3")
    assert response.headers["X-Sendfile"] == str(Path(program.path).resolve())
    assert response.data == b""


def test_if_match_and_if_unmodified_since_answer_412(served, day) -> None:  # type: ignore[no-untyped-def]
    """RFC 9110 §13.1.1–13.1.4: a version other than the client's is not sent at all."""
    client, base, program, data = served
    url = f"{base}/{day}/0730.mp3"
    first = client.get(url)
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    for headers in ({"If-Match": etag}, {"If-Match": f'"old", {etag}'}, {"If-Match": "*"}):
        response = client.get(url, headers=headers)
        assert response.status_code == 200 and response.data == data, headers
    assert client.get(url, headers={"If-Match": f"W/{etag}"}).status_code == 412  # strong only
    stale = client.get(url, headers={"If-Match": '"old"', "Range": "bytes=0-9"})
    assert stale.status_code == 412 and stale.data == b""
    assert client.get(url, headers={"If-Unmodified-Since": modified}).status_code == 200
    earlier = format_datetime(parsedate_to_datetime(modified) - timedelta(hours=1), usegmt=True)
    assert client.get(url, headers={"If-Unmodified-Since": earlier}).status_code == 412
    # If-Match decides when both are sent (§13.2.2).
    both = client.get(url, headers={"If-Match": etag, "If-Unmodified-Since": earlier})
    assert both.status_code == 200
