"""The audit log: who did what, when."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from cms.models import AuditLog, User


def record(
    session: Session,
    actor: User | None,
    action: str,
    obj: object | None = None,
    **detail: Any,
) -> AuditLog:
    """Append one entry; ``obj`` is any mapped object with an ``id``."""
    entry = AuditLog(
        user_id=actor.id if actor else None,
        action=action,
        object_type=type(obj).__name__.lower() if obj is not None else "",
        object_id=getattr(obj, "id", None),
        detail=detail,
    )
    session.add(entry)
    return entry
