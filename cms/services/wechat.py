"""The township's WeChat Official Account: its settings, and the 发布 button for articles.

The scheduler makes the drafts (:mod:`cms.jobs.articles`); people only configure the
account and ask for a draft to be published, each step audited. What credentials look like
is the publisher plugin's to say (``dalaba.publishers``: its declared fields and their
check); the AppSecret is written here and never read back out: not into a page, the audit
log, an error, or the API.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from cms import queue
from cms.channels import FormField
from cms.models import Area, AreaKind, ArticleState, User, WechatAccount, WechatArticle
from cms.publishers import plugin
from cms.roles import REVIEWERS
from cms.services import audit
from cms.services.errors import (
    N_,
    Errors,
    NotFound,
    PermissionDenied,
    ValidationError,
    WorkflowError,
)
from cms.services.text import clean_text

PLATFORM = "wechat"

STATE_LABELS = {
    ArticleState.PENDING: N_("等待创建草稿"),
    ArticleState.CREATING: N_("正在创建草稿"),
    ArticleState.DRAFTED: N_("草稿已在公众号"),
    ArticleState.QUEUED: N_("等待发布"),
    ArticleState.SUBMITTING: N_("正在提交发布"),
    ArticleState.PUBLISHING: N_("发布中"),
    ArticleState.PUBLISHED: N_("已发布"),
    ArticleState.FAILED: N_("创建草稿失败"),
    ArticleState.UNCERTAIN: N_("结果不确定"),
    ArticleState.CANCELLED: N_("已取消"),
}


def credential_fields() -> tuple[FormField, ...]:
    """The account form's credential inputs, as the installed publisher declares them."""
    found = plugin(PLATFORM)
    return found.credentials if found is not None else ()


def accounts(session: Session) -> list[WechatAccount]:
    return list(session.scalars(select(WechatAccount).order_by(WechatAccount.id)))


def has_account(session: Session) -> bool:
    """Whether any Official Account is set up (the form then shows the article's title)."""
    return session.scalar(select(WechatAccount.id).where(WechatAccount.active).limit(1)) is not None


def get_account(session: Session, account_id: int) -> WechatAccount:
    account = session.get(WechatAccount, account_id)
    if account is None:
        raise NotFound(N_("公众号账号不存在"))
    return account


def save_account(
    session: Session,
    actor: User | None,
    account: WechatAccount | None,
    *,
    area_id: object,
    app_id: object,
    app_secret: object,
    office: object,
    active: bool = True,
) -> WechatAccount:
    """Create or change an account; a blank ``app_secret`` keeps the stored one."""
    errors = Errors()
    area = session.get(Area, area_id) if isinstance(area_id, int) else None
    if area is None or area.kind is not AreaKind.TOWNSHIP:
        errors.add("area_id", N_("请选择公众号服务的乡镇"))
    elif session.scalar(
        select(WechatAccount.id).where(
            WechatAccount.area_id == area.id,
            WechatAccount.id != (account.id if account else -1),
        )
    ):
        errors.add("area_id", N_("{name}已经设置了公众号"), name=area.name)
    clean_id = clean_text(errors, "app_id", app_id, label=N_("AppID"), max_len=32)
    secret = app_secret.strip() if isinstance(app_secret, str) else ""
    found = plugin(PLATFORM)
    if found is None:
        errors.add("app_id", N_("没有安装公众号发布模块（dalaba.publishers）"))
    else:
        try:
            found.validate_credentials(
                {"app_id": clean_id or "", "app_secret": secret}, account is None
            )
        except ValidationError as exc:
            for name, refused in exc.errors.items():
                errors.items.setdefault(name, refused)
    clean_office = clean_text(
        errors, "office", office, label=N_("作者（发布单位）"), max_len=16, required=False
    )
    errors.raise_if_any()
    assert area is not None
    if account is None:
        account = WechatAccount(area_id=area.id, app_id=clean_id, app_secret=secret)
        session.add(account)
    elif clean_id != account.app_id or (secret and secret != account.app_secret):
        # Another account, or a reset secret: the cached token and cover belong to the old one.
        account.access_token = account.token_expires_at = None
        if clean_id != account.app_id:
            account.thumb_media_id = None
    account.area_id, account.app_id, account.office, account.active = (
        area.id,
        clean_id,
        clean_office,
        active,
    )
    if secret:
        account.app_secret = secret
    session.flush()
    audit.record(
        session,
        actor,
        "wechat.save",
        account,
        area=area.name,
        app_id=clean_id,
        active=active,
        secret_changed=bool(secret),
    )
    return account


def articles_of(session: Session, announcement_id: int) -> list[WechatArticle]:
    return list(
        session.scalars(
            select(WechatArticle)
            .where(WechatArticle.announcement_id == announcement_id)
            .order_by(WechatArticle.id)
        )
    )


def _article(session: Session, actor: User, article_id: int) -> WechatArticle:
    if actor.role not in REVIEWERS:
        raise PermissionDenied(N_("只有审核员和管理员可以发布到公众号"))
    article = session.get(WechatArticle, article_id)
    if article is None:
        raise NotFound(N_("公众号文章不存在"))
    return article


def request_publish(session: Session, actor: User, article_id: int) -> WechatArticle:
    """The 发布 button: the scheduler submits the draft and follows it until published."""
    article = _article(session, actor, article_id)
    ann = article.revision.announcement
    if ann.withdrawn_at is not None or ann.approved_revision_id != article.revision_id:
        raise WorkflowError(N_("公告已撤回或已有新版本，不能发布这篇草稿"))
    if not article.media_id or not queue.transition(
        session,
        WechatArticle,
        article.id,
        ArticleState.DRAFTED,
        ArticleState.QUEUED,
        publish_requested_by_id=actor.id,
        attempts=0,
        next_attempt_at=None,
        last_error=None,
    ):
        raise WorkflowError(N_("这篇文章现在不能发布（草稿尚未创建或已在发布）"))
    session.refresh(article)
    audit.record(session, actor, "wechat.publish", article, announcement=article.announcement_id)
    return article


def retry_article(session: Session, actor: User, article_id: int) -> WechatArticle:
    """After checking the account's back office: try a failed or uncertain step again."""
    article = _article(session, actor, article_id)
    # A publish request whose result never came (polling gave up): ask the platform again.
    # With a draft already made, an uncertain submit goes back to the draft (publish again
    # by hand); without one, the draft is created again.
    if article.state is ArticleState.UNCERTAIN and article.publish_id:
        target = ArticleState.PUBLISHING
    else:
        target = ArticleState.DRAFTED if article.media_id else ArticleState.PENDING
    for old in (ArticleState.FAILED, ArticleState.UNCERTAIN):
        if queue.transition(
            session,
            WechatArticle,
            article.id,
            old,
            target,
            submitted_at=None,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            request_started_at=None,
            claimed_by=None,
            claimed_until=None,
        ):
            session.refresh(article)
            audit.record(session, actor, "wechat.retry", article, was=old.value)
            return article
    raise WorkflowError(N_("只有失败或结果不确定的文章可以重试"))
