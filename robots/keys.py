"""What a robot keeps to reach its group: the chat's credentials (``cms.channels.Binding``),
under the names of the bind form's fields. cms stores the mapping without reading it; the
robots read their own keys back from each :class:`cms.channels.Notice`."""

from __future__ import annotations

from cms.channels import Notice

__all__ = ["SECRET", "WEBHOOK", "secret_of", "webhook_of"]

WEBHOOK = "webhook"  # the webhook address (its key inside), canonical
SECRET = "secret"  # the signing secret (DingTalk 加签, Feishu 签名校验), when there is one


def webhook_of(notice: Notice) -> str:
    """The robot's webhook address, from the chat's credentials ("" when it has none)."""
    return notice.credentials.get(WEBHOOK, "")


def secret_of(notice: Notice) -> str | None:
    """The robot's signing secret, from the chat's credentials (None when it has none)."""
    return notice.credentials.get(SECRET) or None
