"""Login, logout, the current user, and the role rule every route must declare."""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from cms.db import unit_of_work
from cms.models import Role, User
from cms.roles import ANY_USER
from cms.services import users
from cms.services.errors import DomainError
from cms.settings import Settings
from cms.web.db import commit_bookkeeping, db, settings, writes

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "public"
# The cookie's last-seen time moves at most this often, so that most requests set no cookie.
SEEN_RESOLUTION_S = 60


def rule(*roles: Role | str) -> Callable[[F], F]:
    """Declare who may call a view: ``rule(PUBLIC)`` or ``rule(Role.ADMIN, ...)``."""

    def mark(view: F) -> F:
        view._dalaba_rule = PUBLIC if roles == (PUBLIC,) else frozenset(roles)  # type: ignore[attr-defined]
        return view

    return mark


@dataclass(frozen=True)
class Route:
    """One of a family of routes whose views differ only in data (an action, a file kind)."""

    url: str
    endpoint: str
    roles: Collection[Role | str]
    view: Callable[..., Any]
    doc: str | None = None


def add_routes(bp: Blueprint, routes: Iterable[Route], *, method: str) -> None:
    """Register each route as one written out would be: its URL, endpoint, method and rule;
    the view takes the endpoint as its name, and the route's doc where it has one."""
    for route in routes:
        route.view.__name__ = route.view.__qualname__ = route.endpoint
        if route.doc is not None:
            route.view.__doc__ = route.doc
        view = rule(*route.roles)(route.view)
        bp.add_url_rule(route.url, route.endpoint, view, methods=[method])


def route_rule(endpoint: str | None) -> str | frozenset[Role] | None:
    if endpoint is None:
        return None
    if endpoint == "static":
        return PUBLIC
    view = current_app.view_functions.get(endpoint)
    return getattr(view, "_dalaba_rule", None)


def load_user() -> None:
    """Find the user from the session cookie, or from a bearer token under /api/."""
    g.user = None
    if request.path.startswith("/api/"):
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            row = users.token_for(db(), token.strip())
            if row is not None:
                g.user = row.user
                now = settings().now()
                if not users.token_needs_touch(row, now):
                    pass
                elif writes():
                    # This request holds the writer lock already: note it in its transaction.
                    users.touch_token(db(), row.id, now)
                else:
                    current_app.extensions["dalaba.bookkeeper"].token_used(row.id, now)
        return
    uid = session.get("uid")
    if uid is not None:
        g.user = _session_user(uid)


def _session_user(uid: object) -> User | None:
    """The cookie's user while its login is current; otherwise end it and say why."""
    config: Settings = current_app.extensions["dalaba.settings"]
    now = int(config.now().timestamp())
    user = db().get(User, uid) if isinstance(uid, int) else None
    started, seen = session.get("started"), session.get("seen")
    if (
        user is None
        or not user.active
        or session.get("ver") != user.session_version
        or not isinstance(started, int)
        or not isinstance(seen, int)
    ):
        reason = _("登录已失效（已退出、密码已更改或账号已停用），请重新登录")
    elif current_app.extensions["dalaba.ended_sessions"].ended(
        user.id, session.get("ver"), session.get("login_at")
    ):
        # Logged out while the disk was full: ended here, written when there is space.
        reason = _("登录已失效（已退出、密码已更改或账号已停用），请重新登录")
        _retry_logouts()
    elif now - started > config.session_max_days * 86400:
        reason = _("登录已满 {days} 天，为了安全请重新登录").format(days=config.session_max_days)
    elif now - seen > config.session_idle_hours * 3600:
        reason = _("超过 {hours} 小时没有操作，已自动退出，请重新登录").format(
            hours=config.session_idle_hours
        )
    else:
        if now - seen >= SEEN_RESOLUTION_S:
            session["seen"] = now
        return user
    _clear_session()
    flash(reason, "info")
    return None


def _clear_session() -> None:
    """Forget the login, keeping the interface language."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def remember_login(user: User) -> None:
    """Put ``user``'s current session version into the cookie (a new login, or a kept one)."""
    session["uid"] = user.id
    session["ver"] = user.session_version
    now = settings().now().timestamp()
    session.setdefault("started", int(now))
    session.setdefault("seen", int(now))
    session.setdefault("login_at", now)
    session.permanent = True


def _retry_logouts() -> None:
    """Try again, off the request path, to write logouts a full disk kept in memory."""
    ended = current_app.extensions["dalaba.ended_sessions"]
    if not ended.pending():
        return
    sessions = current_app.extensions["dalaba.sessions"]

    def write() -> None:
        unit_of_work(sessions, ended.save)
        ended.saved()

    current_app.extensions["dalaba.bookkeeper"].run(write)


