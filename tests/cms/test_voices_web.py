"""Installed neural voices on the web: the voice menu names each voice's speaker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cms.models import Role
from cms.settings import Settings
from tests.audio.neural_model import write_tiny_kokoro
from tests.conftest import login

pytest.importorskip("sherpa_onnx")


def kokoro_folder(root: Path) -> Path:
    folder = write_tiny_kokoro(root / "models" / "kokoro-multi-lang-v1_1")
    speakers = [
        {"key": "zf_001", "label": "Kokoro zf_001", "gender": "female"},
        {"key": "zf_002", "label": "Kokoro zf_002", "gender": "female"},
        {"key": "zm_009", "label": "Kokoro zm_009", "gender": "male"},
    ]
    (folder / "dalaba-model.json").write_text(
        json.dumps({"name": folder.name, "speakers": speakers}), encoding="utf-8"
    )
    (folder.parent / "default").write_text(folder.name, encoding="utf-8")
    return folder


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    kokoro_folder(tmp_path / "data")
    # no DALABA_NEURAL_MODEL_DIR: the installed default model is used
    return Settings.from_env(
        {}, data_dir=tmp_path / "data", secret_key="test-secret", tts_engine="neural"
    )


def test_settings_pick_the_installed_model(settings: Settings, tmp_path: Path) -> None:
    assert settings.neural_model_dir == tmp_path / "data" / "models" / "kokoro-multi-lang-v1_1"


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_voice_menu_names_each_speaker(app: Any, make_user: Any, lang: str) -> None:
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    client.post("/lang", data={"lang": lang, "next": "/"})
    html = client.get("/announcements/new").get_data(as_text=True)
    menu = html[html.index('name="voice"') : html.index("</select>", html.index('name="voice"'))]
    options = menu.split("<option")[1:]
    female, male = ("（女声）", "（男声）") if lang == "zh" else (" (female)", " (male)")
    assert "Kokoro zf_001" + female in options[0]  # 晓晓
    assert "Kokoro zm_009" + male in options[1]  # 云健
    assert "Kokoro zf_002" + female in options[2]  # 晓伊


@pytest.fixture
def admin_client(app: Any, make_user: Any) -> Any:
    client = app.test_client()
    login(client, make_user(Role.ADMIN))
    return client


def upload(client: Any, path: Path, sha256: str = "") -> Any:
    with path.open("rb") as handle:
        return client.post(
            "/admin/voices/upload",
            data={"archive": (handle, path.name), "sha256": sha256},
            content_type="multipart/form-data",
            follow_redirects=True,
        )


def test_admin_page_lists_installed_and_catalogue(
    admin_client: Any, make_user: Any, app: Any
) -> None:
    html = admin_client.get("/admin/voices/").get_data(as_text=True)
    assert 'data-testid="model-kokoro-multi-lang-v1_1"' in html and "正在使用" in html
    assert "matcha-icefall-zh-baker" in html and "DALABA_MODEL_MIRROR" in html
    editor = app.test_client()
    login(editor, make_user(Role.EDITOR))
    assert editor.get("/admin/voices/").status_code == 403
    assert editor.post("/admin/voices/trial", data={}).status_code == 403


def test_upload_installs_tries_and_plays(admin_client: Any, tmp_path: Path, session: Any) -> None:
    from cms.models import AuditLog
    from tests.audio.neural_model import write_tiny_matcha
    from tests.audio.test_install import tar_folder

    archive = tmp_path / "village-matcha.tar.bz2"
    archive.write_bytes(tar_folder(write_tiny_matcha(tmp_path / "src"), "village-matcha"))
    html = upload(admin_client, archive).get_data(as_text=True)
    assert "已安装 village-matcha，试加载通过" in html and "重启 dalaba serve 后" in html
    assert 'data-testid="model-village-matcha"' in html
    assert session.query(AuditLog).filter_by(action="voice.install").count() == 1
    page = admin_client.post(
        "/admin/voices/trial",
        data={"model": "village-matcha", "voice": "zh-CN-YunjianNeural", "text": "请注意防火。"},
    ).get_data(as_text=True)
    assert 'data-testid="trial-result"' in page
    url = page.split('<audio controls preload="none" src="')[1].split('"')[0]
    audio = admin_client.get(url)
    assert audio.status_code == 200 and audio.mimetype == "audio/mpeg" and len(audio.data) > 1000


@pytest.mark.parametrize("damage", ["traversal", "cannot-speak", "not-an-archive"])
def test_bad_uploads_are_refused_and_nothing_stays(
    admin_client: Any, tmp_path: Path, settings: Settings, damage: str
) -> None:
    import io
    import tarfile

    from tests.audio.neural_model import write_tiny_vits
    from tests.audio.test_install import tar_folder

    path = tmp_path / "bad-model.tar.bz2"
    if damage == "traversal":
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:bz2") as tar:
            info = tarfile.TarInfo("../../evil.txt")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
        path.write_bytes(buffer.getvalue())
        expected = "越出目标文件夹"
    elif damage == "cannot-speak":
        folder = write_tiny_vits(tmp_path / "src", metadata={"sample_rate": None})
        path.write_bytes(tar_folder(folder, "bad-model"))
        expected = "模型未能通过试加载，已移除"
    else:
        path = tmp_path / "notes.txt"
        path.write_text("hello", encoding="utf-8")
        expected = "模型压缩包应为"
    html = upload(admin_client, path).get_data(as_text=True)
    assert expected in html
    root = settings.data_dir / "models"
    assert sorted(p.name for p in root.iterdir()) == ["default", "kokoro-multi-lang-v1_1"]
    assert (root / "default").read_text(encoding="utf-8").strip() == "kokoro-multi-lang-v1_1"


def test_outlet_form_sets_and_inherits_voice(admin_client: Any, session: Any, grid: Any) -> None:
    from cms.models import Outlet

    area = grid["v1"]
    page = admin_client.get("/admin/outlets/new").get_data(as_text=True)
    assert "（沿用每条公告自己的声音）" in page and "（沿用乡镇设置：仅离线神经语音）" in page
    data = {
        "name": "男声喇叭",
        "kind": "loudspeaker",
        "area_id": str(area.id),
        "slots": "07:30 10",
        "loop_minutes": "30",
        "active": "on",
        "voice": "zh-CN-YunjianNeural",
        "tts_engine": "neural",
    }
    assert admin_client.post("/admin/outlets/new", data=data).status_code == 302
    outlet = session.query(Outlet).filter_by(name="男声喇叭").one()
    assert (outlet.voice, outlet.tts_engine) == ("zh-CN-YunjianNeural", "neural")
    edit = admin_client.get(f"/admin/outlets/{outlet.id}").get_data(as_text=True)
    assert '<option value="zh-CN-YunjianNeural" selected>' in edit
    listing = admin_client.get("/admin/outlets").get_data(as_text=True)
    assert f'data-testid="outlet-voice-{outlet.id}">云健（男声，浑厚） · 仅离线神经语音<' in listing
    bad = admin_client.post("/admin/outlets/new", data={**data, "name": "x", "voice": "evil"})
    assert bad.status_code == 400 and "请选择列表中的声音" in bad.get_data(as_text=True)


def test_model_uploads_may_exceed_the_usual_64_mb(admin_client: Any, tmp_path: Path) -> None:
    import io
    import os
    import tarfile

    from tests.audio.neural_model import write_tiny_vits

    folder = write_tiny_vits(tmp_path / "src" / "big-vits")
    (folder / "padding.bin").write_bytes(os.urandom(65 << 20))
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname="big-vits")
    assert len(buffer.getvalue()) > 64 << 20
    path = tmp_path / "big-vits.tar"
    path.write_bytes(buffer.getvalue())
    html = upload(admin_client, path).get_data(as_text=True)
    assert "已安装 big-vits，试加载通过" in html
    # every other form keeps the usual cap
    too_big = admin_client.post(
        "/admin/topics",
        data={"name": "x" * (65 << 20)},
        content_type="application/x-www-form-urlencoded",
    )
    assert too_big.status_code == 413
