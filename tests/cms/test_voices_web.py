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
