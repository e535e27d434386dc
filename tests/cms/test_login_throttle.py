"""Login throttling an outsider cannot turn into a lockout (OWASP ASVS V2.2.1).

Failures slow down their own address, and an account from that address, with delays that
double; only many failures from many addresses lock an account, which an admin lifts.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from cms.models import AuditLog, Role, User
from cms.services import users
from tests.conftest import PASSWORD, login

T0 = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)  # 09:00 in the township
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(autouse=True)
def quick_password_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same guess against the same hash is checked once (hundreds of scrypt runs
    would only make this slow; what is tested is the counting)."""
    monkeypatch.setattr(users, "check_password_hash", lru_cache(None)(users.check_password_hash))


def _try(session, user: User | str, password: str, addr: str, at: datetime):  # type: ignore[no-untyped-def]
    name = user if isinstance(user, str) else user.username
    return users.authenticate(session, name, password, addr, now=at, zone=SHANGHAI)


def test_an_account_from_one_address_waits_longer_after_each_failure(session, make_user):
    officer = make_user(Role.EDITOR)
    at = T0
    for _ in range(users.MAX_FAILURES_PER_USER):
        assert _try(session, officer, "wrong", "203.0.113.9", at) is None
        at += timedelta(seconds=5)
    waits = []
    for _ in range(5):
        with pytest.raises(users.LoginThrottled) as exc:
            _try(session, officer, PASSWORD, "203.0.113.9", at)  # even the right password
        waits.append(exc.value.retry_after)
        text = exc.value.message.render()
        assert officer.username in text and "分钟后" in text
        at += timedelta(seconds=exc.value.retry_after)
        assert _try(session, officer, "wrong", "203.0.113.9", at) is None
    assert waits[0] <= 60 and all(b > a for a, b in zip(waits, waits[1:4], strict=False))
    assert max(waits) <= users.LONGEST_DELAY.total_seconds() + 1
    # Her own desk is not slowed down by any of this.
    assert _try(session, officer, PASSWORD, "198.51.100.20", at) is officer


def test_the_message_says_when_in_the_townships_time(session, make_user):
    officer = make_user(Role.EDITOR)
    for i in range(users.MAX_FAILURES_PER_USER):
        _try(session, officer, "wrong", "203.0.113.9", T0 + timedelta(seconds=i))
    with pytest.raises(users.LoginThrottled) as exc:
        _try(session, officer, PASSWORD, "203.0.113.9", T0 + timedelta(seconds=10))
    assert "09:01" in exc.value.message.render()  # 1 minute after the last failure, local


def test_twenty_addresses_guessing_do_not_lock_the_officer_out(session, make_user):
    admin = make_user(Role.ADMIN, username="admin")
    at = T0
    for n in range(20):
        for _ in range(users.MAX_FAILURES_PER_USER + 3):
            with contextlib.suppress(users.LoginThrottled):
                _try(session, "admin", "guess", f"203.0.113.{n}", at)
            at += timedelta(seconds=1)
    session.flush()
    assert session.get(User, admin.id).login_locked_until is None
    assert _try(session, admin, PASSWORD, "198.51.100.20", at) is admin


def test_many_addresses_lock_the_account_until_an_admin_lifts_it(app, session, make_user):
    officer = make_user(Role.EDITOR, username="officer")
    boss = make_user(Role.ADMIN, username="boss")
    session.commit()
    at = datetime.now(UTC) - timedelta(minutes=5)  # the web checks against the real clock
    addresses = users.ACCOUNT_LOCK_ADDRESSES
    per = -(-users.ACCOUNT_LOCK_FAILURES // addresses)
    for n in range(addresses):
        for _ in range(per):
            _try(session, "officer", "guess", f"203.0.113.{n}", at)
            at += timedelta(seconds=1)
    session.commit()
    assert users.is_locked(session.get(User, officer.id), at)
    with pytest.raises(users.LoginThrottled) as exc:
        _try(session, officer, PASSWORD, "198.51.100.20", at)
    text = exc.value.message.render()
    assert "锁定" in text and "管理员" in text and "分钟后" in text
    lock = session.scalar(select(AuditLog).where(AuditLog.action == "user.lock"))
    assert lock is not None and lock.object_id == officer.id
    assert lock.detail["addresses"] >= addresses
    session.commit()
    # Through the web: the lock shows on the users page, and the admin lifts it there.
    client = app.test_client()
    officer_client = app.test_client()
    refused = officer_client.post("/login", data={"username": "officer", "password": PASSWORD})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 60
    assert "锁定" in refused.get_data(as_text=True)
    login(client, boss)
    page = client.get("/admin/users").get_data(as_text=True)
    assert f'data-testid="locked-{officer.id}"' in page
    assert client.post(f"/admin/users/{officer.id}/unlock").status_code == 302
    session.rollback()
    session.expire_all()
    assert session.get(User, officer.id).login_locked_until is None
    unlock = session.scalar(select(AuditLog).where(AuditLog.action == "user.unlock"))
    assert unlock is not None and unlock.user_id == boss.id and unlock.object_id == officer.id
    assert login(officer_client, officer).status_code == 302
    en = app.test_client()
    en.post("/lang", data={"lang": "en"})
    login(en, boss)
    assert "Login locks" not in en.get("/admin/users").get_data(as_text=True)


def test_a_township_admin_lifts_only_a_lock_in_the_township(app, session, make_user, grid):
    elsewhere = make_user(Role.EDITOR, username="elsewhere")
    town_admin = make_user(Role.ADMIN, area=grid["v1"])
    elsewhere.login_locked_until = datetime.now(UTC) + timedelta(hours=1)
    session.commit()
    client = app.test_client()
    login(client, town_admin)
    assert client.post(f"/admin/users/{elsewhere.id}/unlock").status_code == 404
    session.rollback()
    session.expire_all()
    assert session.get(User, elsewhere.id).login_locked_until is not None


def test_a_login_checks_the_password_once_before_taking_the_writer_lock(
    client, session, make_user, monkeypatch
):  # type: ignore[no-untyped-def]
    """The hash check (a tenth of a second on purpose) runs in a read transaction: the
    login's write transaction then only records it, and does not check again."""
    officer = make_user(Role.EDITOR)
    checks: list[str] = []
    real = users.check_password_hash

    def counted(hashed: str, password: str) -> bool:
        checks.append(password)
        return real(hashed, password)

    monkeypatch.setattr(users, "check_password_hash", counted)
    login(client, officer)
    assert checks == [PASSWORD]
    refused = client.post("/login", data={"username": officer.username, "password": "不对的密码"})
    assert refused.status_code == 401 and checks == [PASSWORD, "不对的密码"]
    nobody = client.post("/login", data={"username": "nobody-here", "password": "随便"})
    assert nobody.status_code == 401 and len(checks) == 3  # the same cost for an unknown name

    # A check made against a hash that has changed since is not trusted: checked again.
    stale = users.PasswordCheck("scrypt:old-hash", ok=False)
    user = users.authenticate(
        session, officer.username, PASSWORD, "10.0.0.9", now=T0, zone=SHANGHAI, checked=stale
    )
    assert user is not None and len(checks) == 4
    current = users.PasswordCheck(officer.password_hash, ok=False)
    assert (
        users.authenticate(
            session, officer.username, PASSWORD, "10.0.0.9", now=T0, zone=SHANGHAI, checked=current
        )
        is None
    )
    assert len(checks) == 4
