"""The CMS's domain errors. Views turn them into messages, the API into 4xx, the CLI into exit codes.

Messages are Chinese msgids with ``{name}`` parameters, translated at the edge, so the
services stay usable without Flask.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from audio.errors import Reason

if TYPE_CHECKING:
    from audio.errors import AudioError


def N_(msgid: str) -> str:
    """Mark a message for extraction; translation happens where it is shown."""
    return msgid


@dataclass(frozen=True)
class Message(Reason):
    """A message id (the Chinese source text with ``{name}`` placeholders) and its parameters.

    Stored messages (alerts, failure reasons, deactivation reasons) are kept in this form and
    rendered in the reader's language. A parameter may itself be a message (e.g. a state
    label or the reason of a failure inside an alert); it is rendered the same way.

    The stored form (:meth:`dumps`, :meth:`loads`) is the audio package's
    :class:`~audio.errors.Reason`, so the reasons audio stores read as messages here.
    """

    def render(self, translate: Callable[[str], str] | None = None) -> str:
        text = translate(self.msgid) if translate else self.msgid
        params = {
            name: Message(value.msgid, value.params).render(translate)
            if isinstance(value, Reason)
            else value
            for name, value in self.params.items()
        }
        if translate and isinstance(params.get("label"), str):
            # Field labels are msgids too (marked with N_ where they are passed).
            params["label"] = translate(params["label"])
        try:
            return text.format(**params) if params else text
        except (KeyError, IndexError, ValueError):
            # A translation whose placeholders no longer match: the source text still works.
            return self.msgid.format(**params) if params else self.msgid

    def __str__(self) -> str:
        return self.render()

    @staticmethod
    def stored_prefix(msgid: str) -> str:
        """How every stored form of ``msgid`` begins, to find rows by their message in SQL."""
        return json.dumps({"msgid": msgid}, ensure_ascii=False)[:-1]


def audio_message(source: AudioError | Reason) -> Message:
    """The message of an audio error or of an audio :class:`~audio.errors.Reason`.

    The audio package keeps its messages as msgids with parameters too (without Flask); a
    parameter that is itself a reason becomes a nested :class:`Message`.
    """
    reason = source if not isinstance(source, Exception) else source.message
    return Message.from_json(reason.to_json())


class DomainError(Exception):
    """Base of every error the services raise on purpose."""

    def __init__(self, msgid: str, /, **params: Any) -> None:
        self.message = Message(msgid, params)
        super().__init__(str(self.message))


class NotFound(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class WorkflowError(DomainError):
    """The requested transition is not allowed from the current state."""


class Conflict(DomainError):
    pass


class ValidationError(DomainError):
    """One or more fields are invalid; ``errors`` maps each field to its message."""

    def __init__(self, errors: Mapping[str, Message]) -> None:
        self.errors = dict(errors)
        super().__init__(N_("输入有误：{fields}"), fields="、".join(self.errors))

    def render(self, translate: Callable[[str], str] | None = None) -> dict[str, str]:
        return {name: msg.render(translate) for name, msg in self.errors.items()}


class Errors:
    """Collects field errors while validating, then raises them together."""

    def __init__(self) -> None:
        self.items: dict[str, Message] = {}

    def add(self, field_name: str, msgid: str, /, **params: Any) -> None:
        self.items.setdefault(field_name, Message(msgid, params))

    def __contains__(self, name: str) -> bool:
        return name in self.items

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)
