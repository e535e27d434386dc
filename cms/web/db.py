"""The per-request database session, owned by the request (commit at the edge).

A request that may change something (any method but GET, HEAD and OPTIONS, unless its
view is marked :func:`read_only`) gets a session whose transactions begin IMMEDIATE on
SQLite: it takes the writer lock before its first read, waits for it under the busy
timeout, and can never fail half-way with "database is locked". Taking the lock goes
through the one retry policy of :mod:`cms.db`. Every other request reads only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from flask import current_app, g, request
from sqlalchemy.orm import Session

from cms.db import RETRY, labelled
from cms.disk import is_disk_full
from cms.settings import Settings

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def read_only(view: F) -> F:
    """Mark a POST view that never writes (a preview, a calculation): it takes no write lock."""
    view._dalaba_read_only = True  # type: ignore[attr-defined]
    return view


def writes() -> bool:
    """Whether the current request may write to the database."""
    if request.method in SAFE_METHODS:
        return False
    view = current_app.view_functions.get(request.endpoint or "")
    return not getattr(view, "_dalaba_read_only", False)


def db() -> Session:
    if "db" not in g:
        if writes():
            session: Session = current_app.extensions["dalaba.write_sessions"]()
            with labelled(f"web {request.endpoint}"):
                RETRY.run(lambda: _begin(session))
        else:
            session = current_app.extensions["dalaba.sessions"]()
        g.db = session
    return g.db


def _begin(session: Session) -> None:
    """Take the writer lock now, before the request reads anything."""
    try:
        session.connection()
    except Exception:
        session.rollback()
        raise


def commit_then_read() -> None:
    """Commit the request's writes; what it does afterwards (building its answer) only reads.

    Those reads run in a read transaction: a write session's next transaction would begin
    IMMEDIATE and queue for SQLite's writer lock again, only to load the answer's rows.
    """
    session = db()
    session.commit()
    session.bind = current_app.extensions["dalaba.sessions"].kw["bind"]


@contextmanager
def lock_released() -> Iterator[None]:
    """Slow work in a request that writes (audio, a file, a child process), without holding
    SQLite's writer lock all the while: every other write would queue behind it.

    For use before the request has changed anything: the transaction so far (reads, and
    bookkeeping such as a token's "last used") is committed, so the lock is free while the
    block runs; the session begins a new write transaction at its next query. Objects are
    then loaded afresh, so the checks a service makes when it writes see the current rows.
    """
    session = db()
    if session.new or session.dirty or session.deleted:
        raise RuntimeError("lock_released() after the request changed something")
    session.commit()
    try:
        yield
    finally:
        session.expire_all()


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
