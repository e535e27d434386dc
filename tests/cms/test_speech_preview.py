"""Hear it before submitting: the editor's spoken-text preview, 试听, the engine the menu
promises, and the clip players on the review and announcement pages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from audio.errors import TextError
from cms.models import Clip, ClipProfile, JobState, LexiconEntry, Role, utcnow
from cms.services import speech as speech_svc
from cms.web import speech as speech_web
from tests.conftest import login

FETCH = {"X-Requested-With": "fetch"}
VOICE = "zh-CN-XiaoxiaoNeural"


@pytest.fixture
def editor_client(app: Any, make_user: Any) -> Any:
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    return client


@pytest.fixture
def synth_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every call the offline engine gets (the real eSpeak still speaks)."""
    from audio.engines import OfflineEngine

    calls: list[list[str]] = []
    real = OfflineEngine.synthesize

    def counted(self: Any, chunks: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(chunks))
        return real(self, chunks, *args, **kwargs)

    monkeypatch.setattr(OfflineEngine, "synthesize", counted)
    return calls


# -- the spoken-text preview -------------------------------------------------------------


def test_preview_fragment_marks_rewrites_and_lexicon_entries(
    editor_client: Any, session: Any
) -> None:
    session.add(LexiconEntry(written="石桥村", spoken="石乔村"))
    session.commit()
    body = "请石桥村村民明天8:00到村委会开会。"
    response = editor_client.post("/announcements/preview", data={"body": body}, headers=FETCH)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    marks = re.findall(r'<mark class="rewrite" title="[^"]*">([^<]*)</mark>', html)
    assert "石乔村" in marks and not any(re.search(r"\d", m) for m in marks)
    assert "8:00" in html  # shown as the original beside its reading
    assert 'data-testid="lexicon-used"' in html and "石桥村 = 石乔村" in html
    assert "<html" not in html  # a fragment, not a page


def test_preview_prefers_the_spoken_text_over_the_body(editor_client: Any) -> None:
    data = {"body": "正文里的话", "spoken_text": "播音稿里的话"}
    html = editor_client.post("/announcements/preview", data=data, headers=FETCH).get_data(
        as_text=True
    )
    assert "播音稿里的话" in html and "正文里的话" not in html


def test_preview_escapes_user_text(editor_client: Any, session: Any) -> None:
    session.add(LexiconEntry(written="<b>", spoken="<img src=x onerror=alert(1)>"))
    session.commit()
    body = '<script>alert("x")</script><b>粗体</b>2<img src=x onerror=alert(1)>'
    html = editor_client.post(
        "/announcements/preview", data={"body": body}, headers=FETCH
    ).get_data(as_text=True)
    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;" in html or "script" not in html


def test_preview_without_scripts_returns_the_editor_with_everything_kept(
    editor_client: Any, content: Any
) -> None:
    data = {**content(title="停水通知", body="明天8:00停水。"), "action": ""}
    data["to_loudspeaker"] = "on"
    response = editor_client.post("/announcements/preview", data=data)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'id="announcement-form"' in html and 'value="停水通知"' in html
    assert 'action="/announcements/new"' in html  # saving still goes to the right place
    assert '<mark class="rewrite"' in html


def test_preview_of_existing_announcement_keeps_its_edit_target(
    editor_client: Any, make_announcement: Any
) -> None:
    ann = make_announcement("draft")
    data = {"body": "明天停水。", "announcement_id": str(ann.id)}
    html = editor_client.post("/announcements/preview", data=data).get_data(as_text=True)
    assert f'action="/announcements/{ann.id}/edit"' in html
    missing = editor_client.post("/announcements/preview", data={"announcement_id": "99999"})
    assert missing.status_code == 404
    bad = editor_client.post("/announcements/preview", data={"announcement_id": "²"})
    assert bad.status_code == 404


def test_preview_bad_input_is_a_clear_400(editor_client: Any) -> None:
    response = editor_client.post(
        "/announcements/preview", data={"body": "字" * 10_001}, headers=FETCH
    )
    assert response.status_code == 400 and "文字太长" in response.get_data(as_text=True)
    empty = editor_client.post("/announcements/preview", data={}, headers=FETCH)
    assert empty.status_code == 200 and "填写正文或播音稿后" in empty.get_data(as_text=True)


