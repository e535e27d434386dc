"""A full disk in the web: 503 with one clear message for writes, login and reading still work.

SQLite keeps reading on a full disk but every commit that wrote fails with SQLITE_FULL.
Here a connection class does exactly that on demand, so these tests run everywhere;
``tests/scheduler/test_disk_fs.py`` checks the same on a really full filesystem.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from audio.errors import DiskFullError
from cms import disk
from cms.db import BUSY_TIMEOUT_MS, make_engine
from cms.models import Area, LoginFailure, Role, User
from cms.services import users
from cms.settings import Settings
from cms.web import create_app, i18n
from cms.web.auth import PUBLIC, rule
from tests.conftest import PASSWORD, login

DISK_FULL_ZH = "磁盘空间不足，操作未能完成：请清理磁盘后再试"
BANNER_ZH = "磁盘空间不足：剩余 0 MB（至少需要 200 MB），音频生成已暂停，请清理磁盘"


class FullDiskConnection(sqlite3.Connection):
    """A SQLite connection that, while ``full`` is set, fails every commit that wrote."""

    full = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._changes = 0

    def commit(self) -> None:
        if type(self).full and self.total_changes != self._changes:
            super().rollback()
            self._changes = self.total_changes
            raise sqlite3.OperationalError("database or disk is full")
        super().commit()
        self._changes = self.total_changes

    def rollback(self) -> None:
        super().rollback()
        self._changes = self.total_changes


@pytest.fixture
def engine(settings: Settings, migrated_db: Path) -> Iterator[Engine]:
    target = Path(settings.database_url.removeprefix("sqlite:///"))
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_db, target)
    connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000, "factory": FullDiskConnection}
    engine = make_engine(
        settings.database_url, data_dir=settings.data_dir, connect_args=connect_args
    )
    yield engine
    engine.dispose()


@pytest.fixture
def people(make_user) -> dict[Role, User]:  # type: ignore[no-untyped-def]
    """Users made while there was still space."""
    return {role: make_user(role) for role in (Role.ADMIN, Role.EDITOR, Role.OPERATOR)}


@pytest.fixture
def token(session, people) -> str:  # type: ignore[no-untyped-def]
    value = users.issue_api_token(session, None, people[Role.EDITOR])
    session.commit()
    return value


@pytest.fixture
def full_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """From here on the disk is full: no free space, and every write to the database fails."""
    monkeypatch.setattr(disk, "free_mb", lambda path: 0)
    FullDiskConnection.full = True
    yield
    FullDiskConnection.full = False


def test_login_still_works_and_a_wrong_password_is_no_crash(  # type: ignore[no-untyped-def]
    client, people, session, full_disk
):
    editor = people[Role.EDITOR]
    wrong = client.post("/login", data={"username": editor.username, "password": "nope"})
    assert wrong.status_code == 401
    assert "用户名或密码不正确" in wrong.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(LoginFailure)) == 0  # not saved
    right = client.post("/login", data={"username": editor.username, "password": PASSWORD})
    assert right.status_code == 302
    assert client.get("/").status_code == 200


def test_read_pages_answer_and_staff_see_the_banner(client, people, full_disk):  # type: ignore[no-untyped-def]
    login(client, people[Role.EDITOR])
    for path in ("/", "/schedule/", "/announcements/", "/schedule/outlets"):
        response = client.get(path)
        assert response.status_code == 200, path
    assert BANNER_ZH in client.get("/").get_data(as_text=True)
    assert BANNER_ZH in client.get("/schedule/").get_data(as_text=True)
    client.post("/lang", data={"lang": "en"})  # remembered in the session only: no write
    page = client.get("/").get_data(as_text=True)
    assert "Disk almost full: 0 MB free (at least 200 MB needed)" in page
    client.post("/logout")
    login(client, people[Role.OPERATOR])
    page = client.get("/")
    assert page.status_code == 200 and 'data-testid="disk-banner"' not in page.get_data(
        as_text=True
    )


def test_no_banner_while_there_is_space(client, people, monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(disk, "free_mb", lambda path: 201)
    login(client, people[Role.ADMIN])
    assert 'data-testid="disk-banner"' not in client.get("/").get_data(as_text=True)


def test_a_form_that_writes_answers_503_and_loses_nothing_else(  # type: ignore[no-untyped-def]
    client, people, session, full_disk
):
    login(client, people[Role.ADMIN])
    response = client.post("/admin/areas", data={"name": "清水镇", "kind": "township"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert DISK_FULL_ZH in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(Area)) == 0
    # The session was rolled back: the next page reads normally.
    assert client.get("/admin/areas").status_code == 200


def test_an_api_write_answers_503_disk_full_json(client, token, content, full_disk):  # type: ignore[no-untyped-def]
    body = content()
    del body["to_loudspeaker"], body["to_chats"]
    body["channels"] = ["loudspeaker", "chats"]  # valid: the write itself meets the full disk
    response = client.post(
        "/api/v1/announcements",
        json=body,
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"},
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "60"
    assert response.get_json() == {
        "error": {"code": "disk_full", "message": DISK_FULL_ZH, "fields": {}}
    }


@pytest.fixture
def failing_app(app):  # type: ignore[no-untyped-def]
    """The app with two routes that raise whatever error the test names."""
    errors: dict[str, BaseException] = {
        "enospc": OSError(errno.ENOSPC, "No space left on device"),
        "audio": DiskFullError("合成语音失败：磁盘空间不足，无法写入音频文件"),
        "eacces": PermissionError(errno.EACCES, "Permission denied"),
    }

    @rule(PUBLIC)
    def fail(kind: str) -> str:
        raise errors[kind]

    app.add_url_rule("/test-fail/<kind>", "test_fail", fail)
    app.add_url_rule("/api/v1/test-fail/<kind>", "test_fail_api", fail)
    return app


@pytest.mark.parametrize("kind", ["enospc", "audio"])
def test_enospc_from_files_or_ffmpeg_is_the_same_503(failing_app, kind: str) -> None:  # type: ignore[no-untyped-def]
    client = failing_app.test_client()
    page = client.get(f"/test-fail/{kind}")
    assert page.status_code == 503 and DISK_FULL_ZH in page.get_data(as_text=True)
    api = client.get(f"/api/v1/test-fail/{kind}")
    assert api.status_code == 503 and api.get_json()["error"]["code"] == "disk_full"


def test_other_os_errors_are_not_dressed_up_as_a_full_disk(failing_app) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PermissionError):  # the testing app propagates what would be a 500
        failing_app.test_client().get("/test-fail/eacces")


def test_the_app_starts_when_the_data_folder_cannot_hold_the_translations(  # type: ignore[no-untyped-def]
    settings, engine, people
):
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "cache").write_text("not a folder")  # any write below it fails
    folder = i18n.compile_catalogues(settings.data_dir / "cache" / "translations")
    assert (folder / "en" / "LC_MESSAGES" / "messages.mo").stat().st_size > 0
    app = create_app(settings, engine=engine)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    client = app.test_client()
    client.post("/lang", data={"lang": "en"})
    assert "Log in" in client.get("/login").get_data(as_text=True)


def test_an_api_read_still_answers_on_a_full_disk(client, token, full_disk):  # type: ignore[no-untyped-def]
    """Reading writes nothing; the token's "last used" bookkeeping fails quietly."""
    response = client.get("/api/v1/topics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.get_data(as_text=True)


def test_logout_on_a_full_disk_ends_the_session_and_is_written_when_space_returns(  # type: ignore[no-untyped-def]
    app, client, people, session, full_disk
):
    editor = people[Role.EDITOR]
    login(client, editor)
    copy = app.test_client()  # the same cookie on another device
    copy.set_cookie("session", client.get_cookie("session").value)
    assert copy.get("/").status_code == 200
    response = client.post("/logout")
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert client.get("/").status_code == 302  # this browser: logged out
    assert copy.get("/").status_code == 302  # the copied cookie: ended too
    assert copy.get("/announcements/").status_code == 302
    session.rollback()
    before = session.get(User, editor.id).session_version  # not written: the disk is full
    # A new login works, even with the disk still full.
    login(client, editor)
    assert client.get("/").status_code == 200
    # Space returns: the next login writes the logout, and the old cookie stays ended.
    FullDiskConnection.full = False
    other = app.test_client()
    login(other, people[Role.ADMIN])
    session.rollback()
    session.expire_all()
    assert session.get(User, editor.id).session_version == before + 1
    assert copy.get("/").status_code == 302
