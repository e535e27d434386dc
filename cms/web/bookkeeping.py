"""Bookkeeping writes that a request must neither wait for nor fail on.

Answering ``GET /api/v1/…`` only reads; that a token was used is recorded here, on one
background thread, at most once a minute per token (the row's own guarded UPDATE keeps
that true across processes too). A failure is logged and forgotten: the next use of the
token after the interval tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from cms.db import unit_of_work
from cms.services import users

log = logging.getLogger(__name__)


class Bookkeeper:
    """Runs small best-effort writes off the request path, one at a time.

    ``inline`` runs them on the caller's thread instead (tests whose own session would
    otherwise race a background commit).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        inline: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inline = inline
        self._sessions = sessions
        self._monotonic = monotonic
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dalaba-bookkeeping")
        self._lock = threading.Lock()
        self._touched: dict[int, float] = {}
        self._futures: set[Future[None]] = set()

    def token_used(self, token_id: int, now: datetime) -> None:
        """Record a token's use later, unless this process did so within the interval."""
        interval = users.TOKEN_TOUCH_INTERVAL.total_seconds()
        with self._lock:
            last = self._touched.get(token_id)
            tick = self._monotonic()
            if last is not None and tick - last < interval:
                return
            self._touched[token_id] = tick
        self._submit(lambda: self._touch(token_id, now))

    def run(self, job: Callable[[], None]) -> None:
        """Run a best-effort write later (a failure is logged; the caller may try again)."""
        self._submit(job)

    def _touch(self, token_id: int, now: datetime) -> None:
        unit_of_work(self._sessions, lambda s: users.touch_token(s, token_id, now))

    def _submit(self, job: Callable[[], None]) -> None:
        def run() -> None:
            try:
                job()
            except Exception as exc:  # bookkeeping never fails anything
                log.warning("bookkeeping write skipped: %s", exc)

        if self.inline:
            run()
            return
        future = self._executor.submit(run)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait for the writes submitted so far (tests, shutdown)."""
        with self._lock:
            pending = list(self._futures)
        wait(pending, timeout=timeout)
