"""Small helpers shared by test packages."""

from __future__ import annotations

from cms.services.errors import Message


def shown(stored: str | None) -> str:
    """A stored message (alert, failure or deactivation reason) as a Chinese reader sees it."""
    return Message.loads(stored or "").render()
