"""The per-request database session, owned by the request (commit at the edge).

Every view that writes commits one way: inside ``with transaction() as tx:`` (a page, which
shows a domain error as the user's message) or under ``@commits`` (the API, whose error
handlers answer domain errors). Either commits when the work succeeds and rolls back on a
domain error (:mod:`cms.services.errors`).

A request that may change something (any method but GET, HEAD and OPTIONS, unless its
view is marked :func:`read_only`) gets a session whose transactions begin IMMEDIATE on
SQLite: it takes the writer lock before its first read, waits for it under the busy
timeout, and can never fail half-way with "database is locked". Taking the lock goes
through the one retry policy of :mod:`cms.db`. Every other request reads only.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, TypeVar

from flask import abort, current_app, flash, g, request
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from cms.db import RETRY, labelled
from cms.disk import is_disk_full
from cms.services.errors import DomainError, NotFound, ValidationError
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


class transaction:  # lower case: it reads as a verb, like contextlib.suppress
    """Commit the request's writes when the block succeeds; on a domain error, roll back and
    keep the error to show in the user's language.

    ``catch`` names the domain errors the page answers itself (any other propagates, as does
    every other exception). With ``flash`` (the default) a caught error is flashed at once;
    with ``missing`` a caught :class:`NotFound` answers 404 with its message. After the
    block, ``tx.ok`` says whether it committed, and ``tx.error``, ``tx.message`` and
    ``tx.fields`` what went wrong::

        with transaction() as tx:
            svc.save(db(), g.user, ...)
        if tx.ok:
            flash(_("已保存"), "success")
    """

    def __init__(
        self,
        *,
        catch: type[DomainError] | tuple[type[DomainError], ...] = DomainError,
        flash: bool = True,
        missing: bool = False,
    ) -> None:
        self.catch = catch
        self.flash = flash
        self.missing = missing
        self.error: DomainError | None = None

    def __enter__(self) -> transaction:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is None:
            db().commit()
            return False
        if not isinstance(exc, DomainError):
            return False  # the app's error handlers (disk full, database busy) take it
        db().rollback()
        if self.missing and isinstance(exc, NotFound):
            abort(404, description=exc.message.render(_))
        if not isinstance(exc, self.catch):
            return False
        self.error = exc
        if self.flash:
            flash(self.text, "error")
        return True

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def message(self) -> str:
        """The error's message in the reader's language ("" when there was none)."""
        return self.error.message.render(_) if self.error is not None else ""

    @property
    def fields(self) -> dict[str, str]:
        """Each invalid field's message, for a form shown again (empty for other errors)."""
        return self.error.render(_) if isinstance(self.error, ValidationError) else {}

    @property
    def text(self) -> str:
        """What one line says: every field's message, or the error's."""
        return "；".join(self.fields.values()) if self.fields else self.message


def commits(view: F) -> F:
    """Run the whole view as one transaction; domain errors go on to the blueprint's handlers."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with transaction(catch=()):
            return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
