"""The chat-channel interface: how the scheduler reaches group chats.

The cms side defines it; implementations live elsewhere (bot/ for Telegram; robots/ for the
WeCom, DingTalk and Feishu group robots) and are found at start-up through the
``dalaba.channels`` entry point group, so cms never imports them.

A channel is called from a worker thread and may block. It raises the errors below so that
the dispatcher can decide: retry later, deactivate the chat, fail at once, or mark the
delivery uncertain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, runtime_checkable

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
    # A group robot's webhook address and signing secret (never shown: kept out of repr).
    webhook_url: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class SendResult:
    message_ids: list[str]
    # Set when the platform moved the chat (Telegram: group → supergroup).
    new_chat_id: str | None = None


class ChannelError(Exception):
    """Base of the errors a channel raises."""


class TemporaryFailure(ChannelError):
    """Network trouble, rate limit or server error: try again later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
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


def load_channel(settings: Settings, platform: str) -> ChatChannel | None:
    """Only the channel registered as ``platform`` (a robot's test message from the web or
    the CLI, without starting every other channel); None when none is installed."""
    for ep in entry_points(group="dalaba.channels", name=platform):
        factory: ChannelFactory = ep.load()
        return factory(settings)
    return None


def load_channels(settings: Settings, registry: ChannelRegistry) -> ChannelRegistry:
    """Register every installed channel that is configured (a factory returns None if not)."""
    for ep in entry_points(group="dalaba.channels"):
        try:
            factory: ChannelFactory = ep.load()
            channel = factory(settings)
        except Exception:
            log.exception("chat channel %s failed to load; its chats use the local outbox", ep.name)
            continue
        if channel is not None:
            registry.register(channel)
            log.info("chat channel %s ready", ep.name)
    return registry
