"""The publisher interface: how the scheduler reaches a WeChat Official Account.

Like :mod:`cms.channels` for group chats, cms only defines the interface; the implementation
(``wechat/``) is found at start-up through the ``dalaba.publishers`` entry point group, so
cms never imports it. A publisher is called from a scheduler thread and may block.

Errors carry a :class:`~cms.services.errors.Message` for the officer (stored and shown in
the reader's language), never a credential.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from cms.services.errors import Message
from cms.settings import Settings

log = logging.getLogger(__name__)

GROUP = "dalaba.publishers"


@dataclass(frozen=True)
class Article:
    """What an approved revision becomes in an Official Account."""

    account_id: int
    title: str
    text: str
    author: str
    source_url: str | None = None


@dataclass(frozen=True)
class PublishStatus:
    """``freepublish/get``: still publishing, published (with its link), or failed."""

    done: bool
    article_url: str | None = None
    failure: Message | None = None


class PublishError(Exception):
    """Base of the errors a publisher raises; ``message`` is what the officer reads."""

    def __init__(self, message: Message) -> None:
        super().__init__(message.msgid)
        self.message = message


class PublishRetry(PublishError):
    """Network trouble, a busy platform or an exhausted quota: try again later."""

    def __init__(self, message: Message, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PublishRefused(PublishError):
    """The platform refused and will refuse again (wrong credentials, IP not whitelisted …)."""


class NotVerified(PublishRefused):
    """The account may not publish through the API (not verified): publish it by hand."""


class PublishLost(PublishError):
    """The request went out but no answer came back: it may have taken effect."""


@runtime_checkable
class Publisher(Protocol):
    platform: str

    def create_draft(self, article: Article, now: datetime, sending: Callable[[], None]) -> str:
        """Put ``article`` in the account's draft box; returns the draft's media id.

        ``sending()`` is called just before the request that creates the draft goes out.
        """
        ...

    def submit(
        self, account_id: int, media_id: str, now: datetime, sending: Callable[[], None]
    ) -> str:
        """Ask the platform to publish a draft (``sending()`` first); returns the publish id."""
        ...

    def poll(self, account_id: int, publish_id: str, now: datetime) -> PublishStatus:
        """How the publish request is going."""
        ...


@dataclass
class PublisherRegistry:
    publishers: dict[str, Publisher] = field(default_factory=dict)

    def register(self, publisher: Publisher) -> None:
        self.publishers[publisher.platform] = publisher

    def get(self, platform: str) -> Publisher | None:
        return self.publishers.get(platform)


PublisherFactory = Callable[[Settings, "sessionmaker[Session]"], "Publisher | None"]


def load_publishers(settings: Settings, sessions: sessionmaker[Session]) -> PublisherRegistry:
    """Every installed publisher (a factory returns None when it cannot run)."""
    registry = PublisherRegistry()
    for ep in entry_points(group=GROUP):
        try:
            factory: PublisherFactory = ep.load()
            publisher = factory(settings, sessions)
        except Exception:
            log.exception("publisher %s failed to load", ep.name)
            continue
        if publisher is not None:
            registry.register(publisher)
    return registry
