"""The publisher interface: how the scheduler reaches a publishing platform (an Official
Account: drafts, then articles).

Like :mod:`cms.channels` for group chats, cms only defines the interface; the implementations
(one package per platform) are found at start-up through the ``dalaba.publishers`` entry point group,
so cms never imports them. Each entry point names a :class:`PublisherPlugin`, which reads and
checks its own configuration keys (:meth:`cms.settings.Settings.plugin_env`), declares its
accounts' credentials (stored in :attr:`cms.models.PublisherAccount.credentials`, opaque to
cms) and the platform's limits. A publisher is called from a scheduler thread and may block.

Errors carry a :class:`~cms.services.errors.Message` for the officer (stored and shown in
the reader's language), never a credential.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from sqlalchemy.orm import Session, sessionmaker

from cms import channels
from cms.channels import FormField, installed
from cms.services.errors import Message
from cms.settings import Settings

log = logging.getLogger(__name__)

GROUP = "dalaba.publishers"

# "关于……的通知" and its kin: the usual long form of a government notice's title.
_ABOUT = re.compile(
    r"关于(?P<core>.+?)的(?P<kind>紧急通知|补充通知|通知|公告|通告|倡议书|倡议|通报|决定|意见|函)"
)


def short_title(title: str, limit: int) -> str:
    """The article title for ``title``: itself when it fits ``limit`` characters;
    else "关于开展X的通知" becomes "开展X通知" (then "开展X", then "开展X…通知"); else it is
    cut, ending in "…".

    A 37-character "关于开展……专项督查检查工作的通知" is an ordinary township title, and dalaba
    titles may be 200 characters: the platform never sees more than ``limit`` (its
    plugin's :attr:`Limits.title`).
    """
    text = " ".join(title.split())
    if len(text) <= limit:
        return text
    match = _ABOUT.fullmatch(text)
    if match:
        core, kind = match["core"], match["kind"]
        for candidate in (core + kind, core):
            if len(candidate) <= limit:
                return candidate
        return core[: limit - len(kind) - 1] + "…" + kind
    return text[: limit - 1] + "…"


@dataclass(frozen=True)
class Article:
    """What an approved revision becomes in a publisher account."""

    account_id: int
    title: str
    text: str
    author: str
    source_url: str | None = None


@dataclass(frozen=True)
class PublishStatus:
    """A publish request: still publishing, published (with its link), failed (the draft
    stays in the draft box), or published and then removed (``removed`` says how; the draft
    left the draft box when it was published)."""

    done: bool
    article_url: str | None = None
    failure: Message | None = None
    removed: Message | None = None


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
        """Put ``article`` in the account's draft box; returns the draft's reference.

        ``sending()`` is called just before the request that creates the draft goes out.
        """
        ...

    def submit(
        self, account_id: int, draft_ref: str, now: datetime, sending: Callable[[], None]
    ) -> str:
        """Ask the platform to publish a draft (``sending()`` first); returns the publish
        request's reference."""
        ...

    def poll(self, account_id: int, publish_ref: str, now: datetime) -> PublishStatus:
        """How the publish request is going."""
        ...


@dataclass
class PublisherRegistry:
    publishers: dict[str, Publisher] = field(default_factory=dict)

    def register(self, publisher: Publisher) -> None:
        self.publishers[publisher.platform] = publisher

    def get(self, platform: str) -> Publisher | None:
        return self.publishers.get(platform)


@dataclass(frozen=True)
class Limits:
    """The longest title, author line and digest the platform takes (characters)."""

    title: int
    author: int
    digest: int


PublisherFactory = Callable[[Settings, "sessionmaker[Session]"], "Publisher | None"]


@dataclass(frozen=True)
class PublisherPlugin:
    """What cms knows of one publishing platform, registered as a ``dalaba.publishers`` entry."""

    platform: str
    publisher: PublisherFactory
    limits: Limits
    # How pages name the platform (a message id: the admin menu, the accounts page, the
    # announcement's panel) and the accounts page's explanation (a message id).
    label: str = ""
    intro: str = ""
    # How running text names the platform, short (a message id, in "{area}{noun}",
    # "{noun}文章"); the label when empty.
    noun: str = ""
    # ``check(settings)`` raises cms.settings.ConfigError for a malformed key (at start-up).
    check: Callable[[Settings], object] = field(default=lambda _settings: None)
    # An account's credentials: the admin page's inputs (declared here, rendered by cms) …
    credentials: tuple[FormField, ...] = ()
    # … and their check: ``validate_credentials(values, new)`` (values by field name,
    # stripped; a blank secret keeps the stored one unless ``new``) raises
    # cms.services.errors.ValidationError keyed by field name, in the plugin's words.
    validate_credentials: Callable[[Mapping[str, str], bool], None] = field(
        default=lambda _values, _new: None
    )
    # The plugin's own English catalogue (``<translations>/en/LC_MESSAGES/messages.po``).
    translations: Path | None = None


_loaded: tuple[object, tuple[str, ...], list[PublisherPlugin]] | None = None


def _plugins() -> list[PublisherPlugin]:
    """Every installed publisher plugin (read once per set of paths: pages ask often)."""
    global _loaded
    # cms.channels reads the entry points (a test may stand in for its reader).
    key = (channels.entry_points, tuple(sys.path))
    if _loaded is not None and _loaded[:2] == key:
        return _loaded[2]
    found = installed(GROUP, PublisherPlugin)
    _loaded = (key[0], key[1], found)
    return found


def plugin(platform: str) -> PublisherPlugin | None:
    """The installed publisher plugin named ``platform``, if any."""
    return next((p for p in _plugins() if p.platform == platform), None)


def platforms() -> list[str]:
    """The installed publishing platforms, by name."""
    return [p.platform for p in _plugins()]


def noun(platform: str) -> str:
    """How running text names ``platform``: its plugin's noun, else its label (message ids);
    the bare name when no plugin is installed for it (an old row)."""
    found = plugin(platform)
    if found is None:
        return platform
    return found.noun or found.label or platform


def nouns() -> list[str]:
    """The nouns (message ids) of every installed publisher, for text about all of them."""
    return [noun(p.platform) for p in _plugins()]


def credential_labels() -> dict[str, str]:
    """The labels (message ids) of every installed publisher's non-secret credentials, by
    field name (how an audit entry's details read)."""
    return {f.name: f.label for p in _plugins() for f in p.credentials if not f.secret}


def check_config(settings: Settings) -> None:
    """Let every installed publisher check its own configuration keys.

    Raises:
        ConfigError: a publisher's key is malformed (the message names the variable).
    """
    for plugin in _plugins():
        plugin.check(settings)


def load_publishers(settings: Settings, sessions: sessionmaker[Session]) -> PublisherRegistry:
    """Every installed publisher (a factory returns None when it cannot run)."""
    registry = PublisherRegistry()
    for plugin in _plugins():
        try:
            publisher = plugin.publisher(settings, sessions)
        except Exception:
            log.exception("publisher %s failed to load", plugin.platform)
            continue
        if publisher is not None:
            registry.register(publisher)
    return registry
