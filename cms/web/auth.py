"""Login, logout, the current user, and the role rule every route must declare."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _

from cms.models import Role, User, utcnow
from cms.services import users
from cms.services.errors import DomainError
from cms.web.db import db, writes

log = logging.getLogger(__name__)
bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])
PUBLIC = "public"
ANY_USER = frozenset(Role)
STAFF = frozenset({Role.ADMIN, Role.EDITOR, Role.REVIEWER})


def rule(*roles: Role | str) -> Callable[[F], F]:
    """Declare who may call a view: ``rule(PUBLIC)`` or ``rule(Role.ADMIN, ...)``."""

    def mark(view: F) -> F:
        view._dalaba_rule = PUBLIC if roles == (PUBLIC,) else frozenset(roles)  # type: ignore[attr-defined]
        return view

    return mark


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
                now = utcnow()
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
        user = db().get(User, uid)
        if user is None or not user.active or session.get("pw") != user.password_hash[-12:]:
            session.clear()
        else:
            g.user = user


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


def _safe_next(target: str | None) -> str:
    if target:
        parts = urlsplit(target)
        if (
            not parts.scheme
            and not parts.netloc
            and target.startswith("/")
            and not target.startswith("//")
        ):
            return target
    return url_for("dashboard.index")


@bp.route("/login", methods=["GET", "POST"])
@rule(PUBLIC)
def login() -> Any:
    """Log in with user name and password."""
    username = request.form.get("username", "").strip()
    if request.method == "POST":
        try:
            user = users.authenticate(
                db(), username, request.form.get("password", ""), request.remote_addr or "?"
            )
        except DomainError as exc:
            db().commit()
            flash(exc.message.render(_), "error")
            return render_template("login.html", username=username), 429
        db().commit()
        if user is None:
            flash(_("用户名或密码不正确"), "error")
            return render_template("login.html", username=username), 401
        chosen = session.get("lang")
        session.clear()
        session["uid"] = user.id
        session["pw"] = user.password_hash[-12:]
        if user.locale:
            session["lang"] = user.locale
        elif chosen:
            # A language picked on the login page is kept, and remembered for the user.
            session["lang"] = user.locale = chosen
            db().commit()
        session.permanent = True
        return redirect(_safe_next(request.args.get("next")))
    return render_template("login.html", username=username)


@bp.route("/logout", methods=["POST"])
@rule(*ANY_USER)
def logout() -> Any:
    """Log out."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    flash(_("已退出登录"), "info")
    return redirect(url_for("auth.login"))


@bp.route("/lang", methods=["POST"])
@rule(PUBLIC)
def set_language() -> Any:
    """Switch the interface language."""
    from cms.web.i18n import LANGUAGES

    lang = request.form.get("lang", "")
    if lang in LANGUAGES:
        session["lang"] = lang
        if g.user is not None:
            g.user.locale = lang
            db().commit()
    return redirect(_safe_next(request.form.get("next")))