def no_store(response: Response) -> Response:
    """Keep signed-in pages and API answers out of browser and proxy caches."""
    endpoint = request.endpoint
    if endpoint == "static":
        return response
    private = request.path.startswith("/api/") or isinstance(route_rule(endpoint), frozenset)
    if private or (g.get("user") is not None and "Cache-Control" not in response.headers):
        # Public downloads (operator links) set their own caching and keep it.
        response.headers["Cache-Control"] = "no-store"
    return response


def enforce_route_rule() -> Any:
    """Fail closed: a route without a declared rule is refused."""
    if request.endpoint is None:
        return None
    allowed = route_rule(request.endpoint)
    if allowed is None:
        log.error("route %s has no access rule; refusing", request.endpoint)
        abort(403)
    if allowed == PUBLIC:
        return None
    if g.user is None:
        if request.path.startswith("/api/"):
            abort(401, description=_("需要有效的 API 令牌（Authorization: Bearer …）"))
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
    if g.user.role not in allowed:
        abort(403, description=_("您的角色没有访问此页面的权限"))
    return None


def local_url(target: str | None) -> str | None:
    """``target`` when it is a path on this site, else None (for ``next`` parameters).

    Browsers drop tabs and newlines from URLs and read a backslash as a slash, so
    ``/\\evil.example`` or ``/<TAB>/evil.example`` would leave the site, and CR/LF cannot go
    into a Location header at all: a target with any of them is not followed.
    """
    if not target or not target.startswith("/") or target.startswith("//"):
        return None
    if "\\" in target or any(unicodedata.category(ch).startswith("C") for ch in target):
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return None
    return target


def _safe_next(target: str | None) -> str:
    return local_url(target) or url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@rule(PUBLIC)
def login() -> Any:
    """Log in with user name and password."""
    username = request.form.get("username", "").strip()
    if request.method == "POST":
        password, addr = request.form.get("password", ""), request.remote_addr or "?"
        zone = current_app.extensions["dalaba.settings"].tz
        try:
            # The password hash first, outside the write transaction (see the service).
            with current_app.extensions["dalaba.sessions"]() as reading:
                checked = users.check_password_first(reading, username, password, addr, zone=zone)
            user = users.authenticate(db(), username, password, addr, zone=zone, checked=checked)
        except users.LoginThrottled as exc:
            commit_bookkeeping("login throttling")
            flash(exc.message.render(_), "error")
            response = make_response(render_template("login.html", username=username), 429)
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except DomainError as exc:
            commit_bookkeeping("login throttling")
            flash(exc.message.render(_), "error")
            return render_template("login.html", username=username), 429
        commit_bookkeeping("login failure or audit record")
        _retry_logouts()
        if user is None:
            flash(_("用户名或密码不正确"), "error")
            return render_template("login.html", username=username), 401
        from cms.web.i18n import LANG_COOKIE, LANGUAGES

        current = session.get("lang")
        picked = current if session.get("lang_picked") else None
        remembered = request.cookies.get(LANG_COOKIE)
        session.clear()
        remember_login(user)
        # A language picked on the login page becomes the account's; so does the language
        # this browser was showing for an account that never chose; otherwise the account's
        # own choice wins.
        lang = picked or user.locale or current or remembered
        lang = lang if lang in LANGUAGES else None
        if lang and user.locale != lang:
            user.locale = lang
            commit_bookkeeping("the user's language")
        if lang:
            session["lang"] = lang
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", username=username)


@bp.route("/logout", methods=["POST"])
@rule(*ANY_USER)
def logout() -> Any:
    """Log out: every session of this user ends, copies of the cookie included.

    On a full disk the cookie is cleared all the same and the end is kept in memory
    (:mod:`cms.web.sessions`) until it can be written.
    """
    user_id, version = g.user.id, g.user.session_version
    users.log_out(db(), g.user)
    if not commit_bookkeeping("the logout"):
        current_app.extensions["dalaba.ended_sessions"].end(
            user_id, version, settings().now().timestamp()
        )
    _clear_session()
    flash(_("已退出登录"), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang", methods=["POST"])
@rule(PUBLIC)
def set_language() -> Any:
    """Switch the interface language."""
    from cms.web.i18n import LANGUAGES, remember_language

    lang = request.form.get("lang", "")
    response = redirect(_safe_next(request.form.get("next")))
    if lang in LANGUAGES:
        # Chosen before logging in: this browser remembers it (cookie) and the account takes
        # it at login; chosen while logged in: the account remembers it.
        session["lang"] = lang
        remember_language(response, lang)
        if g.user is None:
            session["lang_picked"] = True  # taken over by the account at login
        else:
            g.user.locale = lang
            commit_bookkeeping("the user's language")
    return response
