"""The public share page /s/<token>, its audio and subtitles, the panel and the download counts."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from cms.models import (
    Announcement,
    Area,
    AuditLog,
    Clip,
    ClipProfile,
    JobState,
    Outlet,
    OutletKind,
    Role,
    ShareDownload,
    User,
)
from cms.services import announcements, share
from cms.services import operators as operator_svc
from cms.settings import Settings
from cms.web.downloads import flush_downloads
from tests.conftest import login

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]")
MP3 = b"\xff\xfb\x90\x64" + bytes(range(256)) * 40  # a frame header and 10 KB of payload
SRT = "1\n00:00:00,000 --> 00:00:02,500\n各位村民：<注意>\n\n2\n00:00:02,500 --> 00:00:05,000\n集中清理垃圾 & 打扫\n"


@pytest.fixture
def with_clip(session: Session, settings: Settings) -> Callable[[Announcement], Clip]:
    """Give an announcement's approved revision a finished loudspeaker clip with subtitles."""

    def make(ann: Announcement) -> Clip:
        assert ann.approved_revision_id is not None
        folder = settings.data_dir / "audio" / "clips"
        folder.mkdir(parents=True, exist_ok=True)
        mp3 = folder / f"{ann.approved_revision_id}.mp3"
        srt = folder / f"{ann.approved_revision_id}.srt"
        mp3.write_bytes(MP3)
        srt.write_text(SRT, encoding="utf-8")
        clip = Clip(
            revision_id=ann.approved_revision_id,
            profile=ClipProfile.LOUDSPEAKER,
            state=JobState.DONE,
            path=str(mp3),
            subtitles_path=str(srt),
            duration=5.0,
        )
        session.add(clip)
        session.commit()
        return clip

    return make


def page_path(ann: Announcement) -> str:
    assert ann.share_token is not None
    return f"/s/{ann.share_token}"


def test_the_token_is_made_on_approval_and_cannot_be_guessed(
    make_announcement: Callable[..., Announcement], settings: Settings
) -> None:
    draft = make_announcement("draft")
    assert draft.share_token is None
    assert share.share_url(settings, draft) is None
    first, second = make_announcement("approved"), make_announcement("approved")
    assert first.share_token and second.share_token
    assert len(first.share_token) >= 43  # 32 random bytes
    assert re.fullmatch(r"[A-Za-z0-9_-]+", first.share_token)
    assert first.share_token != second.share_token
    assert share.share_url(settings, first) == f"{settings.base_url}/s/{first.share_token}"
    withdrawn = make_announcement("withdrawn")
    assert share.share_url(settings, withdrawn) is None


def test_the_page_shows_the_approved_revision_and_never_a_pending_edit(
    client: Any,
    session: Session,
    make_announcement: Callable[..., Announcement],
    content: Callable[..., dict[str, Any]],
    with_clip: Callable[[Announcement], Clip],
    today: date,
) -> None:
    ann = make_announcement("approved", title="本周六清理垃圾", body="上午九点村委会门口集合。")
    with_clip(ann)
    editor = ann.created_by
    announcements.update(
        session, editor, ann, content(title="待审核的新标题", body="还没审核的新正文"), today=today
    )
    session.commit()
    assert ann.latest_revision_id != ann.approved_revision_id

    response = client.get(page_path(ann))
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert "本周六清理垃圾" in text and "上午九点村委会门口集合。" in text
    assert "待审核的新标题" not in text and "还没审核的新正文" not in text
    assert "清水镇宣传办" in text  # the top area's publicity office
    assert f'<audio controls preload="none" src="{page_path(ann)}/audio.mp3"' in text
    assert f'src="{page_path(ann)}/subtitles.vtt"' in text
    # No external script: the player's small script is inline and allowed by its hash only.
    assert "<script src" not in text
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self' 'sha256-" in policy and "unsafe-inline" not in policy
    assert response.headers["X-Robots-Tag"] == "noindex, nofollow"
    assert response.headers["Referrer-Policy"] == "no-referrer"


