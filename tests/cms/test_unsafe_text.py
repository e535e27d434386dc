"""Text that would make outputs lie or break: refused with a clear field error on input
(forms and API, in Chinese and English), and upload file names cleaned before use."""

from __future__ import annotations

import io
import json

import pytest
from sqlalchemy import select

from cms.models import Outlet, Recording, Role
from cms.services.text import clean_filename
from tests.cms.test_recordings import _wav
from tests.conftest import login

HOSTILE = {
    "\ufffe": "U+FFFE",
    "\uffff": "U+FFFF",
    "\x01": "U+0001",
    "\ud800": "U+D800",
    "\u202e": "U+202E",
    "\u2066": "U+2066",
}
BIDI = {"\u202e", "\u2066"}
# A lone surrogate cannot be encoded in a form (UTF-8); JSON can carry it as "\\ud800".
FORM_CHARS = [ch for ch in HOSTILE if ch != "\ud800"]


def _expected(ch: str, lang: str) -> str:
    code = HOSTILE[ch]
    if lang == "en":
        if ch in BIDI:
            return f"Title contains hidden characters that change the text direction ({code})"
        return f"Title contains invisible control characters ({code})"
    if ch in BIDI:
        return f"标题含有改变文字方向的隐藏字符（{code}），请删除后再保存"
    return f"标题含有不可见的控制字符（{code}），请删除后再保存"


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
@pytest.mark.parametrize("ch", FORM_CHARS, ids=[HOSTILE[c] for c in FORM_CHARS])
def test_form_refuses_with_a_field_error(app, session, make_user, content, ch, lang) -> None:  # type: ignore[no-untyped-def]
    editor = make_user(Role.EDITOR)
    editor.locale = lang
    session.commit()
    client = app.test_client()
    login(client, editor)
    data = {**content(title=f"防火{ch}通知"), "to_loudspeaker": "on", "to_chats": "on"}
    response = client.post("/announcements/new", data=data)
    assert response.status_code == 400
    assert _expected(ch, lang) in response.get_data(as_text=True)


@pytest.mark.parametrize("lang", ["zh_CN", "en"])
@pytest.mark.parametrize("ch", list(HOSTILE), ids=list(HOSTILE.values()))
def test_api_refuses_with_a_field_error(app, session, make_user, content, ch, lang) -> None:  # type: ignore[no-untyped-def]
    from cms.services.users import issue_api_token

    editor = make_user(Role.EDITOR)
    editor.locale = lang
    token = issue_api_token(session, None, editor)
    session.commit()
    body = {k: v for k, v in content().items() if k not in {"to_loudspeaker", "to_chats"}}
    body.update(title=f"防火{ch}通知", channels=["loudspeaker"])
    response = app.test_client().post(
        "/api/v1/announcements",
        data=json.dumps(body),  # ASCII escapes, so that a lone surrogate travels too
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    error = response.json["error"]
    assert error["code"] == "invalid_input"
    assert error["fields"]["title"].startswith(_expected(ch, lang))


def test_outlet_name_is_refused_too(app, session, make_user, grid) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    form = {
        "name": "石桥村\uffff",
        "kind": "loudspeaker",
        "area_id": grid["v1"].id,
        "slots": "07:30",
    }
    response = client.post("/admin/outlets/new", data=form)
    assert response.status_code == 400
    assert "名称含有不可见的控制字符（U+FFFF）" in response.get_data(as_text=True)
    assert session.scalar(select(Outlet)) is None


def test_ordinary_text_is_accepted(app, session, make_user, content) -> None:  # type: ignore[no-untyped-def]
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    # Emoji (astral), full-width forms, an RTL script, tabs and newlines in the body are fine.
    data = {
        **content(title="防火🔥通知 ＡＢＣ שלום", body="第一行\n\t第二行"),
        "to_loudspeaker": "on",
        "to_chats": "on",
    }
    assert client.post("/announcements/new", data=data).status_code == 302


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("彝语版.wav", "彝语版.wav"),
        ("../../etc/passwd.wav", "passwd.wav"),
        ("C:\\Users\\李\\Desktop\\录音 1.mp3", "录音 1.mp3"),
        ("..\\..\\x.ogg", "x.ogg"),
        ("录音\x00.mp3", "录音.mp3"),
        ("录音\u202egpj.mp3", "录音gpj.mp3"),
        ("\u2066录\r\n音\ufffe\x7f.m4a", "录音.m4a"),
        ("..", "recording"),
        ("/", "recording"),
        ("", "recording"),
        ("a" * 300 + ".wav", "a" * 200),
    ],
)
def test_file_names_are_cleaned(raw: str, clean: str) -> None:
    assert clean_filename(raw, "recording") == clean


def test_uploaded_recording_name_is_stored_clean(
    app, session, make_user, make_announcement
) -> None:  # type: ignore[no-untyped-def]
    editor = make_user(Role.EDITOR)
    ann = make_announcement("draft", author=editor)
    client = app.test_client()
    login(client, editor)
    response = client.post(
        f"/announcements/{ann.id}/recording",
        data={"recording": (io.BytesIO(_wav(2.0)), "../../彝语\u202e\x00版.wav")},
        content_type="multipart/form-data",
        follow_redirects=True,
    )
    page = response.get_data(as_text=True)
    assert "录音已上传" in page and "“彝语版.wav”" in page
    session.rollback()
    row = session.scalar(select(Recording).where(Recording.active))
    assert row.original_name == "彝语版.wav"
