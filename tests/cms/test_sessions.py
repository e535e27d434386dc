"""Sessions end server-side; timeouts; trusted proxies; no-store; token revocation; file modes."""

from __future__ import annotations

import ipaddress
import itertools
import os
import stat
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cms.db import make_engine
from cms.models import ApiToken, AuditLog, LoginFailure, Role, User
from cms.services import users
from cms.services.errors import Conflict
from cms.settings import ConfigError, Settings
from cms.web import create_app
from tests.conftest import PASSWORD, login

HOUR = 3600
DAY = 24 * HOUR
_guesses = itertools.count()


def _app(settings: Settings, engine: Any, **changes: Any):  # type: ignore[no-untyped-def]
    app = create_app(settings.with_(**changes), engine=engine)
    app.config.update(TESTING=True, WTF_CSRF_ENABLED=False)
    return app


def _copy_cookie(source, target) -> None:  # type: ignore[no-untyped-def]
    cookie = source.get_cookie("session")
    assert cookie is not None
    target.set_cookie("session", cookie.value)


def _shift(client, **ago: int) -> None:  # type: ignore[no-untyped-def]
    """Move the session's timestamps into the past (seconds ago), instead of sleeping."""
    now = int(time.time())
    with client.session_transaction() as sess:
        for key, seconds in ago.items():
            sess[key] = now - seconds


def _to_login_with(client, url: str = "/") -> str:  # type: ignore[no-untyped-def]
    response = client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    return client.get(response.headers["Location"]).get_data(as_text=True)


# -- the session version ------------------------------------------------------------------


def test_a_cookie_copied_before_logout_is_dead_after_it(app, make_user, session):
    editor = make_user(Role.EDITOR)
    client, thief = app.test_client(), app.test_client()
    login(client, editor)
    _copy_cookie(client, thief)
    assert thief.get("/").status_code == 200  # the copy works while the login lasts
    assert client.post("/logout").status_code == 302
    page = _to_login_with(thief)
    assert "登录已失效" in page
    assert session.scalar(select(AuditLog).where(AuditLog.action == "user.logout")) is not None
    # Logging in again works, with a new cookie; the old copy stays dead.
    login(client, editor)
    assert client.get("/").status_code == 200
    assert thief.get("/").status_code == 302


def test_a_cookie_from_before_the_upgrade_is_refused(app, make_user):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    with client.session_transaction() as sess:
        # What the previous version stored: the password hash's tail, no session version.
        sess.update(uid=editor.id, pw="x" * 12, _permanent=True)
    assert client.get("/").status_code == 302


def test_a_password_change_ends_the_users_sessions(app, make_user, session):
    admin, editor = make_user(Role.ADMIN), make_user(Role.EDITOR)
    officer, boss = app.test_client(), app.test_client()
    login(officer, editor)
    login(boss, admin)
    form = {"display_name": "新名字", "role": "editor", "active": "on"}
    boss.post(f"/admin/users/{editor.id}", data=form)  # no password: the session lives on
    assert officer.get("/").status_code == 200
    boss.post(f"/admin/users/{editor.id}", data={**form, "password": "a-new-password-1"})
    assert "登录已失效" in _to_login_with(officer)
    login(officer, editor, "a-new-password-1")
    assert officer.get("/").status_code == 200


def test_an_admin_changing_their_own_password_stays_logged_in_here_only(app, make_user):
    admin = make_user(Role.ADMIN)
    here, elsewhere = app.test_client(), app.test_client()
    login(here, admin)
    _copy_cookie(here, elsewhere)
    form = {"display_name": "管理员", "role": "admin", "active": "on", "password": "new-pass-123"}
    assert here.post(f"/admin/users/{admin.id}", data=form).status_code == 302
    assert here.get("/admin/users").status_code == 200
    assert elsewhere.get("/admin/users").status_code == 302


