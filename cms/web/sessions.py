"""Logouts the database could not record yet (a full disk), kept in memory until it can.

Logging out ends every session of the user by moving the user's ``session_version``. When
that write fails, the browser's cookie is cleared all the same, and this process remembers
that the user's sessions up to that moment ended: any copy of the old cookie is refused
here, and the write is tried again (off the request path) until it is saved. A restart
forgets what was not saved yet; the cleared cookie is gone either way.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cms.models import User
from cms.services import users

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ended:
    version: int
    at: float


class EndedSessions:
    """Per user: the session version that ended, and when (sessions begun later live on)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ended: dict[int, Ended] = {}

    def end(self, user_id: int, version: int, at: float) -> None:
        with self._lock:
            self._ended[user_id] = Ended(version, at)

    def ended(self, user_id: int, version: object, login_at: object) -> bool:
        """Whether a cookie with this version, from a login at ``login_at``, has ended."""
        with self._lock:
            end = self._ended.get(user_id)
        if end is None or version != end.version:
            return False
        return not isinstance(login_at, int | float) or login_at <= end.at

    def pending(self) -> bool:
        with self._lock:
            return bool(self._ended)

    def save(self, session: Session) -> None:
        """Write the remembered logouts (the caller commits; then :meth:`saved`)."""
        with self._lock:
            items = list(self._ended.items())
        for user_id, end in items:
            user = session.get(User, user_id)
            if user is not None and user.session_version == end.version:
                users.log_out(session, user)

    def saved(self) -> None:
        """The writes of :meth:`save` were committed: forget them."""
        with self._lock:
            self._ended.clear()
