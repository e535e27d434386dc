"""Uploading a human recording: checked by the audio library, draft-only, nothing half-saved."""

from __future__ import annotations

import io
import math
import struct
import wave

import pytest
from sqlalchemy import func, select

from cms.models import Recording, Role
from tests.conftest import login


def _wav(seconds: float, amplitude: float = 0.3) -> bytes:
    rate = 16_000
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        frames = (
            struct.pack("<h", int(amplitude * 32767 * math.sin(2 * math.pi * 440 * i / rate)))
            for i in range(int(seconds * rate))
        )
        w.writeframes(b"".join(frames))
    return buffer.getvalue()


@pytest.fixture
def editor_client(app, make_user):  # type: ignore[no-untyped-def]
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    return client, editor


def _upload(client, ann_id, data, name="彝语版.wav"):  # type: ignore[no-untyped-def]
    return client.post(
        f"/announcements/{ann_id}/recording",
        data={"recording": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
        follow_redirects=True,
    )


def test_upload_replaces_synthesis_and_can_be_removed(
    editor_client, session, make_announcement, settings
):
    client, editor = editor_client
    ann = make_announcement("draft", author=editor)
    page = _upload(client, ann.id, _wav(2.0)).get_data(as_text=True)
    assert "录音已上传" in page and "彝语版.wav" in page
    session.rollback()
    row = session.scalar(select(Recording).where(Recording.active))
    assert row.announcement_id == ann.id and 1.5 < row.duration < 3.0
    assert row.path.startswith(str(settings.data_dir / "recordings"))
    page = client.post(
        f"/announcements/{ann.id}/recording", data={"action": "remove"}, follow_redirects=True
    )
    assert "已改回合成语音" in page.get_data(as_text=True)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Recording).where(Recording.active)) == 0


@pytest.mark.parametrize(
    ("data", "name", "words"),
    [
        (b"this is not audio at all" * 100, "x.mp3", "无法识别"),
        (_wav(0.3), "short.wav", "太短"),
        (_wav(2.0, amplitude=0.0), "silent.wav", "静音"),
        (_wav(2.0), "notes.txt", "不支持的文件类型"),
    ],
)
def test_unusable_uploads_get_a_clear_message(
    editor_client, session, make_announcement, data, name, words
):
    client, editor = editor_client
    ann = make_announcement("draft", author=editor)
    page = _upload(client, ann.id, data, name).get_data(as_text=True)
    assert words in page
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Recording)) == 0


def test_only_drafts_take_a_recording(editor_client, session, make_announcement):
    client, editor = editor_client
    ann = make_announcement("approved", author=editor)
    page = _upload(client, ann.id, _wav(2.0)).get_data(as_text=True)
    assert "草稿状态" in page
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Recording)) == 0


def test_reviewers_cannot_upload(app, session, make_user, make_announcement):
    client = app.test_client()
    login(client, make_user(Role.REVIEWER))
    ann = make_announcement("draft")
    response = client.post(
        f"/announcements/{ann.id}/recording", data={"recording": (io.BytesIO(_wav(2.0)), "a.wav")}
    )
    assert response.status_code == 403


def test_too_large_upload_is_a_clear_413(app, make_user, make_announcement):
    app.config["MAX_CONTENT_LENGTH"] = 1024
    client = app.test_client()
    editor = make_user(Role.EDITOR)
    login(client, editor)
    ann = make_announcement("draft", author=editor)
    response = client.post(
        f"/announcements/{ann.id}/recording", data={"recording": (io.BytesIO(_wav(2.0)), "a.wav")}
    )
    assert response.status_code == 413
    assert "上传的文件太大" in response.get_data(as_text=True)