def test_a_role_change_keeps_the_session_and_applies_at_once(app, make_user):
    admin, user = make_user(Role.ADMIN), make_user(Role.ADMIN)
    client, boss = app.test_client(), app.test_client()
    login(client, user)
    login(boss, admin)
    assert client.get("/admin/users").status_code == 200
    boss.post(
        f"/admin/users/{user.id}", data={"display_name": "x", "role": "editor", "active": "on"}
    )
    assert client.get("/admin/users").status_code == 403
    assert client.get("/").status_code == 200


# -- deactivation -------------------------------------------------------------------------


def test_deactivation_revokes_tokens_for_good_and_ends_sessions(app, make_user, session):
    admin, editor = make_user(Role.ADMIN), make_user(Role.EDITOR)
    token = users.issue_api_token(session, admin, editor, "手机")
    already = users.issue_api_token(session, admin, editor, "旧的")
    users.revoke_api_token(
        session, admin, session.scalar(select(ApiToken.id).where(ApiToken.label == "旧的"))
    )
    session.commit()
    api = {"Authorization": f"Bearer {token}"}
    officer, boss = app.test_client(), app.test_client()
    login(officer, editor)
    login(boss, admin)
    assert officer.get("/api/v1/topics", headers=api).status_code == 200

    boss.post(f"/admin/users/{editor.id}", data={"display_name": "x", "role": "editor"})
    session.rollback()  # a fresh snapshot of what the app committed
    rows = session.scalars(select(ApiToken).where(ApiToken.user_id == editor.id)).all()
    assert len(rows) == 2 and all(row.revoked_at is not None for row in rows)
    assert officer.get("/api/v1/topics", headers=api).status_code == 401
    assert officer.get("/").status_code == 302
    entry = session.scalars(
        select(AuditLog).where(AuditLog.action == "user.update").order_by(AuditLog.id.desc())
    ).first()
    assert entry is not None and entry.detail["tokens_revoked"] == 1

    # Reactivating brings neither the tokens nor the old session back.
    boss.post(
        f"/admin/users/{editor.id}", data={"display_name": "x", "role": "editor", "active": "on"}
    )
    session.rollback()  # a fresh snapshot of what the app committed
    assert session.get(User, editor.id).active
    assert officer.get("/api/v1/topics", headers=api).status_code == 401
    assert (
        officer.get("/api/v1/topics", headers={"Authorization": f"Bearer {already}"}).status_code
        == 401
    )
    assert officer.get("/").status_code == 302
    login(officer, editor)
    assert officer.get("/").status_code == 200


def test_no_token_is_issued_for_a_deactivated_user(session, make_user):
    admin, editor = make_user(Role.ADMIN), make_user(Role.EDITOR)
    users.update_user(session, admin, editor, display_name="x", role="editor", active=False)
    with pytest.raises(Conflict):
        users.issue_api_token(session, admin, editor)


# -- timeouts -----------------------------------------------------------------------------


def test_idle_timeout_ends_the_session_with_a_reason(app, make_user):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    _shift(client, seen=8 * HOUR - 60)
    assert client.get("/").status_code == 200  # just inside the idle limit
    _shift(client, seen=8 * HOUR + 1)
    page = _to_login_with(client, "/announcements/")
    assert "超过 8 小时没有操作" in page
    assert client.get("/").status_code == 302


def test_absolute_timeout_ends_even_a_busy_session(app, make_user):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    _shift(client, started=7 * DAY - 60, seen=0)
    assert client.get("/").status_code == 200
    _shift(client, started=7 * DAY + 1, seen=0)
    assert "登录已满 7 天" in _to_login_with(client)


def test_timeouts_follow_the_settings_and_the_reason_is_translated(settings, engine, make_user):
    app = _app(settings, engine, session_idle_hours=1, session_max_days=2)
    assert app.permanent_session_lifetime.days == 2
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    login(client, editor)
    _shift(client, seen=HOUR + 1)
    with client.session_transaction() as sess:
        sess["lang"] = "en"
    page = _to_login_with(client)
    assert "logged out after 1 hours without activity" in page
    login(client, editor)
    _shift(client, started=2 * DAY + 1)
    assert "logged in for 2 days" in _to_login_with(client)


