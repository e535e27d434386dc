"""The per-request database session, owned by the request (commit at the edge)."""

from __future__ import annotations

import logging

from flask import current_app, g
from sqlalchemy.orm import Session

from cms.disk import is_disk_full
from cms.settings import Settings

log = logging.getLogger(__name__)


def db() -> Session:
    if "db" not in g:
        g.db = current_app.extensions["dalaba.sessions"]()
    return g.db


def settings() -> Settings:
    return current_app.extensions["dalaba.settings"]


def commit_bookkeeping(what: str) -> bool:
    """Commit writes the request does not depend on; on a full disk, drop them and go on.

    Logging in must keep working when the disk is full (SQLite still reads, but every
    write fails): a login-failure row or a "logged in" audit entry is then lost, with a
    warning in the log, instead of failing the request. Returns whether it was saved.
    """
    try:
        db().commit()
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        db().rollback()
        log.warning("%s not saved: the disk is full", what)
        return False
    return True
