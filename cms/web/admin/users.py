"""Users, their roles and login locks, and API tokens."""

from __future__ import annotations

from typing import Any

from flask import abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select

from cms.models import ApiToken, User
from cms.services import users as user_svc
from cms.services.errors import N_, NotFound, ValidationError
from cms.services.scope import Scope
from cms.web.admin import ADMIN, bp
from cms.web.auth import remember_login, rule
from cms.web.db import db, settings, transaction
from cms.web.forms import form_id


@bp.route("/users", methods=["GET", "POST"])
@rule(ADMIN)
def users() -> Any:
    """Users and roles; add a user."""
    form: dict[str, Any] = {}
    errors: dict[str, str] = {}
    if request.method == "POST":
        form = request.form.to_dict()
        form.pop("password", None)
        with transaction(catch=ValidationError, flash=False) as tx:
            user_svc.create_user(
                db(),
                g.user,
                username=request.form.get("username", ""),
                display_name=request.form.get("display_name", ""),
                role=request.form.get("role", ""),
                password=request.form.get("password", ""),
                area_id=request.form.get("area_id", ""),
            )
        if tx.ok:
            flash(_("已添加用户"), "success")
            return redirect(url_for(".users"))
        errors = tx.fields
    scope = Scope.of(g.user)
    all_users = list(
        db().scalars(select(User).where(scope.users()).order_by(User.role, User.username))
    )
    return render_template(
        "admin/users.html",
        users=all_users,
        locked={u.id for u in all_users if user_svc.is_locked(u, settings().now())},
        roles=user_svc.ROLE_LABELS,
        form=form,
        errors=errors,
        areas=scope.areas(db()),
        whole=scope.whole,
    ), (400 if errors else 200)


def _user_or_404(user_id: int) -> User:
    """The user, when inside the admin's area; else 404 (a neighbour's user is not found)."""
    user = db().get(User, user_id)
    if user is None or not Scope.of(g.user).has_user(user):
        abort(404)
    return user


@bp.post("/users/<int:user_id>")
@rule(ADMIN)
def user_update(user_id: int) -> Any:
    """Change a user's name, role, active flag or password."""
    user = _user_or_404(user_id)
    with transaction() as tx:
        user_svc.update_user(
            db(),
            g.user,
            user,
            display_name=request.form.get("display_name", ""),
            role=request.form.get("role", ""),
            active="active" in request.form,
            password=request.form.get("password", ""),
            area_id=request.form.get("area_id"),
        )
    if tx.ok:
        if user.id == g.user.id:
            # A new password ends the admin's other sessions, not the one that set it.
            remember_login(user)
        flash(_("已保存"), "success")
    return redirect(url_for(".users"))


@bp.post("/users/<int:user_id>/unlock")
@rule(ADMIN)
def user_unlock(user_id: int) -> Any:
    """Lift a login lock (many failed logins from many addresses)."""
    user = _user_or_404(user_id)
    with transaction(catch=()):
        user_svc.unlock(db(), g.user, user)
    flash(_("已解除“{name}”的登录锁定").format(name=user.username), "success")
    return redirect(url_for(".users"))


@bp.route("/tokens", methods=["GET", "POST"])
@rule(ADMIN)
def tokens() -> Any:
    """API tokens: issue and revoke."""
    new_token = None
    scope = Scope.of(g.user)
    if request.method == "POST":
        with transaction() as tx:
            if request.form.get("action") == "revoke":
                token_id = form_id("token_id") or 0
                row = db().get(ApiToken, token_id)
                if row is not None and not scope.has_user(row.user):
                    raise NotFound(N_("令牌不存在"))
                user_svc.revoke_api_token(db(), g.user, token_id)
            else:
                owner = user_svc.get_user_by_name(db(), request.form.get("username", ""))
                if not scope.has_user(owner):
                    raise NotFound(N_("用户“{name}”不存在"), name=owner.username)
                new_token = user_svc.issue_api_token(
                    db(), g.user, owner, request.form.get("label", "")
                )
        if tx.ok and request.form.get("action") == "revoke":
            flash(_("令牌已吊销"), "success")
    rows = list(
        db().scalars(
            select(ApiToken)
            .join(User, User.id == ApiToken.user_id)
            .where(scope.users())
            .order_by(ApiToken.created_at.desc())
        )
    )
    return render_template("admin/tokens.html", tokens=rows, new_token=new_token)
