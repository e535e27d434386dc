"""The editable list of announcement topics."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from cms.models import Topic, User
from cms.services import audit
from cms.services.errors import N_, Errors
from cms.services.text import clean_text


def all_topics(session: Session, *, active_only: bool = False) -> list[Topic]:
    stmt = select(Topic).order_by(Topic.sort, Topic.id)
    if active_only:
        stmt = stmt.where(Topic.active)
    return list(session.scalars(stmt))


def save_topic(
    session: Session, actor: User | None, topic: Topic | None, *, name: object, active: bool = True
) -> Topic:
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
    topic.name, topic.active = clean, active
    session.flush()
    audit.record(session, actor, "topic.save", topic, name=clean, active=active)
    return topic
