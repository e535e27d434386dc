"""Free space against DALABA_MIN_FREE_MB, and every way a full disk shows up as an error."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from audio.errors import DiskFullError, MasteringError
from cms import disk
from cms.services.errors import Message
from cms.settings import ConfigError, Settings


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(env, data_dir=tmp_path / "data", secret_key="s")


def test_min_free_mb_setting(tmp_path: Path) -> None:
    assert _settings(tmp_path).min_free_mb == 200
    assert _settings(tmp_path, DALABA_MIN_FREE_MB="0").min_free_mb == 0
    for bad in ("lots", "-1", "1e9"):
        with pytest.raises(ConfigError, match="DALABA_MIN_FREE_MB"):
            _settings(tmp_path, DALABA_MIN_FREE_MB=bad)


def test_space_is_short_below_the_minimum_and_never_when_unknown() -> None:
    assert disk.DiskSpace(199, 200).short
    assert not disk.DiskSpace(200, 200).short
    assert not disk.DiskSpace(5, 0).short  # 0 switches the check off
    assert not disk.DiskSpace(None, 200).short
    assert disk.DiskSpace(3, 200).reason() == Message(disk.WAIT_REASON, {"free": 3, "need": 200})
    assert disk.DiskSpace(3, 200).reason().render() == "磁盘空间不足（剩余 3 MB，至少需要 200 MB）"


def test_free_space_of_a_folder_not_created_yet(tmp_path: Path) -> None:
    settings = _settings(tmp_path, DALABA_MIN_FREE_MB="1")
    assert not settings.audio_dir.exists()
    space = disk.check(settings)
    assert space.free_mb is not None and space.free_mb > 0 and space.need_mb == 1


def test_free_space_that_cannot_be_read_never_stops_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(disk.shutil, "disk_usage", broken)
    assert disk.free_mb(tmp_path) is None
    assert not disk.check(_settings(tmp_path)).short


def _wrapped(orig: BaseException) -> OperationalError:
    return OperationalError("INSERT INTO login_failure …", {}, orig)


class _PgDiskFull(Exception):
    sqlstate = "53100"


def _chained() -> BaseException:
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as exc:
            raise MasteringError("写入失败") from exc
    except MasteringError as outer:
        return outer


@pytest.mark.parametrize(
    "exc",
    [
        DiskFullError(),
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        _wrapped(sqlite3.OperationalError("database or disk is full")),
        sqlite3.OperationalError("database or disk is full"),
        _wrapped(_PgDiskFull("could not extend file: No space left on device")),
        _chained(),
    ],
    ids=["audio", "enospc", "quota", "sqlite", "sqlite-raw", "postgres", "chained"],
)
def test_disk_full_is_recognised(exc: BaseException) -> None:
    assert disk.is_disk_full(exc)


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EACCES, "Permission denied"),
        FileNotFoundError(errno.ENOENT, "No such file"),
        _wrapped(sqlite3.OperationalError("database is locked")),
        IntegrityError("INSERT …", {}, sqlite3.IntegrityError("UNIQUE constraint failed")),
        MasteringError("处理音频失败（ffmpeg：Invalid data）"),
        ValueError("database"),
    ],
    ids=["eacces", "enoent", "locked", "integrity", "mastering", "value"],
)
def test_other_errors_are_not_disk_full(exc: BaseException) -> None:
    assert not disk.is_disk_full(exc)


def test_a_real_sqlite_full_error_is_recognised(tmp_path: Path) -> None:
    """SQLite's own SQLITE_FULL (a page limit stands in for the full disk)."""
    conn = sqlite3.connect(tmp_path / "x.db")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.execute("PRAGMA max_page_count = 3")
    with pytest.raises(sqlite3.OperationalError) as caught:
        for _ in range(100):
            conn.execute("INSERT INTO t VALUES (?)", ("x" * 4000,))
    conn.close()
    assert disk.is_disk_full(caught.value)


def test_stored_messages_round_trip_and_plain_texts_stay_as_they_are() -> None:
    message = Message(disk.WAIT_REASON, {"free": 12, "need": 200})
    stored = message.dumps()
    assert stored.startswith(disk.waiting_reason_prefix())
    assert Message.loads(stored) == message
    assert Message.loads("广播点已停用或时段已删除") == Message("广播点已停用或时段已删除")
    assert Message.loads('{"msgid": broken').render() == '{"msgid": broken'
    assert Message.loads("ffmpeg {oops}").render() == "ffmpeg {oops}"


def _env(tmp_path: Path) -> dict[str, str]:
    return {"DALABA_DATA_DIR": str(tmp_path / "data"), "DALABA_TTS_ENGINE": "offline"}


def test_any_command_answers_a_full_database_with_one_message_and_exit_75(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from cms import migrate
    from cms.cli import cli

    def full(engine: object) -> None:
        raise _wrapped(sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(migrate, "upgrade", full)
    result = CliRunner().invoke(cli, ["db", "upgrade"], env=_env(tmp_path))
    assert result.exit_code == 75
    assert disk.DISK_FULL in result.output and "Traceback" not in result.output


def test_say_answers_a_full_disk_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import audio
    from cms.cli import cli

    def full(*args: object, **kwargs: object) -> None:
        raise DiskFullError("写入文件失败：磁盘空间不足，无法写入音频文件")

    monkeypatch.setattr(audio, "export_file", full)
    out = tmp_path / "say.mp3"
    result = CliRunner().invoke(cli, ["say", "注意防火。", "-o", str(out)], env=_env(tmp_path))
    assert result.exit_code == 75, result.output
    assert disk.DISK_FULL in result.output