def test_og_tags_and_title_are_present_and_escaped(
    client: Any, make_announcement: Callable[..., Announcement]
) -> None:
    title = '通知<script>alert(1)</script>"&'
    ann = make_announcement("approved", title=title, body="正文 <b>粗</b> & “引号”")
    text = client.get(page_path(ann)).get_data(as_text=True)
    assert "<script>alert(1)</script>" not in text
    for prop in ("og:title", "og:description", "og:image"):
        assert f'<meta property="{prop}" content="' in text
    og_title = re.search(r'<meta property="og:title" content="([^"]*)">', text)
    assert og_title is not None and html.unescape(og_title.group(1)) == title
    assert "&lt;script&gt;" in og_title.group(1) and "&#34;&amp;" in og_title.group(1)
    title_tag = re.search(r"<title>(.*?)</title>", text, re.S)
    assert title_tag is not None and html.unescape(title_tag.group(1)).startswith(title)
    image = re.search(r'<meta property="og:image" content="([^"]*)">', text)
    assert image is not None and image.group(1).endswith("/static/share-card.png")
    assert "&lt;b&gt;粗&lt;/b&gt;" in text


def test_phone_numbers_become_tap_to_call_links(
    client: Any, make_announcement: Callable[..., Announcement]
) -> None:
    body = "咨询电话：0871-6512 3456，村委会王主任13812345678。\n缴费60元，12月20日前。<b>"
    ann = make_announcement("approved", body=body)
    text = client.get(page_path(ann)).get_data(as_text=True)
    assert '<a href="tel:087165123456">0871-6512 3456</a>' in text
    assert '<a href="tel:13812345678">13812345678</a>' in text
    assert text.count('href="tel:') == 2  # 60, 12, 20 are not phone numbers
    assert "。<br>缴费60元" in text and "&lt;b&gt;" in text


def test_the_og_image_exists(client: Any) -> None:
    response = client.get("/static/share-card.png")
    assert response.status_code == 200
    assert response.data.startswith(b"\x89PNG")
    response.close()


def test_a_withdrawn_announcement_answers_410_with_a_clear_page(
    client: Any,
    session: Session,
    make_announcement: Callable[..., Announcement],
    with_clip: Callable[[Announcement], Clip],
) -> None:
    ann = make_announcement("approved", title="即将撤回的通知")
    with_clip(ann)
    path = page_path(ann)
    assert client.get(path).status_code == 200
    announcements.withdraw(session, ann.created_by, ann)
    session.commit()
    response = client.get(path)
    assert response.status_code == 410
    text = response.get_data(as_text=True)
    assert "已撤回" in text
    assert "即将撤回的通知" not in text  # the withdrawn text is no longer published
    assert client.get(path + "/audio.mp3").status_code == 410
    assert client.get(path + "/subtitles.vtt").status_code == 410


@pytest.mark.parametrize(
    "path", ["/s/nope", "/s/" + "A" * 43, "/s/" + "A" * 43 + "/audio.mp3", "/s/%E4%B8%AD" * 20]
)
def test_unknown_tokens_are_404(client: Any, path: str) -> None:
    assert client.get(path).status_code == 404


def test_a_new_link_kills_the_old_one_and_is_audited(
    client: Any,
    session: Session,
    make_announcement: Callable[..., Announcement],
    make_user: Callable[..., User],
) -> None:
    ann = make_announcement("approved")
    old = page_path(ann)
    officer = make_user(Role.REVIEWER)
    login(client, officer)
    response = client.post(f"/announcements/{ann.id}/share/new-link")
    assert response.status_code == 302
    session.expire_all()
    new = page_path(session.get(Announcement, ann.id))
    assert new != old
    assert client.get(old).status_code == 404
    assert client.get(new).status_code == 200
    entry = session.scalar(
        select(AuditLog).where(
            AuditLog.action == "announcement.share_token", AuditLog.object_id == ann.id
        )
    )
    assert entry is not None and entry.user_id == officer.id
    assert entry.detail["old_prefix"] == old.removeprefix("/s/")[:6]
    assert old.removeprefix("/s/") not in str(entry.detail)  # never the whole token