@pytest.mark.parametrize("role", [Role.REVIEWER, Role.OPERATOR])
def test_preview_and_listen_are_for_editors_only(app: Any, make_user: Any, role: Role) -> None:
    client = app.test_client()
    login(client, make_user(role))
    for path in ("/announcements/preview", "/announcements/listen"):
        assert client.post(path, data={"body": "你好"}, headers=FETCH).status_code == 403
    anonymous = app.test_client().post("/announcements/preview", data={"body": "你好"})
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_preview_and_listen_need_the_csrf_token(csrf_app: Any, make_user: Any) -> None:
    client = csrf_app.test_client()
    user = make_user(Role.EDITOR)
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    login_data = {"username": user.username, "password": "correct-horse-1", "csrf_token": token}
    assert client.post("/login", data=login_data).status_code == 302
    for path in ("/announcements/preview", "/announcements/listen"):
        response = client.post(path, data={"body": "你好", "voice": VOICE}, headers=FETCH)
        assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    editor = client.get("/announcements/new").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', editor).group(1)  # type: ignore[union-attr]
    ok = client.post(
        "/announcements/preview", data={"body": "你好", "csrf_token": token}, headers=FETCH
    )
    assert ok.status_code == 200


# -- 试听 ----------------------------------------------------------------------------------


def test_listen_renders_the_opening_once_and_serves_it(
    editor_client: Any, synth_calls: list[list[str]]
) -> None:
    body = "各位村民请注意。明天上午8:00到10:00停水，请提前储水。" + "后面的内容很长。" * 40
    data = {"body": body, "voice": VOICE, "rate": "10"}
    first = editor_client.post("/announcements/listen", data=data, headers=FETCH)
    assert first.status_code == 200, first.get_data(as_text=True)
    result = first.json
    assert result["engine"] == "offline" and result["text"].startswith("各位村民请注意。")
    assert len(result["text"]) <= speech_svc.LISTEN_CHARS
    assert "eSpeak" in result["summary"] and result["voice_heard"] is False
    audio = editor_client.get(result["url"])
    assert audio.status_code == 200 and audio.mimetype == "audio/mpeg" and len(audio.data) > 1000
    assert len(synth_calls) == 1
    again = editor_client.post("/announcements/listen", data=data, headers=FETCH)
    assert again.json["url"] == result["url"]
    assert len(synth_calls) == 1  # same text, voice and rate: from the cache
    faster = editor_client.post("/announcements/listen", data={**data, "rate": "20"}, headers=FETCH)
    assert faster.json["url"] != result["url"] and len(synth_calls) == 2


def test_listen_without_scripts_shows_a_player_in_the_editor(
    editor_client: Any, content: Any
) -> None:
    data = {**content(body="明天停水。"), "voice": VOICE, "rate": "0"}
    html = editor_client.post("/announcements/listen", data=data).get_data(as_text=True)
    assert re.search(r'<audio controls src="/schedule/audio/sample/[0-9a-f]{64}"', html)
    assert 'value="明天停水。"' in html or "明天停水。</textarea>" in html


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"body": "", "voice": VOICE}, "请先填写"),
        ({"body": "你好", "voice": "zh-CN-<script>"}, "请选择列表中的声音"),
        ({"body": "你好", "voice": VOICE, "rate": "99"}, "语速应在"),
        ({"body": "你好", "voice": VOICE, "rate": "１０"}, "语速应在"),
        ({"body": "字" * 10_001, "voice": VOICE}, "文字太长"),
        ({"body": "★★★", "voice": VOICE}, "试听音频生成失败"),
    ],
)
def test_listen_bad_input(editor_client: Any, data: dict[str, str], needle: str) -> None:
    response = editor_client.post("/announcements/listen", data=data, headers=FETCH)
    assert 400 <= response.status_code < 500 or response.status_code == 502
    assert needle in response.json["error"]


