"""Download records for the compliance view, written in batches off the request path.

A download only appends to a list in memory; a background thread writes what has gathered
in one short transaction about once a second. So 200 operators fetching at once take no
write lock while they are served and never wait on each other or on the scheduler, and a
busy database delays a record instead of failing or slowing a download.

The share pages' audio (``/s/<token>/audio.mp3``) is counted through the same buffer: a
fetch is one more entry, written as a per-announcement, per-day count; so is an officer
opening a notice's print page (an audit entry ``notice.print``, counted in the ledger).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

from flask import Flask, current_app
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from cms.db import transaction
from cms.services import notices as notice_svc
from cms.services import operators as svc
from cms.services import share as share_svc
from cms.services import terminals as terminal_svc
from cms.services.notices import Print
from cms.services.terminals import Fetch

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
# Records kept while the database cannot take them (about a day of a busy township); beyond
# that the oldest are dropped, with a warning, rather than growing without end.
PENDING_LIMIT = 20_000


@dataclass(frozen=True)
class Download:
    """One fetch through an outlet's link, as ``svc.record_download`` takes it."""

    outlet_id: int
    day: date
    kind: str
    program_id: int | None
    at: datetime

    @property
    def key(self) -> tuple[int, date, str, int | None]:
        return self.outlet_id, self.day, self.kind, self.program_id


@dataclass(frozen=True)
class ShareFetch:
    """One fetch of a share page's audio from its start: counted, nothing about who."""

    announcement_id: int
    day: date
    at: datetime


