"""The editable list of announcement topics.

Topics are the whole install's: every township picks from the one list. Like the
install's own settings and lexicon, only a user of the whole install (no area) changes
them; an office's admin sees them.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cms.models import Topic, User
from cms.services import audit
from cms.services.errors import N_, Errors, PermissionDenied
from cms.services.scope import Scope
from cms.services.text import clean_text


def all_topics(session: Session, *, active_only: bool = False) -> list[Topic]:
    stmt = select(Topic).order_by(Topic.sort, Topic.id)
    if active_only:
        stmt = stmt.where(Topic.active)
    return list(session.scalars(stmt))


def may_change(actor: User | None) -> bool:
    """Whether ``actor`` may change the install's topics (the CLI, or the whole install)."""
    return actor is None or Scope.of(actor).whole


def save_topic(
    session: Session,
    actor: User | None,
    topic: Topic | None,
    *,
    name: object,
    active: bool | None = None,
) -> Topic:
    """Add a topic or rename it; ``active`` None keeps a topic's state (a new one is active).

    Raises:
        PermissionDenied: ``actor`` works for an office, not the whole install.
        ValidationError: an empty, too long or taken name.
    """
    if not may_change(actor):
        raise PermissionDenied(N_("主题由全县（整个系统）的管理员维护，乡镇管理员只能查看"))
    errors = Errors()
    clean = clean_text(errors, "name", name, label=N_("主题名称"), max_len=40)
    if clean and session.scalar(
        select(Topic.id).where(Topic.name == clean, Topic.id != (topic.id if topic else -1))
    ):
        errors.add("name", N_("主题“{name}”已存在"), name=clean)
    errors.raise_if_any()
    if topic is None:
        sort = (session.scalar(select(func.max(Topic.sort))) or 0) + 1
        topic = Topic(name=clean, sort=sort)
        session.add(topic)
    topic.name = clean
    if active is not None:
        topic.active = active
    session.flush()
    audit.record(session, actor, "topic.save", topic, name=clean, active=topic.active)
    return topic