def test_last_seen_moves_at_most_once_a_minute(app, make_user):
    editor = make_user(Role.EDITOR)
    client = app.test_client()
    response = login(client, editor)
    cookie = response.headers["Set-Cookie"]
    assert "Expires=" in cookie and "HttpOnly" in cookie
    client.get("/")  # the first page stores the CSRF token in the session
    for _ in range(3):
        assert "Set-Cookie" not in client.get("/").headers  # nothing new: no cookie
    _shift(client, seen=61)
    response = client.get("/")
    assert "Set-Cookie" in response.headers
    with client.session_transaction() as sess:
        assert abs(sess["seen"] - time.time()) < 5


def test_session_settings_are_validated():
    base: dict[str, Any] = {"secret_key": "x"}
    settings = Settings.from_env({}, **base)
    assert (settings.session_idle_hours, settings.session_max_days) == (8, 7)
    assert settings.proxies == 0
    custom = Settings.from_env(
        {"DALABA_SESSION_IDLE_HOURS": "2", "DALABA_SESSION_MAX_DAYS": "30"}, **base
    )
    assert (custom.session_idle_hours, custom.session_max_days) == (2, 30)
    for name, raw in [
        ("DALABA_SESSION_IDLE_HOURS", "0"),
        ("DALABA_SESSION_IDLE_HOURS", "eight"),
        ("DALABA_SESSION_IDLE_HOURS", "721"),
        ("DALABA_SESSION_MAX_DAYS", "0"),
        ("DALABA_SESSION_MAX_DAYS", "366"),
    ]:
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: raw}, **base)


def test_trusted_proxies_setting_syntax():
    def proxies(raw: str) -> object:
        return Settings.from_env({"DALABA_TRUSTED_PROXIES": raw}, secret_key="x").proxies

    assert proxies("") == 0 and proxies("0") == 0 and proxies(" 2 ") == 2
    assert proxies("127.0.0.1, 10.0.0.0/8,::1") == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    for bad in ["11", "nginx", "127.0.0.1,", "10.0.0.0/33", "²"]:
        with pytest.raises(ConfigError, match="DALABA_TRUSTED_PROXIES"):
            proxies(bad)
    with pytest.raises(ConfigError, match="DALABA_TRUSTED_PROXIES"):
        Settings.from_env({}, secret_key="x", trusted_proxies="somewhere")


# -- trusted proxies ----------------------------------------------------------------------