class DownloadLog:
    """A thread-safe buffer of downloads and the thread that writes it to the database.

    Repeats of the same fetch within ``svc.DOWNLOAD_DEDUPE`` are dropped in memory already
    (the service checks the database again, for other processes and restarts). The thread
    starts with the first download; ``flush`` writes at once (tests, shutdown).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        interval: float = FLUSH_SECONDS,
        limit: int = PENDING_LIMIT,
    ) -> None:
        self.sessions = sessions
        self.interval = interval
        self.limit = limit
        self._pending: list[Download | ShareFetch | Fetch | Print] = []
        self._seen: dict[tuple[int, date, str, int | None], datetime] = {}
        self._printed: dict[tuple[int, int], datetime] = {}
        self._lock = threading.Lock()  # guards _pending and _seen; held for microseconds
        self._flushing = threading.Lock()  # one writer at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(
        self, outlet_id: int, day: date, kind: str, program_ids: Iterable[int | None], at: datetime
    ) -> None:
        """Note a download of ``program_ids`` (None for a feed or playlist); never blocks."""
        if kind not in svc.DOWNLOAD_KINDS:
            raise ValueError(f"unknown download kind {kind!r}")
        with self._lock:
            for program_id in program_ids:
                download = Download(outlet_id, day, kind, program_id, at)
                seen = self._seen.get(download.key)
                if seen is not None and seen > at - svc.DOWNLOAD_DEDUPE:
                    continue
                self._seen[download.key] = at
                self._pending.append(download)
            start = self._thread_to_start()
        if start is not None:
            start.start()

    def add_share(self, announcement_id: int, day: date, at: datetime) -> None:
        """Note a fetch of a share page's audio; never blocks."""
        with self._lock:
            self._pending.append(ShareFetch(announcement_id, day, at))
            start = self._thread_to_start()
        if start is not None:
            start.start()

    def add_fetch(self, fetch: Fetch) -> None:
        """Note a terminal's fetch (its bytes sent known once the response closed); never blocks."""
        with self._lock:
            self._pending.append(fetch)
            start = self._thread_to_start()
        if start is not None:
            start.start()

    def add_idle(self, terminal_id: int, outlet_id: int, day: date, at: datetime) -> None:
        """Note a terminal's idle poll of ``now.mp3`` (nothing to play): a sign of life, at most
        one per :data:`terminal_svc.IDLE_EVERY`, fetching no program; never blocks."""
        key = (terminal_id, day, "idle", None)
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and seen > at - terminal_svc.IDLE_EVERY:
                return
            self._seen[key] = at
            self._pending.append(
                Fetch(
                    terminal_id=terminal_id,
                    outlet_id=outlet_id,
                    day=day,
                    kind=terminal_svc.IDLE_KIND,
                    program_id=None,
                    break_in_id=None,
                    at=at,
                    size=0,
                    start=0,
                    sent=0,
                )
            )
            start = self._thread_to_start()
        if start is not None:
            start.start()

    def add_print(self, printed: Print) -> None:
        """Note an officer opening a notice's print page (again within
        ``notice_svc.PRINT_DEDUPE``: once); never blocks."""
        key = (printed.user_id, printed.announcement_id)
        with self._lock:
            seen = self._printed.get(key)
            if seen is not None and seen > printed.at - notice_svc.PRINT_DEDUPE:
                return
            self._printed[key] = printed.at
            self._pending.append(printed)
            start = self._thread_to_start()
        if start is not None:
            start.start()

    def _thread_to_start(self) -> threading.Thread | None:
        """The writer thread when it must start now (called with ``_lock`` held)."""
        if self._thread is not None or self._stop.is_set() or not self._pending:
            return None
        self._thread = threading.Thread(target=self._run, name="dalaba-download-log", daemon=True)
        return self._thread

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Write what has gathered in one transaction; returns how many events were written.

        On a database error the batch goes back to the front of the buffer for the next try.
        """
        with self._flushing:
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch:
                return 0
            shares = Counter((f.announcement_id, f.day) for f in batch if isinstance(f, ShareFetch))
            try:
                with transaction(self.sessions) as session:
                    written = sum(
                        svc.record_download(
                            session, d.outlet_id, d.day, d.kind, d.program_id, now=d.at
                        )
                        is not None
                        for d in batch
                        if isinstance(d, Download)
                    )
                    written += share_svc.record_downloads(session, shares)
                    written += terminal_svc.record(
                        session, [f for f in batch if isinstance(f, Fetch)]
                    )
                    written += notice_svc.record_prints(
                        session, [p for p in batch if isinstance(p, Print)]
                    )
            except SQLAlchemyError as exc:
                log.warning("%d downloads not recorded yet, will retry: %s", len(batch), exc)
                self._requeue(batch)
                return 0
            self._forget_old(max(d.at for d in batch))
            return written

    def close(self) -> None:
        """Stop the thread and write what is left (at shutdown)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.interval * 10)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the thread must outlive any one bad batch
                log.exception("recording downloads failed")

    def _requeue(self, batch: list[Download | ShareFetch | Fetch | Print]) -> None:
        with self._lock:
            self._pending = batch + self._pending
            dropped = len(self._pending) - self.limit
            if dropped > 0:
                del self._pending[:dropped]
                log.warning("%d download records dropped: the database took none", dropped)

    def _forget_old(self, now: datetime) -> None:
        with self._lock:
            cutoff = now - max(svc.DOWNLOAD_DEDUPE, terminal_svc.IDLE_EVERY)
            self._seen = {k: at for k, at in self._seen.items() if at > cutoff}
            cutoff = now - notice_svc.PRINT_DEDUPE
            self._printed = {k: at for k, at in self._printed.items() if at > cutoff}


def init_app(app: Flask) -> DownloadLog:
    downloads = DownloadLog(app.extensions["dalaba.sessions"])
    app.extensions["dalaba.downloads"] = downloads
    return downloads


def download_log(app: Flask | None = None) -> DownloadLog:
    """The app's download log (the current app's by default)."""
    return (app or current_app).extensions["dalaba.downloads"]  # type: ignore[no-any-return]


def flush_downloads(app: Flask | None = None) -> int:
    """Write the gathered downloads now (tests call this instead of waiting a second)."""
    return download_log(app).flush()