def test_listen_is_rate_limited_per_user(
    app: Any, make_user: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    app.extensions["dalaba.listen.limiter"] = speech_web.RateLimiter(2, 60.0, clock=lambda: now[0])
    rendered: list[str] = []

    class Quick:
        def render(self, text: str, **kwargs: Any) -> Any:
            rendered.append(text)
            raise TextError("测试")

    app.extensions["dalaba.listen.renderer"] = Quick()
    first, second = app.test_client(), app.test_client()
    login(first, make_user(Role.EDITOR))
    login(second, make_user(Role.EDITOR))
    data = {"body": "你好", "voice": VOICE}
    codes = [first.post("/announcements/listen", data=data, headers=FETCH) for _ in range(3)]
    assert [r.status_code for r in codes] == [502, 502, 429]
    assert "每分钟最多 2 次" in codes[2].json["error"] and codes[2].headers["Retry-After"] == "60"
    assert second.post("/announcements/listen", data=data, headers=FETCH).status_code == 502
    now[0] += 61
    for _ in range(2):
        assert first.post("/announcements/listen", data=data, headers=FETCH).status_code == 502
    page = first.post("/announcements/listen", data=data)  # without scripts: the editor again
    assert page.status_code == 429 and "试听太频繁" in page.get_data(as_text=True)
    assert 'id="announcement-form"' in page.get_data(as_text=True)
    assert len(rendered) == 5


def test_listen_in_english(app: Any, make_user: Any) -> None:
    app.extensions["dalaba.listen.limiter"] = speech_web.RateLimiter(0, 60.0)
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    client.post("/lang", data={"lang": "en"})
    response = client.post(
        "/announcements/listen", data={"body": "你", "voice": VOICE}, headers=FETCH
    )
    assert response.status_code == 429 and "per minute" in response.json["error"]


def test_listen_falls_back_offline_when_edge_is_unreachable(
    app: Any, make_user: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dataclasses
    import socket

    with socket.socket() as sock:  # a port nothing listens on: edge-tts fails at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    auto = dataclasses.replace(
        settings, tts_engine="auto", edge_wss_url=f"ws://127.0.0.1:{port}/edge?x=1"
    )
    app.extensions["dalaba.settings"] = auto
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    response = client.post(
        "/announcements/listen", data={"body": "明天停水。", "voice": VOICE}, headers=FETCH
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.json["engine"] == "offline" and "在线语音不可用" in response.json["reason"]
    editor = client.get("/announcements/new").get_data(as_text=True)
    status = re.search(r'data-testid="engine-status" data-engine="(\w+)"', editor)
    assert status and status.group(1) == "offline"  # the menu learnt from the sample
    assert "在线语音" in editor and "不可用" in editor


# -- which engine the voice menu promises -------------------------------------------------


def test_menu_says_espeak_speaks_in_offline_mode(editor_client: Any) -> None:
    html = editor_client.get("/announcements/new").get_data(as_text=True)
    assert 'data-engine="offline"' in html and "eSpeak" in html
    assert "晓晓（女声，温暖）（现由eSpeak代读）" in html


def test_engine_status_follows_recent_render_outcomes(settings: Any) -> None:
    import dataclasses

    auto = dataclasses.replace(settings, tts_engine="auto")
    now = utcnow()
    unknown = speech_svc.engine_status(auto, None, now=now)
    assert unknown.engine == "edge" and unknown.named_voice and unknown.reason is None
    ok = speech_svc.Outcome(now - timedelta(minutes=5), "edge")
    assert speech_svc.engine_status(auto, ok, now=now).engine == "edge"
    down = speech_svc.Outcome(now - timedelta(minutes=5), "offline", "连接超时")
    status = speech_svc.engine_status(auto, down, now=now)
    assert status.engine == "offline" and not status.named_voice
    assert status.reason is not None and "连接超时" in status.reason.render()
    stale = speech_svc.Outcome(now - timedelta(hours=2), "offline", "连接超时")
    assert speech_svc.engine_status(auto, stale, now=now).engine == "edge"
    edge_only = dataclasses.replace(settings, tts_engine="edge")
    assert speech_svc.engine_status(edge_only, down, now=now).fails
    assert speech_svc.engine_status(auto, down, recording=True, now=now).engine == "recording"


def test_last_outcome_reads_clip_rows_and_samples(session: Any, make_announcement: Any) -> None:
    ann = make_announcement("in_review")
    assert speech_svc.last_outcome(session) is None
    clip = Clip(
        revision_id=ann.current.id,
        profile=ClipProfile.LOUDSPEAKER,
        state=JobState.DONE,
        engine="offline",
        fallback_reason="在线语音不可用，已改用离线语音：超时",
    )
    session.add(clip)
    session.commit()
    found = speech_svc.last_outcome(session)
    assert found is not None and found.fallback_reason and "超时" in found.fallback_reason
    newer = speech_svc.Outcome(utcnow() + timedelta(seconds=5), "edge")
    assert speech_svc.last_outcome(session, [newer]) == newer


def test_listen_text_takes_whole_sentences() -> None:
    text = "第一句。第二句！" + "很长" * 200
    assert speech_svc.listen_text(text) == "第一句。第二句！"
    assert speech_svc.listen_text("短短一句") == "短短一句"
    assert len(speech_svc.listen_text("很长" * 200)) <= speech_svc.LISTEN_CHARS


# -- players where the reviewer approves --------------------------------------------------


def test_review_and_announcement_pages_play_both_profiles(
    app: Any, session: Any, make_user: Any, make_announcement: Any, settings: Any
) -> None:
    ann = make_announcement("in_review")
    rev = ann.current
    path = settings.data_dir / "clip.mp3"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xfb" * 100)
    session.add(
        Clip(
            revision_id=rev.id,
            profile=ClipProfile.LOUDSPEAKER,
            state=JobState.DONE,
            path=str(path),
            engine="offline",
            duration=3.0,
        )
    )
    session.add(
        Clip(
            revision_id=rev.id,
            profile=ClipProfile.VOICE,
            state=JobState.PENDING,
            next_attempt_at=utcnow() + timedelta(minutes=3),
            last_error="网络错误",
        )
    )
    session.commit()
    done = session.scalar(select(Clip).where(Clip.profile == ClipProfile.LOUDSPEAKER))
    client = app.test_client()
    login(client, make_user(Role.REVIEWER))
    for url in ("/announcements/review", f"/announcements/{ann.id}"):
        html = client.get(url).get_data(as_text=True)
        assert f'src="/schedule/audio/clip/{done.id}"' in html, url
        assert 'data-testid="clip-voice"' in html and "重试" in html and "网络错误" in html
    assert client.get(f"/schedule/audio/clip/{done.id}").status_code == 200


def test_announcement_page_says_when_a_clip_is_missing(
    app: Any, make_user: Any, make_announcement: Any
) -> None:
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    draft = make_announcement("draft")
    assert "草稿不生成音频" in client.get(f"/announcements/{draft.id}").get_data(as_text=True)
    waiting = make_announcement("in_review")
    html = client.get(f"/announcements/{waiting.id}").get_data(as_text=True)
    assert "调度器没有运行" in html


def test_the_neural_engine_takes_its_place_in_the_chain(settings: Any, tmp_path: Any) -> None:
    """auto: edge, then the neural voice when a model folder is set, then eSpeak."""
    import dataclasses

    pytest.importorskip("sherpa_onnx")
    from tests.audio.neural_model import write_tiny_vits

    now = utcnow()
    down = speech_svc.Outcome(now, "offline", "连接超时")
    model = write_tiny_vits(tmp_path / "model")
    auto = dataclasses.replace(settings, tts_engine="auto", neural_model_dir=model)
    status = speech_svc.engine_status(auto, down, now=now)
    assert status.engine == "neural" and "连接超时" in str(status.reason)
    assert speech_svc.engine_status(auto, None, now=now).engine == "edge"
    # No folder configured: auto skips it, as the renderer does.
    plain = dataclasses.replace(settings, tts_engine="auto", neural_model_dir=None)
    assert speech_svc.engine_status(plain, down, now=now).engine == "offline"
    # A broken folder: eSpeak speaks, and the menu says why not the neural voice.
    (model / "model.onnx").write_bytes(b"not a model")
    broken = speech_svc.engine_status(auto, down, now=now)
    assert broken.engine == "offline" and broken.reason is not None
    neural_only = dataclasses.replace(auto, tts_engine="neural")
    failing = speech_svc.engine_status(neural_only, None, now=now)
    assert failing.fails and "离线神经语音不可用" in failing.reason.render()
