"""Users, passwords, login throttling and API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from cms.clock import clock_of
from cms.db import rowcount
from cms.models import ApiToken, Area, LoginFailure, Outlet, Role, User
from cms.services import audit
from cms.services.errors import N_, Conflict, DomainError, Errors, NotFound
from cms.services.scope import Scope
from cms.services.text import clean_text, parse_id

USERNAME_RE = re.compile(r"^[A-Za-z0-9_.-]{2,40}$")
MIN_PASSWORD = 8
# Login throttling (OWASP ASVS V2.2.1): failures slow down the address they come from, and
# an account from that address, with delays that double; a guesser elsewhere never stops an
# officer at her own desk. Only many failures from many addresses lock the account itself,
# for a while or until an admin lifts it, and the lock and its lifting are audited.
THROTTLE_WINDOW = timedelta(hours=1)
"""Failures counted for the delays (older ones are forgotten)."""
MAX_FAILURES_PER_USER = 5
"""Free failures for one account from one address before the delays start."""
MAX_FAILURES_PER_ADDR = 20
"""Free failures from one address (any accounts) before the delays start."""
FIRST_DELAY = timedelta(minutes=1)
LONGEST_DELAY = timedelta(minutes=15)
ACCOUNT_LOCK_FAILURES = 50
ACCOUNT_LOCK_ADDRESSES = 25
"""Failures for one account within THROTTLE_WINDOW, from at least this many addresses,
lock it (a guesser spreading over 20 addresses is not enough to shut an officer out)."""
ACCOUNT_LOCK = timedelta(hours=1)
TOKEN_PREFIX = "dlb_"
# "Last used" is bookkeeping: written at most this often per token, never on every request.
TOKEN_TOUCH_INTERVAL = timedelta(minutes=1)

ROLE_LABELS = {
    Role.ADMIN: N_("管理员"),
    Role.EDITOR: N_("宣传委员（编辑）"),
    Role.REVIEWER: N_("审核员"),
    Role.OPERATOR: N_("广播员"),
}


class LoginThrottled(DomainError):
    """Too many failed logins; ``retry_after`` is the wait in seconds."""

    def __init__(self, msgid: str, /, retry_after: int, **params: Any) -> None:
        super().__init__(msgid, **params)
        self.retry_after = retry_after


def parse_role(errors: Errors, raw: object) -> Role | None:
    try:
        return Role(str(raw))
    except ValueError:
        errors.add("role", N_("角色无效，可选：{roles}"), roles="、".join(r.value for r in Role))
        return None


def check_password(errors: Errors, password: object) -> str:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        errors.add("password", N_("密码至少 {n} 位"), n=MIN_PASSWORD)
        return ""
    if len(password) > 200:
        errors.add("password", N_("密码太长"))
    return password


def create_user(
    session: Session,
    actor: User | None,
    *,
    username: object,
    display_name: object,
    role: object,
    password: object,
    area_id: object = None,
) -> User:
    """Create a user working in ``area_id`` (None/"": the whole install, or the actor's area).

    An actor with an area creates users only inside it. Raises ValidationError (naming each
    bad field) or nothing.
    """
    errors = Errors()
    area = parse_area(session, errors, actor, area_id)
    name = clean_text(errors, "username", username, label=N_("用户名"), max_len=40)
    if "username" not in errors and not USERNAME_RE.match(name):
        errors.add("username", N_("用户名只能用字母、数字和 _ . -，2–40 位"))
    if "username" not in errors and session.scalar(
        select(User.id).where(func.lower(User.username) == name.lower())
    ):
        errors.add("username", N_("用户名“{name}”已被使用"), name=name)
    shown = clean_text(errors, "display_name", display_name or name, label=N_("姓名"), max_len=80)
    parsed_role = parse_role(errors, role)
    pw = check_password(errors, password)
    errors.raise_if_any()
    assert parsed_role is not None
    user = User(
        username=name,
        display_name=shown,
        role=parsed_role,
        password_hash=generate_password_hash(pw),
        area=area,
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.create",
        user,
        username=name,
        role=parsed_role.value,
        area=area.id if area else None,
    )
    return user


def parse_area(session: Session, errors: Errors, actor: User | None, raw: object) -> Area | None:
    """The area a user is given: inside the actor's; none given means the actor's own."""
    scope = Scope.of(actor)
    if raw is None or str(raw).strip() == "":
        return actor.area if actor is not None and not scope.whole else None
    area_id = parse_id(raw)
    area = session.get(Area, area_id) if area_id is not None else None
    if area is None or not scope.contains(area):
        errors.add("area_id", N_("区域 {id} 不存在"), id=str(raw)[:20])
        return None
    return area


def update_user(
    session: Session,
    actor: User,
    user: User,
    *,
    display_name: object,
    role: object,
    active: bool,
    password: object = "",
    area_id: object = None,
) -> User:
    """Change a user; ``area_id`` None leaves the area as it is ("" or an id sets it)."""
    errors = Errors()
    area = parse_area(session, errors, actor, area_id) if area_id is not None else user.area
    shown = clean_text(errors, "display_name", display_name, label=N_("姓名"), max_len=80)
    parsed_role = parse_role(errors, role)
    pw = check_password(errors, password) if password else ""
    if user.id == actor.id and (parsed_role is not Role.ADMIN or not active):
        errors.add("role", N_("不能取消自己的管理员身份或停用自己"))
    errors.raise_if_any()
    assert parsed_role is not None
    changes: dict[str, Any] = {}  # the audit record's JSON
    if user.role is not parsed_role:
        changes["role"] = [user.role.value, parsed_role.value]
    if user.active != active:
        changes["active"] = [user.active, active]
    if area is not user.area:
        changes["area"] = [user.area_id, area.id if area else None]
        user.area = area
    if user.active and not active:
        # For good: turning the account back on later does not bring old tokens back.
        revoked = revoke_all_api_tokens(session, user)
        if revoked:
            changes["tokens_revoked"] = revoked
    user.display_name, user.role, user.active = shown, parsed_role, active
    if pw:
        user.password_hash = generate_password_hash(pw)
        changes["password"] = "reset"
    if pw or "active" in changes:
        # A new password or a deactivation ends every open session of this user. A role
        # change does not need to: the role is read from the database on every request.
        user.session_version += 1
    audit.record(session, actor, "user.update", user, **changes)
    return user


def log_out(session: Session, user: User) -> None:
    """End every web session of ``user``, on this device and any other (copied cookies too)."""
    user.session_version += 1
    audit.record(session, user, "user.logout", user)


def set_operator_outlets(session: Session, actor: User, user: User, outlet_ids: list[int]) -> None:
    outlets = list(session.scalars(select(Outlet).where(Outlet.id.in_(outlet_ids))))
    user.outlets = outlets
    audit.record(session, actor, "user.outlets", user, outlets=[o.id for o in outlets])


def _delay(failures: int, free: int, latest: datetime | None, now: datetime) -> timedelta:
    """How long the next try must wait: nothing while ``failures`` < ``free``, then a delay
    that doubles with each failure beyond (at most LONGEST_DELAY), from the latest one."""
    if failures < free or latest is None:
        return timedelta(0)
    delay = min(FIRST_DELAY * 2 ** min(failures - free, 16), LONGEST_DELAY)
    return max(latest + delay - now, timedelta(0))


def _wait_text(wait: timedelta) -> int:
    """Whole minutes, rounded up (at least one)."""
    return max(1, -(-int(wait.total_seconds()) // 60))


def authenticate(
    session: Session,
    username: str,
    password: str,
    remote_addr: str,
    now: datetime | None = None,
    zone: tzinfo = UTC,
    checked: PasswordCheck | None = None,
) -> User | None:
    """Check a login; slows down an address, and an account from an address, after repeated
    failures, and locks an account only after many failures from many addresses.

    ``checked``: the password already checked by :func:`check_password_first` (used while
    the stored hash is still the one it was checked against).

    Raises:
        LoginThrottled: the message says what is happening and when to try again.
    """
    now = now or clock_of(session).now()
    name = username.lower()[:40]
    addr = remote_addr[:64]
    session.execute(delete(LoginFailure).where(LoginFailure.at < now - THROTTLE_WINDOW))
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    pair, by_addr = _throttle(session, user, name, addr, now, zone)
    if user is None:
        # Same cost as a real check, so timing does not reveal which names exist.
        _password_ok(_DUMMY_HASH, password, checked)
    if user is None or not user.active or not _password_ok(user.password_hash, password, checked):
        session.add(LoginFailure(username=name, remote_addr=addr, at=now))
        session.flush()
        if pair[0] + 1 == MAX_FAILURES_PER_USER or by_addr[0] + 1 == MAX_FAILURES_PER_ADDR:
            audit.record(session, None, "login.throttle", user, username=name, remote_addr=addr)
        if user is not None:
            _maybe_lock(session, user, name, now)
        return None
    session.execute(
        delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.remote_addr == addr)
    )
    audit.record(session, user, "user.login", user, remote_addr=remote_addr)
    return user


def _throttle(
    session: Session, user: User | None, name: str, addr: str, now: datetime, zone: tzinfo
) -> tuple[Any, Any]:
    """Refuse a login while the account is locked or the address (or the pair) is slowed
    down; returns the recent failures of the pair and of the address (count, latest)."""
    since = now - THROTTLE_WINDOW
    locked = user.login_locked_until if user is not None else None
    if locked is not None and locked > now:
        raise LoginThrottled(
            N_(
                "账号“{name}”在短时间内被许多不同地址反复输错密码，已临时锁定，"
                "{minutes} 分钟后（{time}）自动解除；也可以请管理员在“用户”页面解除锁定"
            ),
            retry_after=int((locked - now).total_seconds()) + 1,
            name=user.username if user else name,
            minutes=_wait_text(locked - now),
            time=locked.astimezone(zone).strftime("%H:%M"),
        )
    pair = session.execute(
        select(func.count(), func.max(LoginFailure.at)).where(
            LoginFailure.username == name,
            LoginFailure.remote_addr == addr,
            LoginFailure.at >= since,
        )
    ).one()
    by_addr = session.execute(
        select(func.count(), func.max(LoginFailure.at)).where(
            LoginFailure.remote_addr == addr, LoginFailure.at >= since
        )
    ).one()
    pair_wait = _delay(pair[0], MAX_FAILURES_PER_USER, pair[1], now)
    addr_wait = _delay(by_addr[0], MAX_FAILURES_PER_ADDR, by_addr[1], now)
    if pair_wait or addr_wait:
        wait = max(pair_wait, addr_wait)
        msgid = (
            N_("从这台设备输错密码的次数太多，请 {minutes} 分钟后（{time}）再试")
            if addr_wait >= pair_wait
            else N_(
                "账号“{name}”在这台设备上输错密码的次数太多，请 {minutes} 分钟后（{time}）再试；"
                "忘记密码请联系管理员重设"
            )
        )
        raise LoginThrottled(
            msgid,
            retry_after=int(wait.total_seconds()) + 1,
            name=name,
            minutes=_wait_text(wait),
            time=(now + wait).astimezone(zone).strftime("%H:%M"),
        )
    return pair, by_addr


@dataclass(frozen=True)
class PasswordCheck:
    """A password checked against a stored hash (see :func:`check_password_first`)."""

    password_hash: str
    ok: bool = field(repr=False)


def check_password_first(
    session: Session,
    username: str,
    password: str,
    remote_addr: str,
    now: datetime | None = None,
    zone: tzinfo = UTC,
) -> PasswordCheck:
    """The slow part of a login, with reads only: the throttling, then the password hash.

    A hash check costs a tenth of a second of CPU on purpose; done inside the login's write
    transaction it held SQLite's one writer lock that long, and a room full of people
    logging in at once queued every other write behind it. The web checks first, in a
    read transaction, and passes the result to :func:`authenticate`.

    Raises:
        LoginThrottled: as :func:`authenticate` would (no hash is spent on it).
    """
    now = now or clock_of(session).now()
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    _throttle(session, user, username.lower()[:40], remote_addr[:64], now, zone)
    hashed = user.password_hash if user is not None else _DUMMY_HASH
    return PasswordCheck(hashed, check_password_hash(hashed, password))


def _password_ok(hashed: str, password: str, checked: PasswordCheck | None) -> bool:
    if checked is not None and secrets.compare_digest(checked.password_hash, hashed):
        return checked.ok
    return check_password_hash(hashed, password)


def _maybe_lock(session: Session, user: User, name: str, now: datetime) -> None:
    """Lock ``user`` when many addresses failed on it within the window (audited)."""
    failures, addresses = session.execute(
        select(func.count(), func.count(func.distinct(LoginFailure.remote_addr))).where(
            LoginFailure.username == name
        )
    ).one()
    if failures >= ACCOUNT_LOCK_FAILURES and addresses >= ACCOUNT_LOCK_ADDRESSES:
        user.login_locked_until = now + ACCOUNT_LOCK
        audit.record(
            session,
            None,
            "user.lock",
            user,
            failures=failures,
            addresses=addresses,
            until=user.login_locked_until.isoformat(),
        )


def unlock(session: Session, actor: User | None, user: User) -> bool:
    """Lift ``user``'s login lock and forget the failures behind it; returns whether it was
    locked (audited)."""
    was = user.login_locked_until is not None and user.login_locked_until > clock_of(session).now()
    user.login_locked_until = None
    session.execute(delete(LoginFailure).where(LoginFailure.username == user.username.lower()))
    audit.record(session, actor, "user.unlock", user, was_locked=was)
    return was


def is_locked(user: User, now: datetime) -> bool:
    until = user.login_locked_until
    return until is not None and until > now


_DUMMY_HASH = generate_password_hash("not-a-real-password")


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_api_token(session: Session, actor: User | None, user: User, label: str = "") -> str:
    """Create an API token for ``user``; returns the token itself, shown once.

    Raises:
        Conflict: the account is deactivated (its token would come back on reactivation).
        ValidationError: the label is not acceptable text.
    """
    if not user.active:
        raise Conflict(N_("用户“{name}”已停用，不能为其生成令牌"), name=user.username)
    errors = Errors()
    label = clean_text(errors, "label", label, label=N_("说明"), max_len=80, required=False)
    errors.raise_if_any()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:10], label=label)
    session.add(row)
    session.flush()
    audit.record(session, actor or user, "api_token.issue", row, user=user.username)
    return token


def revoke_all_api_tokens(session: Session, user: User) -> int:
    """Revoke every live API token of ``user``; returns how many there were."""
    result = session.execute(
        update(ApiToken)
        .where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=clock_of(session).now())
    )
    return rowcount(result) or 0  # type: ignore[attr-defined]


def token_for(session: Session, token: str) -> ApiToken | None:
    """The live API token row for ``token`` (reads only: answering a request writes nothing)."""
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or row.revoked_at is not None or not row.user.active:
        return None
    return row


def user_for_token(session: Session, token: str) -> User | None:
    row = token_for(session, token)
    return None if row is None else row.user


def token_needs_touch(row: ApiToken, now: datetime) -> bool:
    """Whether "last used" is stale enough to be worth a write (at most once a minute)."""
    return row.last_used_at is None or row.last_used_at <= now - TOKEN_TOUCH_INTERVAL


def touch_token(session: Session, token_id: int, now: datetime) -> bool:
    """Record that a token was used; one guarded UPDATE, a no-op within the interval."""
    result = session.execute(
        update(ApiToken)
        .where(
            ApiToken.id == token_id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at <= now - TOKEN_TOUCH_INTERVAL,
            ),
        )
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(rowcount(result))


def revoke_api_token(session: Session, actor: User, token_id: int) -> ApiToken:
    row = session.get(ApiToken, token_id)
    if row is None:
        raise NotFound(N_("令牌不存在"))
    if row.revoked_at is not None:
        raise Conflict(N_("该令牌已被吊销"))
    row.revoked_at = clock_of(session).now()
    audit.record(session, actor, "api_token.revoke", row, user=row.user.username)
    return row


def get_user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(func.lower(User.username) == username.lower()))
    if user is None:
        raise NotFound(N_("用户“{name}”不存在"), name=username)
    return user