def test_operators_cannot_renew_a_link(
    client: Any, make_announcement: Callable[..., Announcement], make_user: Callable[..., User]
) -> None:
    ann = make_announcement("approved")
    login(client, make_user(Role.OPERATOR))
    response = client.post(f"/announcements/{ann.id}/share/new-link")
    assert response.status_code in (403, 404)


def test_the_mp3_supports_ranges_and_validators(
    client: Any,
    make_announcement: Callable[..., Announcement],
    with_clip: Callable[[Announcement], Clip],
) -> None:
    ann = make_announcement("approved")
    with_clip(ann)
    url = page_path(ann) + "/audio.mp3"
    full = client.get(url)
    assert full.status_code == 200
    assert full.headers["Content-Type"] == "audio/mpeg"
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.data == MP3
    etag = full.headers["ETag"]
    part = client.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{len(MP3)}"
    assert part.data == MP3[100:200]
    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.data == MP3[-10:]
    assert client.get(url, headers={"Range": f"bytes={len(MP3)}-"}).status_code == 416
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    download = client.get(url + "?dl=1")
    assert download.headers["Content-Disposition"].startswith("attachment;")
    for response in (full, part, tail, download):
        response.close()


def test_the_audio_is_404_until_the_clip_is_rendered(
    client: Any, make_announcement: Callable[..., Announcement]
) -> None:
    ann = make_announcement("approved")
    assert client.get(page_path(ann) + "/audio.mp3").status_code == 404
    assert client.get(page_path(ann) + "/subtitles.vtt").status_code == 404
    text = client.get(page_path(ann)).get_data(as_text=True)
    assert "<audio" not in text and "广播音频正在生成" in text


def test_a_notice_for_chats_only_has_no_player_and_no_waiting_note(
    client: Any, make_announcement: Callable[..., Announcement]
) -> None:
    ann = make_announcement("approved", to_loudspeaker=False)
    text = client.get(page_path(ann)).get_data(as_text=True)
    assert "<audio" not in text and "广播音频正在生成" not in text


def test_subtitles_are_served_as_webvtt(
    client: Any,
    make_announcement: Callable[..., Announcement],
    with_clip: Callable[[Announcement], Clip],
) -> None:
    ann = make_announcement("approved")
    with_clip(ann)
    response = client.get(page_path(ann) + "/subtitles.vtt")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/vtt; charset=utf-8"
    assert response.get_data(as_text=True) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\n各位村民：&lt;注意&gt;\n\n"
        "00:00:02.500 --> 00:00:05.000\n集中清理垃圾 &amp; 打扫\n\n"
    )
    response.close()


def test_srt_to_vtt_drops_numbers_and_keeps_multiline_cues() -> None:
    srt = "\ufeff1\r\n00:00:01,000 --> 00:00:02,000\r\n第一行\r\n第二行 --> 箭头\r\n\r\n\r\n"
    assert share.srt_to_vtt(srt) == (
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\n第一行\n第二行 --&gt; 箭头\n\n"
    )
    assert share.srt_to_vtt("") == "WEBVTT\n\n"


def test_audio_fetches_are_counted_per_day_after_a_flush(
    app: Any,
    client: Any,
    session: Session,
    make_announcement: Callable[..., Announcement],
    make_user: Callable[..., User],
    with_clip: Callable[[Announcement], Clip],
) -> None:
    app.extensions["dalaba.downloads"].interval = 3600  # only the test's flushes write
    ann = make_announcement("approved")
    with_clip(ann)
    url = page_path(ann) + "/audio.mp3"
    for headers in ({}, {}, {"Range": "bytes=0-99"}, {"Range": "bytes=100-"}):
        client.get(url, headers=headers).close()
    client.head(url).close()
    etag = client.get(url).headers["ETag"]
    client.get(url, headers={"If-None-Match": etag}).close()  # a revalidation is no download
    # Nothing is written on the request path: only the flush writes.
    assert session.scalar(select(ShareDownload)) is None
    assert flush_downloads(app) == 4  # two full, one range from 0, and the one before the 304
    session.rollback()  # a new snapshot of the database
    row = session.scalar(select(ShareDownload).where(ShareDownload.announcement_id == ann.id))
    assert row is not None and row.count == 4
    client.get(url).close()
    assert flush_downloads(app) == 1
    session.rollback()
    assert share.download_counts(session, ann.id) == [(row.day, 5)]

    login(client, make_user(Role.EDITOR))
    text = client.get(f"/schedule/announcements/{ann.id}").get_data(as_text=True)
    assert 'data-testid="share-downloads-total">5<' in text