def _fail_logins(client, n: int, forwarded_for: str | None, peer: str = "127.0.0.1") -> None:  # type: ignore[no-untyped-def]
    """``n`` failed logins, each with another user name (so only the address throttle counts)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    for _ in range(n):
        response = client.post(
            "/login",
            data={"username": f"guess{next(_guesses)}", "password": "wrong"},
            headers=headers,
            environ_base={"REMOTE_ADDR": peer},
        )
        assert response.status_code in {401, 429}


def _login_from(client, user: User, forwarded_for: str, peer: str = "127.0.0.1") -> int:  # type: ignore[no-untyped-def]
    return client.post(
        "/login",
        data={"username": user.username, "password": PASSWORD},
        headers={"X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": peer},
    ).status_code


def test_behind_one_proxy_a_guesser_locks_out_only_itself(settings, engine, make_user, session):
    app = _app(settings, engine, trusted_proxies="1")
    editor = make_user(Role.EDITOR)
    _fail_logins(app.test_client(), 20, "203.0.113.5")
    assert set(session.scalars(select(LoginFailure.remote_addr))) == {"203.0.113.5"}
    assert _login_from(app.test_client(), editor, "203.0.113.5") == 429
    assert _login_from(app.test_client(), editor, "198.51.100.7") == 302


def test_without_the_setting_forwarded_headers_are_ignored(app, make_user, session):
    editor = make_user(Role.EDITOR)
    # A guesser inventing a new X-Forwarded-For for every try is still one address.
    for i in range(20):
        _fail_logins(app.test_client(), 1, f"203.0.113.{i}", peer="192.0.2.1")
    assert set(session.scalars(select(LoginFailure.remote_addr))) == {"192.0.2.1"}
    assert _login_from(app.test_client(), editor, "198.51.100.7", peer="192.0.2.1") == 429


def test_a_list_of_proxies_is_believed_only_from_those_addresses(
    settings, engine, make_user, session
):
    app = _app(settings, engine, trusted_proxies="10.0.0.1")
    editor = make_user(Role.EDITOR)
    _fail_logins(app.test_client(), 20, "203.0.113.5", peer="10.0.0.1")
    assert _login_from(app.test_client(), editor, "198.51.100.7", peer="10.0.0.1") == 302
    # Straight from elsewhere, a claimed address counts for nothing.
    _fail_logins(app.test_client(), 1, "198.51.100.8", peer="192.0.2.9")
    addresses = set(session.scalars(select(LoginFailure.remote_addr)))
    assert addresses == {"203.0.113.5", "192.0.2.9"}


def _seen_by_app(settings: Settings, proxies: str, environ: dict[str, str]) -> tuple[str, str, str]:
    from cms.web import proxy

    seen: dict[str, str] = {}

    def inner(env, start_response):  # type: ignore[no-untyped-def]
        seen.update(
            addr=env["REMOTE_ADDR"], scheme=env["wsgi.url_scheme"], host=env.get("HTTP_HOST", "")
        )
        start_response("204 No Content", [])
        return [b""]

    wrapped = proxy.wrap(inner, settings.with_(trusted_proxies=proxies))
    env = {"wsgi.url_scheme": "http", "HTTP_HOST": "dalaba.example", **environ}
    wrapped(env, lambda *a: None)
    return seen["addr"], seen["scheme"], seen["host"]


@pytest.mark.parametrize(
    ("proxies", "peer", "forwarded", "expected"),
    [
        ("", "127.0.0.1", "203.0.113.5", "127.0.0.1"),
        ("1", "127.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("1", "127.0.0.1", "6.6.6.6, 203.0.113.5", "203.0.113.5"),  # a spoofed entry in front
        ("2", "127.0.0.1", "6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        ("10.0.0.1", "10.0.0.1", "6.6.6.6, 203.0.113.5", "203.0.113.5"),
        ("10.0.0.1", "192.0.2.9", "203.0.113.5", "192.0.2.9"),
        ("10.0.0.0/24", "10.0.0.1", "6.6.6.6, 203.0.113.5, 10.0.0.2", "203.0.113.5"),
        ("127.0.0.1", "::ffff:127.0.0.1", "203.0.113.5", "203.0.113.5"),
        ("::1, 127.0.0.1", "::1", "2001:db8::5", "2001:db8::5"),
    ],
)
def test_the_client_address_behind_proxies(settings, proxies, peer, forwarded, expected):
    addr, _, _ = _seen_by_app(
        settings, proxies, {"REMOTE_ADDR": peer, "HTTP_X_FORWARDED_FOR": forwarded}
    )
    assert addr == expected


def test_forwarded_scheme_is_believed_but_never_the_host(settings):
    environ = {
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_X_FORWARDED_FOR": "203.0.113.5",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_HOST": "evil.example",
    }
    assert _seen_by_app(settings, "10.0.0.1", environ)[1:] == ("https", "dalaba.example")
    assert _seen_by_app(settings, "1", environ)[1:] == ("https", "dalaba.example")
    assert _seen_by_app(settings, "", environ)[1:] == ("http", "dalaba.example")
    assert _seen_by_app(settings, "10.0.0.2", environ)[1:] == ("http", "dalaba.example")


# -- caching ------------------------------------------------------------------------------


def test_signed_in_pages_and_api_answers_are_not_stored(app, make_user, session):
    admin = make_user(Role.ADMIN)
    token = users.issue_api_token(session, admin, admin)
    session.commit()
    client = app.test_client()
    anonymous = client.get("/login")
    assert "no-store" not in anonymous.headers.get("Cache-Control", "")
    login(client, admin)
    for url in ["/", "/admin/tokens", "/admin/users", "/announcements/", "/no-such-page"]:
        assert client.get(url).headers.get("Cache-Control") == "no-store", url
    issued = client.post("/admin/tokens", data={"username": admin.username, "label": "x"})
    assert "dlb_" in issued.get_data(as_text=True)
    assert issued.headers["Cache-Control"] == "no-store"
    api = app.test_client()
    for headers in [{"Authorization": f"Bearer {token}"}, {}]:
        response = api.get("/api/v1/topics", headers=headers)
        assert response.headers["Cache-Control"] == "no-store", response.status_code
    static = client.get("/static/app.css")
    assert static.status_code == 200
    assert "no-store" not in static.headers.get("Cache-Control", "")
    assert "ETag" in static.headers


# -- file modes ---------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_database_and_its_folder_are_private(tmp_path):
    old = os.umask(0o022)
    try:
        db_path = tmp_path / "new-data" / "dalaba.db"
        engine = make_engine(f"sqlite:///{db_path}")
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            conn.exec_driver_sql("INSERT INTO t VALUES (1)")
            assert _mode(db_path.with_name("dalaba.db-wal")) == 0o600
        assert _mode(db_path) == 0o600
        assert _mode(db_path.parent) == 0o700
        engine.dispose()
        # An existing database keeps the mode its owner gave it.
        os.chmod(db_path, 0o640)
        make_engine(f"sqlite:///{db_path}").dispose()
        assert _mode(db_path) == 0o640
    finally:
        os.umask(old)


def test_the_demo_secret_folder_is_private(tmp_path):
    old = os.umask(0o022)
    try:
        settings = Settings.from_env({}, demo=True, data_dir=tmp_path / "demo")
        assert _mode(settings.data_dir) == 0o700
        assert _mode(settings.data_dir / "secret_key") == 0o600
    finally:
        os.umask(old)


def test_serve_and_demo_write_with_a_private_umask(tmp_path, monkeypatch):
    """What the server writes later (audio, programs) is never readable by other accounts."""
    from click.testing import CliRunner

    from cms import cli

    written: list[Path] = []

    def fake_serve(settings: Settings, host: str, port: int) -> None:
        folder = settings.data_dir / "programs"
        folder.mkdir(parents=True, exist_ok=True)
        written.extend([folder, folder / "0730.mp3"])
        written[-1].write_bytes(b"ID3")

    monkeypatch.setattr(cli, "_serve", fake_serve)
    old = os.umask(0o022)
    try:
        runner = CliRunner()
        env = {"DALABA_SECRET_KEY": "k", "DALABA_DATA_DIR": str(tmp_path / "prod")}
        assert runner.invoke(cli.cli, ["serve"], env=env).exit_code == 0
        demo_env = {"DALABA_SECRET_KEY": "", "DALABA_DATA_DIR": ""}
        demo = runner.invoke(cli.cli, ["demo", "--data", str(tmp_path / "demo")], env=demo_env)
        assert demo.exit_code == 0, demo.output
    finally:
        os.umask(old)
    assert len(written) == 4
    for path in written:
        assert _mode(path) & 0o007 == 0, path
    data = tmp_path / "demo"
    assert (_mode(data), _mode(data / "dalaba.db"), _mode(data / "secret_key")) == (
        0o700,
        0o600,
        0o600,
    )
