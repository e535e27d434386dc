"""A township's publisher accounts (e.g. its Official Account): their settings, and the
发布 button for articles.

The scheduler makes the drafts (:mod:`cms.jobs.articles`); people only configure the
account and ask for a draft to be published, each step audited. What credentials look like
is the publisher plugin's to say (``dalaba.publishers``: its declared fields and their
check); cms stores them as the plugin's opaque mapping. A secret field is written here and
never read back out: not into a page, the audit log, an error, or the API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from cms import publishers, queue
from cms.models import Area, AreaKind, ArticleState, PublisherAccount, PublisherArticle, User
from cms.publishers import PublisherPlugin, platforms, plugin, short_title
from cms.roles import REVIEWERS
from cms.services import audit
from cms.services.errors import (
    N_,
    Errors,
    Message,
    NotFound,
    PermissionDenied,
    ValidationError,
    WorkflowError,
)
from cms.services.text import clean_text

STATE_LABELS = {
    ArticleState.PENDING: N_("等待创建草稿"),
    ArticleState.CREATING: N_("正在创建草稿"),
    ArticleState.DRAFTED: N_("草稿已在{noun}"),  # its platform's noun (cms.publishers.noun)
    ArticleState.QUEUED: N_("等待发布"),
    ArticleState.SUBMITTING: N_("正在提交发布"),
    ArticleState.PUBLISHING: N_("发布中"),
    ArticleState.PUBLISHED: N_("已发布"),
    ArticleState.FAILED: N_("创建草稿失败"),
    ArticleState.UNCERTAIN: N_("结果不确定"),
    ArticleState.CANCELLED: N_("已取消"),
}


_Row = TypeVar("_Row", PublisherAccount, PublisherArticle)


def _listed(session: Session, model: type[_Row], condition: ColumnElement[bool]) -> list[_Row]:
    return list(session.scalars(select(model).where(condition).order_by(model.id)))


def accounts(session: Session, platform: str) -> list[PublisherAccount]:
    return _listed(session, PublisherAccount, PublisherAccount.platform == platform)


def _active_platforms(session: Session) -> list[PublisherPlugin]:
    """The installed plugins of the platforms that have an active account."""
    used = set(
        session.scalars(select(PublisherAccount.platform).where(PublisherAccount.active).distinct())
    )
    return [p for name in platforms() if name in used and (p := plugin(name)) is not None]


def has_account(session: Session) -> bool:
    """Whether any publisher account is set up (the form then shows the article's title)."""
    return bool(_active_platforms(session))


def article_title(session: Session, title: str) -> tuple[int, str, list[str]] | None:
    """The article title the announcement form shows as the officer types: the platforms'
    smallest title limit, ``title`` shortened to it and the platforms (by name); None
    without an active account."""
    found = _active_platforms(session)
    if not found:
        return None
    limit = min(p.limits.title for p in found)
    return limit, short_title(title, limit), [p.platform for p in found]


def save_account(
    session: Session,
    actor: User | None,
    account: PublisherAccount | None,
    *,
    platform: str,
    area_id: object,
    credentials: Mapping[str, object],
    office: object,
    active: bool = True,
) -> PublisherAccount:
    """Create or change an account of ``platform``; ``credentials`` holds the plugin's declared
    fields by name, and a blank secret keeps the stored one."""
    errors = Errors()
    noun = Message(publishers.noun(platform))
    area = session.get(Area, area_id) if isinstance(area_id, int) else None
    if area is None or area.kind is not AreaKind.TOWNSHIP:
        errors.add("area_id", N_("请选择{noun}服务的乡镇"), noun=noun)
    elif session.scalar(
        select(PublisherAccount.id).where(
            PublisherAccount.area_id == area.id,
            PublisherAccount.platform == platform,
            PublisherAccount.id != (account.id if account else -1),
        )
    ):
        errors.add("area_id", N_("{name}已经设置了{noun}"), name=area.name, noun=noun)
    found = plugin(platform)
    fields = found.credentials if found is not None else ()
    shown: dict[str, str] = {}
    secrets: dict[str, str] = {}
    for f in fields:
        raw = credentials.get(f.name)
        if f.secret:
            secrets[f.name] = raw.strip() if isinstance(raw, str) else ""
        else:
            shown[f.name] = clean_text(
                errors, f.name, raw, label=f.label, max_len=f.max_len, required=f.required
            )
    if found is None:
        errors.add("area_id", N_("没有安装{noun}发布模块（dalaba.publishers）"), noun=noun)
    else:
        try:
            found.validate_credentials({**shown, **secrets}, account is None)
        except ValidationError as exc:
            for name, refused in exc.errors.items():
                errors.items.setdefault(name, refused)
    clean_office = clean_text(
        errors, "office", office, label=N_("作者（发布单位）"), max_len=16, required=False
    )
    errors.raise_if_any()
    assert area is not None
    stored = dict(account.credentials) if account is not None else {}
    changed_secret = any(v and v != stored.get(k) for k, v in secrets.items())
    other_account = any(stored.get(k) != v for k, v in shown.items())
    if account is None:
        account = PublisherAccount(area_id=area.id, platform=platform)
        session.add(account)
    elif other_account or changed_secret:
        # Another account, or a reset secret: the cached token and cover belong to the old one.
        account.access_token = account.token_expires_at = None
        if other_account:
            account.cover_ref = None
    account.credentials = {**stored, **shown, **{k: v for k, v in secrets.items() if v}}
    account.area_id, account.office, account.active = area.id, clean_office, active
    session.flush()
    audit.record(
        session,
        actor,
        "publishing.save",
        account,
        area=area.name,
        **shown,
        active=active,
        secret_changed=any(secrets.values()),
    )
    return account


def articles_of(session: Session, announcement_id: int) -> list[PublisherArticle]:
    return _listed(session, PublisherArticle, PublisherArticle.announcement_id == announcement_id)


def _article(session: Session, actor: User, article_id: int) -> PublisherArticle:
    article = session.get(PublisherArticle, article_id)
    if article is None:
        raise NotFound(N_("文章不存在"))
    if actor.role not in REVIEWERS:
        noun = Message(publishers.noun(article.account.platform))
        raise PermissionDenied(N_("只有审核员和管理员可以发布到{noun}"), noun=noun)
    return article


def request_publish(session: Session, actor: User, article_id: int) -> PublisherArticle:
    """The 发布 button: the scheduler submits the draft and follows it until published."""
    article = _article(session, actor, article_id)
    ann = article.revision.announcement
    if ann.withdrawn_at is not None or ann.approved_revision_id != article.revision_id:
        raise WorkflowError(N_("公告已撤回或已有新版本，不能发布这篇草稿"))
    if not article.draft_ref or not queue.transition(
        session,
        PublisherArticle,
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
    audit.record(
        session, actor, "publishing.publish", article, announcement=article.announcement_id
    )
    return article


def retry_article(session: Session, actor: User, article_id: int) -> PublisherArticle:
    """After checking the account's back office: try a failed or uncertain step again."""
    article = _article(session, actor, article_id)
    # A publish request whose result never came (polling gave up): ask the platform again.
    # With a draft already made, an uncertain submit goes back to the draft (publish again
    # by hand); without one, the draft is created again.
    if article.state is ArticleState.UNCERTAIN and article.publish_ref:
        target = ArticleState.PUBLISHING
    else:
        target = ArticleState.DRAFTED if article.draft_ref else ArticleState.PENDING
    for old in (ArticleState.FAILED, ArticleState.UNCERTAIN):
        if queue.transition(
            session,
            PublisherArticle,
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
            audit.record(session, actor, "publishing.retry", article, was=old.value)
            return article
    raise WorkflowError(N_("只有失败或结果不确定的文章可以重试"))