def test_record_downloads_adds_to_existing_days_and_skips_deleted(
    session: Session, make_announcement: Callable[..., Announcement]
) -> None:
    ann = make_announcement("approved")
    day = date(2026, 11, 30)
    assert share.record_downloads(session, {(ann.id, day): 2, (999_999, day): 3}) == 2
    assert share.record_downloads(session, {(ann.id, day): 1}) == 1
    session.commit()
    assert share.download_counts(session, ann.id) == [(day, 3)]


def test_the_panel_is_on_an_approved_announcement_for_staff(
    client: Any,
    make_announcement: Callable[..., Announcement],
    make_user: Callable[..., User],
    with_clip: Callable[[Announcement], Clip],
    settings: Settings,
) -> None:
    ann = make_announcement("approved", title="停水通知", body="明天上午停水。")
    with_clip(ann)
    draft = make_announcement("draft")
    login(client, make_user(Role.EDITOR))
    text = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert 'data-testid="share-panel"' in text
    url = f"{settings.base_url}{page_path(ann)}"
    assert f"【停水通知】\n明天上午停水。\n{url}</textarea>" in text
    assert 'data-testid="share-copy"' in text and "/static/share.js" in text
    assert f'value="{url}"' in text
    assert re.search(r'<svg [^>]*class="qr"', text)
    assert f'href="{page_path(ann)}/qr.png"' in text
    assert f'href="{page_path(ann)}/audio.mp3?dl=1"' in text
    assert 'data-testid="share-renew"' in text
    assert 'data-testid="share-panel"' not in client.get(f"/announcements/{draft.id}").get_data(
        as_text=True
    )
    png = client.get(page_path(ann) + "/qr.png")
    assert png.status_code == 200 and png.data.startswith(b"\x89PNG")
    assert png.headers["Content-Disposition"].startswith("attachment;")
    png.close()


@pytest.mark.any_hour
def test_operators_see_the_panel_for_their_areas_notices(
    client: Any,
    session: Session,
    grid: dict[str, Area],
    make_announcement: Callable[..., Announcement],
) -> None:
    mine = make_announcement("approved", title="石桥村的通知", area_ids=[grid["v1"].id])
    township = make_announcement("approved", title="全镇的通知", area_ids=[grid["town"].id])
    other = make_announcement("approved", title="柳林村的通知", area_ids=[grid["v2"].id])
    gone = make_announcement("withdrawn", title="撤回的通知", area_ids=[grid["v1"].id])
    outlet = Outlet(name="石桥村一组喇叭", kind=OutletKind.LOUDSPEAKER, area_id=grid["g1"].id)
    session.add(outlet)
    session.commit()
    token = operator_svc.issue_outlet_token(session, None, outlet)
    session.commit()
    text = client.get(f"/o/{token}/").get_data(as_text=True)
    assert text.count('data-testid="share-panel"') == 2
    assert page_path(mine) in text and page_path(township) in text
    assert page_path(other) not in text and "撤回的通知" not in text
    assert gone.share_token is not None
    assert 'data-testid="share-renew"' not in text  # only officers issue a new link


