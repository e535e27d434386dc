"""The podcast feed (read by a real feed parser) and the M3U playlist."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import feedparser

from cms.models import JobState


def test_feed_parses_with_enclosures_and_durations(
    client, make_outlet, make_program, link, day
) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(name="石桥村大喇叭")
    morning = make_program(outlet, day, 0, seconds=3.0, titles=("秋冬防火", "垃圾分类"))
    evening = make_program(outlet, day, 1, seconds=61.0)
    old = make_program(outlet, day - timedelta(days=2), 0, seconds=2.0)
    make_program(outlet, day - timedelta(days=1), 1, state=JobState.PENDING)
    base = link(outlet)
    response = client.get(f"{base}/feed.xml")
    assert response.status_code == 200
    assert response.mimetype == "application/rss+xml"
    feed = feedparser.parse(response.data)
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == "石桥村大喇叭 · 大喇叭"
    assert len(feed.entries) == 3  # the unbuilt program is not listed
    by_url = {e.enclosures[0].href: e for e in feed.entries}
    for program, duration in ((morning, "00:00:03"), (evening, "00:01:01"), (old, "00:00:02")):
        url = f"http://127.0.0.1:8080{base}/{program.day}/{program.slot.at:%H%M}.mp3"
        entry = by_url[url]
        (enclosure,) = entry.enclosures
        assert enclosure.type == "audio/mpeg"
        assert int(enclosure.length) == Path(program.path).stat().st_size
        assert entry.itunes_duration == duration
        assert entry.id.startswith(f"dalaba-program-{program.id}-")
        assert entry.published_parsed is not None
        # The enclosure URL serves exactly the length announced.
        fetched = client.get(url.removeprefix("http://127.0.0.1:8080"))
        assert len(fetched.data) == int(enclosure.length)
    assert "秋冬防火、垃圾分类" in by_url[f"http://127.0.0.1:8080{base}/{day}/0730.mp3"].summary
    # Revalidation works for the feed too.
    etag = response.headers["ETag"]
    assert client.get(f"{base}/feed.xml", headers={"If-None-Match": etag}).status_code == 304


def test_feed_escapes_names(client, make_outlet, make_program, link, day) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(name="<b>村&广播</b>")
    make_program(outlet, day, 0, titles=("<script>alert(1)</script>",))
    data = client.get(f"{link(outlet)}/feed.xml").data
    assert not feedparser.parse(data).bozo
    assert b"<script>" not in data and b"<b>" not in data
    assert "&lt;b&gt;村&amp;广播&lt;/b&gt;".encode() in data


def test_m3u_playlist(client, make_outlet, make_program, link, day) -> None:  # type: ignore[no-untyped-def]
    outlet = make_outlet(name="柳林村大喇叭")
    make_program(outlet, day, 0, seconds=3.0)
    make_program(outlet, day, 1, seconds=61.0)
    base = link(outlet)
    response = client.get(f"{base}/today.m3u8")
    assert response.status_code == 200
    assert response.mimetype == "audio/x-mpegurl"
    assert response.mimetype_params["charset"] == "utf-8"
    lines = response.get_data(as_text=True).splitlines()
    assert lines[0] == "#EXTM3U"
    entries = [line for line in lines if not line.startswith("#")]
    assert entries == [
        f"http://127.0.0.1:8080{base}/{day}/0730.mp3",
        f"http://127.0.0.1:8080{base}/{day}/1900.mp3",
    ]
    assert f"#EXTINF:3,柳林村大喇叭 {day} 07:30" in lines
    assert f"#EXTINF:61,柳林村大喇叭 {day} 19:00" in lines
    assert client.get(f"{base}/{day}.m3u").data == response.data
    empty = client.get(f"{base}/{day + timedelta(days=5)}.m3u8").get_data(as_text=True)
    assert empty.splitlines()[0] == "#EXTM3U" and "http" not in empty
