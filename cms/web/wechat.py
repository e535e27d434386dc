"""The WeChat Official Account: its settings (admin) and the 发布 button on an announcement."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cms.models import Area, AreaKind, Role, WechatAccount, WechatArticle
from cms.roles import REVIEWERS
from cms.services import wechat as wechat_svc
from cms.services.scope import Scope
from cms.web.auth import rule
from cms.web.db import db, transaction
from cms.web.forms import announcement_or_404, form_id

bp = Blueprint("wechat", __name__)


@bp.app_template_global()
def wechat_articles(announcement_id: int) -> list[WechatArticle]:
    """The Official Account articles of an announcement (for the panel on its audio page)."""
    return wechat_svc.articles_of(db(), announcement_id)


@bp.app_template_global()
def wechat_state_label(state: str) -> str:
    from cms.models import ArticleState

    return _(wechat_svc.STATE_LABELS[ArticleState(state)])


def _area_in_scope(area_id: int | None) -> int | None:
    """The chosen township when it lies in the admin's area (else none, which is refused)."""
    if area_id is None:
        return None
    return area_id if Scope.of(g.user).contains(db().get(Area, area_id)) else None


@bp.route("/admin/wechat", methods=["GET", "POST"])
@rule(Role.ADMIN)
def accounts() -> Any:
    """Official Accounts: AppID, AppSecret (write-only), the township, the author line."""
    errors: dict[str, str] = {}
    if request.method == "POST":
        account: WechatAccount | None = None
        if request.form.get("account_id", "").strip():
            account_id = form_id("account_id")
            account = db().get(WechatAccount, account_id) if account_id is not None else None
            if account is None or not Scope.of(g.user).contains(account.area):
                abort(404, description=_("公众号账号不存在"))
        with transaction() as tx:
            wechat_svc.save_account(
                db(),
                g.user,
                account,
                area_id=_area_in_scope(form_id("area_id")),
                app_id=request.form.get("app_id", ""),
                app_secret=request.form.get("app_secret", ""),
                office=request.form.get("office", ""),
                active=account is None or "active" in request.form,
            )
        if tx.ok:
            flash(_("已保存"), "success")
            return redirect(url_for(".accounts"))
        errors = tx.fields
    scope = Scope.of(g.user)
    townships = [a for a in scope.areas(db()) if a.kind is AreaKind.TOWNSHIP]
    return render_template(
        "wechat/accounts.html",
        accounts=[a for a in wechat_svc.accounts(db()) if scope.contains(a.area)],
        townships=townships,
        credentials=wechat_svc.credential_fields(),
        errors=errors,
        form=request.form if request.method == "POST" else {},
    )


def _act(announcement_id: int, change: Any, done: str) -> Any:
    article_id = (request.view_args or {}).get("article_id")
    article = db().get(WechatArticle, article_id) if article_id is not None else None
    ann = announcement_or_404(announcement_id)
    if article is None or article.announcement_id != ann.id:
        abort(404)
    with transaction(missing=True) as tx:
        change()
    if tx.ok:
        flash(done, "info")
    return redirect(url_for("schedule.renders", announcement_id=announcement_id) + "#wechat")


@bp.post("/schedule/announcements/<int:announcement_id>/wechat/<int:article_id>/publish")
@rule(*REVIEWERS)
def publish(announcement_id: int, article_id: int) -> Any:
    """发布: the scheduler submits the draft and follows it until it is published."""
    return _act(
        announcement_id,
        lambda: wechat_svc.request_publish(db(), g.user, article_id),
        _("已提交发布，稍后刷新本页查看结果"),
    )


@bp.post("/schedule/announcements/<int:announcement_id>/wechat/<int:article_id>/retry")
@rule(*REVIEWERS)
def retry(announcement_id: int, article_id: int) -> Any:
    """Try a failed or uncertain article again (after checking the account's back office)."""
    return _act(
        announcement_id,
        lambda: wechat_svc.retry_article(db(), g.user, article_id),
        _("已重新排队"),
    )