def test_the_english_pages_have_no_untranslated_labels(
    client: Any,
    session: Session,
    make_announcement: Callable[..., Announcement],
    make_user: Callable[..., User],
    with_clip: Callable[[Announcement], Clip],
) -> None:
    ann = make_announcement("approved", title="Water cut", body="No water on Monday.")
    with_clip(ann)
    with client.session_transaction() as cookie:
        cookie["lang"] = "en"
    data = ("清水镇",)  # the top area's name is data, not a label

    def labels(text: str) -> list[str]:
        for value in data:
            text = text.replace(value, "")
        return CJK.findall(text)

    page = client.get(page_path(ann)).get_data(as_text=True)
    assert 'lang="en"' in page and "Publicity Office" in page
    assert labels(page) == []
    login(client, make_user(Role.EDITOR))
    with client.session_transaction() as cookie:
        cookie["lang"] = "en"
    show = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    panel = show[
        show.index('data-testid="share-panel"') : show.index(
            "</section>", show.index('data-testid="share-panel"')
        )
    ]
    assert "Forward to a WeChat group" in panel
    assert labels(panel) == []
    announcements.withdraw(session, ann.created_by, ann)
    session.commit()
    gone = client.get(page_path(ann))
    assert gone.status_code == 410
    assert labels(gone.get_data(as_text=True)) == []


def test_share_text_keeps_title_text_and_link() -> None:
    assert share.share_text(" 标题 ", "正文\n第二行\n", "http://x/s/t") == (
        "【标题】\n正文\n第二行\nhttp://x/s/t"
    )


def test_the_qr_code_encodes_the_link() -> None:
    svg = share.qr_svg("http://127.0.0.1:8080/s/abc")
    assert re.match(r'<svg viewBox="[0-9 ]+" class="qr">', svg)
    assert "<title>http://127.0.0.1:8080/s/abc</title>" in svg
    assert share.qr_png("http://127.0.0.1:8080/s/abc").startswith(b"\x89PNG")


def test_the_migration_gives_approved_rows_a_token(tmp_path: Path) -> None:
    """Upgrading a database with an approved announcement gives it a token (see 0004)."""
    from sqlalchemy import text

    from cms.db import make_engine
    from cms.migrate import upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0003")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO user (id, username, display_name, password_hash, role, active, "
            "created_at, session_version) VALUES (1, 'u', 'u', 'x', 'editor', 1, "
            "'2026-01-01 00:00:00', 0)"
        )
        for ann_id, approved in ((1, True), (2, False)):
            conn.exec_driver_sql(
                "INSERT INTO announcement (id, status, created_by_id, created_at, updated_at) "
                f"VALUES ({ann_id}, 'draft', 1, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
            conn.exec_driver_sql(
                "INSERT INTO revision (id, announcement_id, number, title, body, priority, "
                "to_loudspeaker, to_chats, start_date, end_date, repeats, voice, rate, "
                f"author_id, created_at) VALUES ({ann_id}, {ann_id}, 1, 't', 'b', 'normal', 1, 1, "
                "'2026-01-01', '2026-01-02', 1, 'v', 0, 1, '2026-01-01 00:00:00')"
            )
            if approved:
                conn.exec_driver_sql(
                    f"UPDATE announcement SET status='approved', approved_revision_id={ann_id}, "
                    f"latest_revision_id={ann_id} WHERE id={ann_id}"
                )
    upgrade(engine)
    with engine.connect() as conn:
        tokens = dict(conn.execute(text("SELECT id, share_token FROM announcement")).all())
    engine.dispose()
    assert tokens[2] is None
    assert tokens[1] is not None and len(tokens[1]) >= 43


def test_a_busy_database_keeps_share_counts_for_the_next_flush(
    engine: Any,
    session: Session,
    make_announcement: Callable[..., Announcement],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sqlalchemy.exc import OperationalError

    from cms.db import make_session_factory
    from cms.web.downloads import DownloadLog

    ann = make_announcement("approved")
    log = DownloadLog(make_session_factory(engine), interval=3600)
    day, at = date(2026, 11, 30), datetime.now(UTC)
    for _ in range(3):
        log.add_share(ann.id, day, at)
    real = share.record_downloads

    def locked(*args: Any, **kwargs: Any) -> int:
        raise OperationalError("INSERT", {}, Exception("database is locked"))

    monkeypatch.setattr(share, "record_downloads", locked)
    assert log.flush() == 0
    assert log.pending() == 3
    monkeypatch.setattr(share, "record_downloads", real)
    assert log.flush() == 3
    log.close()
    assert share.download_counts(session, ann.id) == [(day, 3)]
