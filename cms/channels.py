"""The chat-channel port: how cms reaches group chats, and what it knows of a platform.

The cms side defines it; implementations live elsewhere (bot/ for Telegram; robots/ for the
WeCom, DingTalk and Feishu group robots) and are found through the ``dalaba.channels`` entry
point group, so cms never imports them. Each entry point names a :class:`ChannelPlugin`: the
platform's name and label, how a chat of it is bound (a code sent in the chat, or an address
pasted in the Chats page: its form fields, declared here as data and rendered by cms, and
its validation, with its own messages), and the factory of its sending channel, which reads
the platform's own configuration keys (:meth:`cms.settings.Settings.plugin_env`). cms knows
no platform's URL format, key or setting.

A channel is called from a worker thread and may block. It raises the errors below so that
the dispatcher can decide: retry later, deactivate the chat, fail at once, or mark the
delivery uncertain. Each carries its reason as a :class:`~cms.services.errors.Message` (a
message id from the plugin's own catalogue with its parameters; the platform's code and its
own words stay plain parameters), stored as it is and shown in the reader's language; a
plain text (a platform's answer passed on) is kept as it is.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from cms.services.errors import Message
from cms.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Notice:
    """One delivery: the same notice a village hears, as text and a voice note."""

    delivery_id: int
    chat_id: str
    title: str
    text: str
    voice_path: Path | None = None
    voice_duration: float | None = None
    # Parts already sent before a restart (their message ids are in ``sent_ids``); a channel
    # resumes after them instead of sending them again.
    sent_ids: tuple[str, ...] = ()
    # The notice's public share page, linked from the message where the platform allows it.
    link: str | None = None
    # The chat's credentials as its plugin made them when the chat was bound (a group
    # robot's webhook address and signing secret, under the plugin's own field names); cms
    # passes them on and never reads them. Kept out of repr.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)


@dataclass(frozen=True)
class SendResult:
    message_ids: list[str]
    # Set when the platform moved the chat (Telegram: group → supergroup).
    new_chat_id: str | None = None


class ChannelError(Exception):
    """Base of the errors a channel raises.

    ``message`` is the reason: a :class:`~cms.services.errors.Message` (stored as such and
    rendered in the reader's language) or plain text (technical detail, kept as it is).
    ``str(exc)`` is the reason in Chinese (logs).
    """

    def __init__(self, message: str | Message = "") -> None:
        self.message = message if isinstance(message, Message) else Message(message)
        super().__init__(str(self.message))


class TemporaryFailure(ChannelError):
    """Network trouble, rate limit or server error: try again later."""

    def __init__(self, message: str | Message = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(TemporaryFailure):
    """The platform asked us to wait (too fast, or the robot is blocked for a while after
    throttling): nothing was posted. Try again after ``retry_after``; never a failure."""


class ChatUnavailable(ChannelError):
    """The chat can no longer be reached (bot removed, chat deleted): deactivate it."""


class PermanentFailure(ChannelError):
    """The platform refused this message and will refuse it again (a 400-class answer, a
    robot's security setting): fail the delivery at once with the reason, no retries."""


class OutcomeUnknown(ChannelError):
    """The request went out but no answer came back: it may have been delivered."""


ProgressCallback = Callable[[list[str]], None]


@runtime_checkable
class ChatChannel(Protocol):
    platform: str

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        """Post ``notice``; call ``progress(ids_so_far)`` after each part is accepted."""
        ...


@dataclass
class ChannelRegistry:
    channels: dict[str, ChatChannel] = field(default_factory=dict)

    def register(self, channel: ChatChannel) -> None:
        self.channels[channel.platform] = channel

    def get(self, platform: str) -> ChatChannel | None:
        return self.channels.get(platform)


ChannelFactory = Callable[[Settings], "ChatChannel | None"]
GROUP = "dalaba.channels"


@dataclass(frozen=True)
class FormField:
    """One input of the form that binds a chat by its address, declared by the plugin and
    rendered by cms (``label`` is a message id, shown translated; ``placeholder`` is shown
    as it is, e.g. "https://"). ``dalaba chats bind`` takes it as ``--NAME`` (``help`` and
    ``envvar`` are its help text and the environment variable it may come from)."""

    name: str
    label: str
    type: str = "text"  # the <input> type: text | url | password
    required: bool = False
    # Stored and never shown again (a password input, not echoed back into the page).
    secret: bool = False
    placeholder: str = ""
    help: str = ""
    envvar: str | None = None
    # The longest value accepted (characters; checked by cms before the plugin's own check).
    max_len: int = 200


@dataclass(frozen=True)
class Binding:
    """A validated chat, as the platform's plugin made it: the chat's id in dalaba (derived
    from the address's key, never the key itself) and the credentials to keep for it.

    ``credentials`` is the plugin's own mapping (its field names, e.g. a robot's address
    and signing secret): cms stores it on the chat, never shows it again, never logs it,
    and hands it back to the plugin's channel in every :class:`Notice`.
    """

    chat_id: str
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)


# ``validate(values, allow_local)``: ``values`` are what the form (or ``dalaba chats bind``)
# was given for the plugin's ``fields``, by field name, stripped (empty when left blank);
# or, to check a bound chat again, its stored credentials. ``allow_local`` lets an address
# be on this machine or a private network (tests, a self-hosted relay).
# Raises cms.services.errors.ValidationError keyed by field name, in the plugin's own words.
AddressValidator = Callable[[Mapping[str, str], bool], Binding]


@dataclass(frozen=True)
class ChannelPlugin:
    """Everything cms knows of one chat platform, registered as a ``dalaba.channels`` entry."""

    platform: str
    label: str
    channel: ChannelFactory
    # How a chat of this platform is bound: by an address pasted in the Chats page (a
    # group robot), validated by ``validate``; None: by a code sent in the chat (/bind).
    validate: AddressValidator | None = None
    fields: tuple[FormField, ...] = ()
    # Where the platform keeps what the form asks for, in its own words (shown with an error).
    hint: str | None = None
    # How the reach preview names this platform's chats (default: the label).
    reach_label: str | None = None
    # The platforms' order on the pages (the work robots first).
    order: int = 100
    # Whether this installation can send to the platform (e.g. a bot token is set); when
    # not, chats bound by a code wait in the local outbox.
    ready: Callable[[Settings], bool] = field(default=lambda _settings: True)
    # ``check(settings)`` raises cms.settings.ConfigError for a malformed key (at start-up).
    check: Callable[[Settings], object] = field(default=lambda _settings: None)
    # ``chat_id_error(chat_id)``: why a chat id typed for ``dalaba chats bind`` cannot be one
    # of this platform's (a message id with ``{id}``), or None.
    chat_id_error: Callable[[str], str | None] = field(default=lambda _chat_id: None)
    # The plugin's own English catalogue (``<translations>/en/LC_MESSAGES/messages.po``).
    translations: Path | None = None
    # The Chats page's words about a platform bound by a code, each a message id in the
    # plugin's own catalogue: a short badge by its name, a line under it, what to do while
    # it cannot send (``ready`` is False), and how an operator uses a link code there.
    badge: str | None = None
    note: str | None = None
    not_ready_note: str | None = None
    link_note: str | None = None
    # For a platform bound by an address: a line above the bind form, in the plugin's words
    # (platforms that share one, e.g. the group robots, show it once).
    intro: str | None = None

    @property
    def by_address(self) -> bool:
        return self.validate is not None


_loaded: tuple[object, tuple[str, ...], dict[str, ChannelPlugin]] | None = None
T = TypeVar("T")


def installed(group: str, kind: type[T]) -> list[T]:
    """The ``kind`` objects the entry points of ``group`` name (one that fails to load, or
    names something else, is logged and left out)."""
    found: list[T] = []
    for ep in entry_points(group=group):
        try:
            value = ep.load()
        except Exception:
            log.exception("plugin %s (%s) failed to load", ep.name, group)
            continue
        if isinstance(value, kind):
            found.append(value)
        else:
            log.error("entry point %s = %s is not a %s", ep.name, ep.value, kind.__name__)
    return found


def plugins() -> dict[str, ChannelPlugin]:
    """Every installed chat platform by name, in page order (read once per set of paths)."""
    global _loaded
    key = (entry_points, tuple(sys.path))
    if _loaded is not None and _loaded[:2] == key:
        return _loaded[2]
    found = installed(GROUP, ChannelPlugin)
    loaded = {p.platform: p for p in sorted(found, key=lambda p: p.order)}
    _loaded = (key[0], key[1], loaded)
    return loaded


def plugin(platform: str) -> ChannelPlugin | None:
    return plugins().get(platform)


class PlatformLabels(Mapping[str, str]):
    """Platform name → label (a message id), read from the installed plugins when used."""

    def __init__(
        self,
        *,
        by_address: bool | None = None,
        reach: bool = False,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.by_address = by_address
        self.reach = reach
        self.extra = dict(extra or {})

    def _labels(self) -> dict[str, str]:
        labels = {
            p.platform: (p.reach_label or p.label) if self.reach else p.label
            for p in plugins().values()
            if self.by_address is None or p.by_address == self.by_address
        }
        return {**labels, **self.extra}

    def __getitem__(self, platform: str) -> str:
        return self._labels()[platform]

    def __iter__(self) -> Iterator[str]:
        return iter(self._labels())

    def __len__(self) -> int:
        return len(self._labels())


def check_config(settings: Settings) -> None:
    """Let every installed platform check its own configuration keys.

    Raises:
        ConfigError: a platform's key is malformed (the message names the variable).
    """
    for p in plugins().values():
        p.check(settings)


def load_channel(settings: Settings, platform: str) -> ChatChannel | None:
    """Only the channel registered as ``platform`` (a robot's test message from the web or
    the CLI, without starting every other channel); None when none is installed."""
    found = plugin(platform)
    return found.channel(settings) if found is not None else None


def load_channels(settings: Settings, registry: ChannelRegistry) -> ChannelRegistry:
    """Register every installed channel that is configured (a factory returns None if not)."""
    for name, found in plugins().items():
        try:
            channel = found.channel(settings)
        except Exception:
            log.exception("chat channel %s failed to load; its chats use the local outbox", name)
            continue
        if channel is not None:
            registry.register(channel)
            log.info("chat channel %s ready", name)
    return registry
