"""Publisher accounts (e.g. the Official Account): their settings (admin) and the 发布 button
on an announcement.

The URLs carry the platform's name (``/admin/<platform>``, ``…/<platform>/<article>/publish``),
answered only for an installed publisher plugin; the credential inputs are the ones it declares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from cms import publishers
from cms.models import (
    Area,
    AreaKind,
    ArticleState,
    PublisherAccount,
    PublisherArticle,
    Role,
    User,
)
from cms.publishers import PublisherPlugin, platforms, plugin
from cms.roles import REVIEWERS
from cms.services import publishing as svc
from cms.services.errors import N_
from cms.services.scope import Scope
from cms.web.auth import Route, add_routes, rule
from cms.web.db import db, transaction
from cms.web.forms import announcement_or_404, form_id

bp = Blueprint("publishing", __name__)


@bp.app_template_global()
def publisher_articles(announcement_id: int) -> list[PublisherArticle]:
    """The publisher articles of an announcement (for the panel on its audio page)."""
    return svc.articles_of(db(), announcement_id)


@bp.app_template_global()
def article_state_label(state: str, platform: str | None = None) -> str:
    """An article's state, in words naming its platform (every installed one's without)."""
    noun = publisher_noun(platform) if platform is not None else publisher_nouns()
    return _(svc.STATE_LABELS[ArticleState(state)]).format(noun=noun)


@bp.app_template_global()
def publisher_plugins() -> list[PublisherPlugin]:
    """The installed publishing platforms (the admin menu links to each one's accounts)."""
    return [p for name in platforms() if (p := plugin(name)) is not None]


@bp.app_template_global()
def publisher_label(platform: str) -> str:
    """How pages name ``platform`` (its plugin's label; the bare name when it is gone)."""
    found = plugin(platform)
    return _(found.label) if found is not None and found.label else platform


@bp.app_template_global()
def publisher_noun(platform: str) -> str:
    """How running text names ``platform`` ("{area}{noun}", "{noun}文章"), translated."""
    return _(publishers.noun(platform))


@bp.app_template_global()
def publisher_nouns(names: list[str] | None = None) -> str:
    """The nouns of the platforms ``names`` (default: every installed one), translated and
    joined in the reader's way: for text about all publishers together."""
    chosen = publishers.nouns() if names is None else [publishers.noun(n) for n in names]
    return _("、").join(dict.fromkeys(_(n) for n in chosen))


def _plugin_or_404(platform: str) -> PublisherPlugin:
    found = plugin(platform)
    if found is None:
        abort(404)
    return found


def _area_in_scope(area_id: int | None) -> int | None:
    """The chosen township when it lies in the admin's area (else none, which is refused)."""
    if area_id is None:
        return None
    return area_id if Scope.of(g.user).contains(db().get(Area, area_id)) else None


@bp.route("/admin/<platform>", methods=["GET", "POST"])
@rule(Role.ADMIN)
def accounts(platform: str) -> Any:
    """A platform's accounts: its declared credentials (secrets write-only), the township,
    the author line."""
    found = _plugin_or_404(platform)
    errors: dict[str, str] = {}
    if request.method == "POST":
        account: PublisherAccount | None = None
        if request.form.get("account_id", "").strip():
            account_id = form_id("account_id")
            account = db().get(PublisherAccount, account_id) if account_id is not None else None
            if (
                account is None
                or account.platform != platform
                or not Scope.of(g.user).contains(account.area)
            ):
                abort(404, description=_("{noun}账号不存在").format(noun=publisher_noun(platform)))
        with transaction() as tx:
            svc.save_account(
                db(),
                g.user,
                account,
                platform=platform,
                area_id=_area_in_scope(form_id("area_id")),
                credentials={f.name: request.form.get(f.name, "") for f in found.credentials},
                office=request.form.get("office", ""),
                active=account is None or "active" in request.form,
            )
        if tx.ok:
            flash(_("已保存"), "success")
            return redirect(url_for(".accounts", platform=platform))
        errors = tx.fields
    scope = Scope.of(g.user)
    townships = [a for a in scope.areas(db()) if a.kind is AreaKind.TOWNSHIP]
    return render_template(
        "publishing/accounts.html",
        plugin=found,
        accounts=[a for a in svc.accounts(db(), platform) if scope.contains(a.area)],
        townships=townships,
        credentials=found.credentials,
        errors=errors,
        form=request.form if request.method == "POST" else {},
    )


def _act(change: Callable[[Session, User, int], object], done: str) -> Callable[..., Any]:
    """A reviewer's step on one article; back to the announcement's renders, ``done`` said."""

    def view(announcement_id: int, platform: str, article_id: int) -> Any:
        article = db().get(PublisherArticle, article_id)
        ann = announcement_or_404(announcement_id)
        if (
            article is None
            or article.announcement_id != ann.id
            or article.account.platform != platform
        ):
            abort(404)
        with transaction(missing=True) as tx:
            change(db(), g.user, article_id)
        if tx.ok:
            flash(_(done), "info")
        return redirect(
            url_for("schedule.renders", announcement_id=announcement_id) + f"#{platform}"
        )

    return view


# 发布: the scheduler submits the draft and follows it until it is published; 重试: a failed
# or uncertain article again (after checking the account's back office).
add_routes(
    bp,
    (
        Route(
            f"/schedule/announcements/<int:announcement_id>/<platform>/<int:article_id>/{action}",
            action,
            REVIEWERS,
            _act(change, done),
        )
        for action, change, done in (
            ("publish", svc.request_publish, N_("已提交发布，稍后刷新本页查看结果")),
            ("retry", svc.retry_article, N_("已重新排队")),
        )
    ),
    method="POST",
)
