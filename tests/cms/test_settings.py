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
