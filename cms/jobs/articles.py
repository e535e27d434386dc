"""Publisher articles (e.g. an Official Account's): drafts created on approval, published
when an officer asks.

One row per (account, approved revision), states in :class:`cms.models.ArticleState`, each
change one guarded ``UPDATE … WHERE state = old`` (and the claimant, for claimed rows).
The account is reached through the :class:`cms.publishers.Publisher` of its platform (a
``dalaba.publishers`` plugin), so cms never imports the platform code.

Duplicate policy. Creating a draft and submitting it may have no idempotency key (the
Official Account's have none), so they are treated as such. Just
before either goes out, ``request_started_at`` is committed under the claim; when the answer
comes it is cleared in the same UPDATE that records the result. A claim found expired (or
left by a process that died) with ``request_started_at`` set may have reached the platform:
the row becomes ``uncertain`` and officers check the account's back office; it is never
re-sent by itself. So a kill -9 creates a second draft only if an officer retries an
uncertain row whose first draft did land. The lost-answer window is one request's round
trip plus one small UPDATE; a crash anywhere else resumes from the rows without a duplicate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cms import queue, tree
from cms.db import rowcount, unit_of_work
from cms.jobs.context import Context
from cms.jobs.lifecycle import Failure, Kind, Outcome, run_job
from cms.models import (
    Announcement,
    ArticleState,
    PublisherAccount,
    PublisherArticle,
    Revision,
)
from cms.publishers import (
    Article,
    NotVerified,
    Publisher,
    PublisherRegistry,
    PublishLost,
    PublishRefused,
    PublishRetry,
    load_publishers,
    noun,
)
from cms.queue import QueueState
from cms.services import share
from cms.services.announcements import live_filter, reaches
from cms.services.errors import N_, Message
from cms.settings import Settings

log = logging.getLogger(__name__)

HOLD = timedelta(minutes=10)
POLL_EVERY = timedelta(seconds=20)
POLL_CAP = timedelta(minutes=10)
POLL_LIMIT = timedelta(hours=2)
"""How long a publish request is followed; after that its state is unknown (重试 polls again)."""

# "{noun}" is the platform's noun (cms.publishers.noun), stored as a message. (Rows of older
# versions carry the Official Account's words instead: its plugin's catalogue keeps them.)
LOST = N_(
    "请求已发出但没有收到回答，可能已经生效：请到{noun}后台查看草稿箱和发表记录，再决定是否重试"
)
UNEXPECTED = N_("{noun}接口出现意外错误，稍后重试")
WITHDRAWN = N_("公告已撤回")
SUPERSEDED = N_("已被新版本取代")
POLL_GAVE_UP = N_(
    "发布结果未知：提交发布 {hours} 小时后{noun}仍未给出结果。请到{noun}后台 发表记录 查看；点 重试 继续查询"
)


# Where "阅读原文" leads: the share page (the player); replaceable (tests give a fixed address).
share_url: Callable[[Settings, Announcement], str | None] = share.share_url


def publisher(ctx: Context, platform: str) -> Publisher | None:
    """The registered publisher of ``platform`` (the publishers load once per scheduler)."""
    registry: PublisherRegistry | None = ctx.shared.get("publishers")
    if registry is None:
        registry = load_publishers(ctx.settings, ctx.sessions)
        ctx.shared["publishers"] = registry
    return registry.get(platform)


def _stored(msgid: str, **params: Any) -> str:
    return Message(msgid, params).dumps()


def _noun(platform: str) -> Message:
    """The platform's noun, as a message's ``{noun}`` (rendered in the reader's language)."""
    return Message(noun(platform))


# -- planning ----------------------------------------------------------------------------


def plan_articles(session: Session, today: date) -> tuple[int, int]:
    """Create the missing article rows; cancel the drafts not yet made for stale revisions."""
    accounts = list(session.scalars(select(PublisherAccount).where(PublisherAccount.active)))
    created = 0
    if accounts:
        live = session.scalars(
            select(Revision)
            .join(Announcement, Announcement.approved_revision_id == Revision.id)
            .where(live_filter(), Revision.to_chats, Revision.end_date >= today)
        ).all()
        for rev in live:
            have = set(
                session.scalars(
                    select(PublisherArticle.account_id).where(
                        PublisherArticle.revision_id == rev.id
                    )
                )
            )
            for account in accounts:
                if account.id not in have and _serves(account, rev):
                    session.add(
                        PublisherArticle(
                            account_id=account.id,
                            announcement_id=rev.announcement_id,
                            revision_id=rev.id,
                        )
                    )
                    created += 1
        session.flush()
    cancelled = 0
    live_ids = select(Announcement.approved_revision_id).where(live_filter())
    for article in session.scalars(
        select(PublisherArticle).where(
            PublisherArticle.state == ArticleState.PENDING,
            PublisherArticle.revision_id.not_in(live_ids),
        )
    ).all():
        ann = article.revision.announcement
        reason = WITHDRAWN if ann.withdrawn_at else SUPERSEDED
        cancelled += queue.transition(
            session,
            PublisherArticle,
            article.id,
            ArticleState.PENDING,
            ArticleState.CANCELLED,
            last_error=_stored(reason),
        )
    return created, cancelled


def _serves(account: PublisherAccount, rev: Revision) -> bool:
    """Whether the township's account carries ``rev``: aimed at it, within it, or above it."""
    return reaches(rev, account.area)


def recover(session: Session, now: datetime, worker: str) -> int:
    """Rows whose claim expired or whose process died: back to the queue, or ``uncertain``
    when their request may have reached the platform."""
    back = {
        ArticleState.CREATING: ArticleState.PENDING,
        ArticleState.SUBMITTING: ArticleState.QUEUED,
    }
    moved = 0
    for running, ready in back.items():
        orphaned = or_(
            PublisherArticle.claimed_until < now,
            PublisherArticle.claimed_by.is_(None),
            ~PublisherArticle.claimed_by.startswith(f"{worker}/"),
        )
        # Looked up first: this runs every tick and almost always finds nothing to write.
        if (
            session.scalar(
                select(PublisherArticle.id)
                .where(PublisherArticle.state == running, orphaned)
                .limit(1)
            )
            is None
        ):
            continue
        base = update(PublisherArticle).where(PublisherArticle.state == running, orphaned)
        lost = base.where(PublisherArticle.request_started_at.is_not(None))
        # The reason names each article's platform: one update per platform among them.
        for platform in session.scalars(
            select(PublisherAccount.platform)
            .distinct()
            .join(PublisherArticle, PublisherArticle.account_id == PublisherAccount.id)
            .where(
                PublisherArticle.state == running,
                orphaned,
                PublisherArticle.request_started_at.is_not(None),
            )
        ).all():
            of_platform = select(PublisherAccount.id).where(PublisherAccount.platform == platform)
            moved += rowcount(
                session.execute(
                    lost.where(PublisherArticle.account_id.in_(of_platform))
                    .values(
                        state=ArticleState.UNCERTAIN,
                        claimed_until=None,
                        last_error=_stored(LOST, noun=_noun(platform)),
                    )
                    .execution_options(synchronize_session=False)
                )
            )
        moved += rowcount(
            session.execute(
                base.where(PublisherArticle.request_started_at.is_(None))
                .values(state=ready, claimed_by=None, claimed_until=None)
                .execution_options(synchronize_session=False)
            )
        )
    return moved


def _in_use(session: Session) -> bool:
    """Whether there is an account or an article at all (most installations have neither)."""
    return (
        session.scalar(select(PublisherAccount.id).limit(1)) is not None
        or session.scalar(select(PublisherArticle.id).limit(1)) is not None
    )


def _due(session: Session, state: ArticleState, now: datetime) -> list[tuple[int, str]]:
    """The due articles in ``state``, each with its account's platform."""
    return [
        (row.id, row.platform)
        for row in session.execute(
            select(PublisherArticle.id, PublisherAccount.platform)
            .join(PublisherAccount, PublisherAccount.id == PublisherArticle.account_id)
            .where(queue.claimable(PublisherArticle, state, now), PublisherAccount.active)
            .order_by(PublisherArticle.id)
        )
    ]


# -- work --------------------------------------------------------------------------------


def work_due(ctx: Context, report: Any = None) -> int:
    """One pass: plan, recover, create due drafts, submit publish requests, poll publishing."""
    now = ctx.now()
    if not unit_of_work(ctx.sessions, _in_use, write=False):
        return 0
    unit_of_work(ctx.sessions, lambda s: plan_articles(s, ctx.today()))
    unit_of_work(ctx.sessions, lambda s: recover(s, now, ctx.worker))
    ids = unit_of_work(
        ctx.sessions,
        lambda s: {state: _due(s, state, now) for state in _STEPS},
        write=False,
    )
    if not any(ids.values()):
        return 0
    done = 0
    missing: set[str] = set()
    for state, step in _STEPS.items():
        for article_id, platform in ids[state]:
            pub = publisher(ctx, platform)
            if pub is None:
                if platform not in missing:
                    log.warning("articles are waiting: no %r publisher is installed", platform)
                    missing.add(platform)
                continue
            outcome = step(ctx, pub, article_id)
            if report is not None:
                report.count("article", outcome)
            done += 1
    return done


@dataclass(frozen=True)
class _Job:
    article_id: int
    account_id: int
    attempts: int
    article: Article | None
    draft_ref: str | None
    publish_ref: str | None
    submitted_at: datetime | None = None
    platform: str = ""


def _load(session: Session, settings: Settings, article_id: int) -> _Job | None:
    row = session.get(PublisherArticle, article_id)
    if row is None:
        return None
    rev, account = row.revision, row.account
    article = Article(
        account_id=account.id,
        title=rev.title,
        text=rev.body,
        # The account's own author line, else the township's office name, else its name.
        author=account.office
        or str(tree.effective(session, tree.OFFICE_NAME, account.area, "") or "")
        or account.area.name,
        source_url=share_url(settings, rev.announcement),
    )
    return _Job(
        row.id,
        account.id,
        row.attempts,
        article,
        row.draft_ref,
        row.publish_ref,
        row.submitted_at,
        account.platform,
    )


def _mark_sending(ctx: Context, article_id: int, running: ArticleState) -> Callable[[], None]:
    def sending() -> None:
        unit_of_work(
            ctx.sessions,
            lambda s: s.execute(
                update(PublisherArticle)
                .where(
                    PublisherArticle.id == article_id,
                    PublisherArticle.state == running,
                    PublisherArticle.claimed_by == ctx.worker,
                )
                .values(request_started_at=ctx.now())
                .execution_options(synchronize_session=False)
            ),
        )

    return sending


def _cleared(session: Session, final: bool) -> dict[str, Any]:
    return {"request_started_at": None}


def _classify(refused: ArticleState, job: _Job, exc: BaseException) -> Failure:
    """Retried with backoff; lost (it may be there): uncertain; refused: ``refused`` at once."""
    if isinstance(exc, PublishRetry):
        return Failure(retry_after=exc.retry_after, error=exc.message.dumps(), then=_cleared)
    if isinstance(exc, PublishLost):
        return Failure(final=ArticleState.UNCERTAIN, error=exc.message.dumps(), then=_cleared)
    if isinstance(exc, NotVerified | PublishRefused):
        # For a publish request the draft stays in the account: back to ``drafted``.
        return Failure(final=refused, error=exc.message.dumps(), then=_cleared)
    log.exception("article %s: unexpected publisher error", job.article_id, exc_info=exc)
    return Failure(error=_stored(UNEXPECTED, noun=_noun(job.platform)), then=_cleared)


def _with_article(session: Session, ctx: Context, article_id: int) -> _Job | None:
    job = _load(session, ctx.settings, article_id)
    return job if job is not None and job.article is not None else None


def _with_draft(session: Session, ctx: Context, article_id: int) -> _Job | None:
    job = _load(session, ctx.settings, article_id)
    return job if job is not None and job.draft_ref else None


def _unbound(ctx: Context, job: _Job) -> str:
    raise RuntimeError("an article step runs with its publisher (see create_one, submit_one)")


_FINAL: dict[QueueState, Outcome] = {
    ArticleState.FAILED: Outcome.FAILED,
    ArticleState.DRAFTED: Outcome.DRAFTED,
    ArticleState.UNCERTAIN: Outcome.UNCERTAIN,
}


def _step(
    ready: ArticleState,
    running: ArticleState,
    gave_up: ArticleState,
    load: Callable[[Session, Context, int], _Job | None],
    done: ArticleState,
    values: Callable[[Context, str], dict[str, Any]],
) -> Kind[_Job, str]:
    """One claimed step of an article: ``ready → running → done`` (or ``gave_up``, refused)."""

    def record(session: Session, ctx: Context, job: _Job, answer: str) -> Outcome:
        moved = queue.finish(
            session, PublisherArticle, job.article_id, running=running, new=done,
            worker=ctx.worker, request_started_at=None, last_error=None, attempts=0,
            **values(ctx, answer),
        )  # fmt: skip
        return Outcome(done.value) if moved else Outcome.SKIPPED

    return Kind(
        name="article", model=PublisherArticle, hold=HOLD, load=load, work=_unbound,
        record=record, classify=partial(_classify, gave_up), ready=ready, running=running,
        failed=gave_up, retry_outcome=Outcome(ready.value), outcomes=_FINAL,
    )  # fmt: skip


CREATE = _step(
    ArticleState.PENDING, ArticleState.CREATING, ArticleState.FAILED, _with_article,
    ArticleState.DRAFTED,
    lambda ctx, draft_ref: {
        "draft_ref": draft_ref, "drafted_at": ctx.now(), "next_attempt_at": None,
    },
)  # fmt: skip
# Out of attempts or refused, a publish request goes back to ``drafted``: the draft stays.
SUBMIT = _step(
    ArticleState.QUEUED, ArticleState.SUBMITTING, ArticleState.DRAFTED, _with_draft,
    ArticleState.PUBLISHING,
    lambda ctx, publish_ref: {
        "publish_ref": publish_ref, "submitted_at": ctx.now(),
        "next_attempt_at": ctx.now() + POLL_EVERY,
    },
)  # fmt: skip


def create_one(ctx: Context, pub: Publisher, article_id: int) -> Outcome:
    """Claim one pending article and put it in the account's draft box."""

    def create(ctx: Context, job: _Job) -> str:
        assert job.article is not None  # _with_article
        return pub.create_draft(
            job.article, ctx.now(), _mark_sending(ctx, article_id, ArticleState.CREATING)
        )

    return run_job(ctx, replace(CREATE, work=create), article_id)


def submit_one(ctx: Context, pub: Publisher, article_id: int) -> Outcome:
    """Claim one publish request and hand the draft to the platform."""

    def submit(ctx: Context, job: _Job) -> str:
        assert job.draft_ref is not None  # _with_draft
        return pub.submit(
            job.account_id, job.draft_ref, ctx.now(),
            _mark_sending(ctx, article_id, ArticleState.SUBMITTING),
        )  # fmt: skip

    return run_job(ctx, replace(SUBMIT, work=submit), article_id)


def poll_one(ctx: Context, pub: Publisher, article_id: int) -> str:
    """Ask how a publish request is going (read-only on the platform: no claim needed)."""
    job = unit_of_work(ctx.sessions, lambda s: _load(s, ctx.settings, article_id), write=False)
    if job is None or not job.publish_ref:
        return "skipped"
    now = ctx.now()
    guard = (
        PublisherArticle.id == article_id,
        PublisherArticle.state == ArticleState.PUBLISHING,
        PublisherArticle.publish_ref == job.publish_ref,
    )

    def write(**values: Any) -> None:
        unit_of_work(
            ctx.sessions,
            lambda s: s.execute(
                update(PublisherArticle)
                .where(*guard)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )

    if job.submitted_at is None:
        # Polling again after 重试 (or a row from before this was recorded): the limit
        # counts from now.
        write(submitted_at=now)
    elif now - job.submitted_at > POLL_LIMIT:
        write(
            state=ArticleState.UNCERTAIN,
            next_attempt_at=None,
            last_error=_stored(
                POLL_GAVE_UP,
                hours=int(POLL_LIMIT.total_seconds() // 3600),
                noun=_noun(pub.platform),
            ),
        )
        return ArticleState.UNCERTAIN.value
    try:
        status = pub.poll(job.account_id, job.publish_ref, now)
    except (PublishRetry, PublishLost) as exc:
        delay = min(queue.backoff(job.attempts + 1), POLL_CAP)
        write(
            attempts=job.attempts + 1, last_error=exc.message.dumps(), next_attempt_at=now + delay
        )
        return "waiting"
    except PublishRefused as exc:
        write(state=ArticleState.DRAFTED, publish_ref=None, last_error=exc.message.dumps())
        return ArticleState.DRAFTED.value
    if not status.done:
        write(next_attempt_at=now + POLL_EVERY, last_error=None)
        return "waiting"
    if status.removed is not None:
        # Published, then deleted or blocked: not a draft any more (never "草稿仍在").
        write(
            state=ArticleState.PUBLISHED,
            article_url=status.article_url,
            published_at=now,
            last_error=status.removed.dumps(),
            next_attempt_at=None,
        )
        return ArticleState.PUBLISHED.value
    if status.failure is not None:
        write(
            state=ArticleState.DRAFTED,
            publish_ref=None,
            last_error=status.failure.dumps(),
            next_attempt_at=None,
        )
        return ArticleState.DRAFTED.value
    write(
        state=ArticleState.PUBLISHED,
        article_url=status.article_url,
        published_at=now,
        last_error=None,
        next_attempt_at=None,
    )
    return ArticleState.PUBLISHED.value


_STEPS: dict[ArticleState, Callable[[Context, Publisher, int], str]] = {
    ArticleState.PENDING: create_one,
    ArticleState.QUEUED: submit_one,
    ArticleState.PUBLISHING: poll_one,
}
