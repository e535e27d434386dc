"""Configuration: one Settings object from DALABA_* variables, each value checked."""

from __future__ import annotations

import pytest

from cms.settings import ConfigError, Settings


def test_defaults_and_overrides(tmp_path):
    s = Settings.from_env({"DALABA_SECRET_KEY": "k", "DALABA_DATA_DIR": str(tmp_path)})
    assert s.database_url == f"sqlite:///{tmp_path / 'dalaba.db'}"
    assert s.timezone == "Asia/Shanghai" and s.tts_engine == "auto" and s.scheduler_enabled
    assert s.escalate_after_minutes == 120 and s.accel_redirect is None and not s.x_sendfile


def test_demo_generates_and_keeps_a_secret(tmp_path):
    first = Settings.from_env({}, demo=True, data_dir=tmp_path)
    again = Settings.from_env({}, demo=True, data_dir=tmp_path)
    assert first.secret_key == again.secret_key and len(first.secret_key) == 64
    assert first.tts_engine == "offline"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DALABA_TIMEZONE", "Mars/Base"),
        ("DALABA_TTS_ENGINE", "loud"),
        ("DALABA_SCHEDULER", "maybe"),
        ("DALABA_BUILD_TIME", "25:00"),
        ("DALABA_ACCEL_REDIRECT", "data"),
        ("DALABA_X_SENDFILE", "sometimes"),
        ("DALABA_ESCALATE_AFTER_MINUTES", "-5"),
        ("DALABA_LATE_GRACE_MINUTES", "abc"),
        ("DALABA_PORT", "70000"),
    ],
)
def test_bad_values_name_the_variable(tmp_path, name, value):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"DALABA_SECRET_KEY": "k", "DALABA_DATA_DIR": str(tmp_path), name: value})
    assert name in str(err.value)


def test_production_needs_a_secret(tmp_path):
    with pytest.raises(ConfigError) as err:
        Settings.from_env({"DALABA_DATA_DIR": str(tmp_path)})
    assert "DALABA_SECRET_KEY" in str(err.value)


def test_neural_engine_needs_a_usable_model_folder(tmp_path):
    from tests.audio.neural_model import write_tiny_vits

    base = {"DALABA_SECRET_KEY": "k", "DALABA_DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match="DALABA_NEURAL_MODEL_DIR"):
        Settings.from_env({**base, "DALABA_TTS_ENGINE": "neural"})
    missing = {**base, "DALABA_NEURAL_MODEL_DIR": str(tmp_path / "nowhere")}
    with pytest.raises(ConfigError, match="DALABA_NEURAL_MODEL_DIR 无效：.*不存在"):
        Settings.from_env({**missing, "DALABA_TTS_ENGINE": "neural"})
    # auto mode starts anyway: renders fall back to eSpeak NG and say why
    assert Settings.from_env(missing).neural_model_dir == tmp_path / "nowhere"
    model = write_tiny_vits(tmp_path / "model")
    (model / "tokens.txt").unlink()
    folder = {**base, "DALABA_NEURAL_MODEL_DIR": str(model), "DALABA_TTS_ENGINE": "neural"}
    with pytest.raises(ConfigError, match="缺少 tokens.txt"):
        Settings.from_env(folder)
    write_tiny_vits(model)
    settings = Settings.from_env(folder)
    assert settings.tts_engine == "neural" and settings.neural_model_dir == model
    assert Settings.from_env(base).neural_model_dir is None
