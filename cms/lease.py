"""Exactly one scheduler per database: a lease row with an expiry, renewed by a heartbeat.

Whoever holds an unexpired lease runs the scheduler; everyone else serves web only and
tries again at each heartbeat. Every lease write begins IMMEDIATE (see :mod:`cms.db`), so
a busy database makes the heartbeat wait for the writer lock instead of failing at once. Taking the lease is one ``UPDATE … WHERE holder = me OR
expires_at < now`` (or the first INSERT), so two processes can never both succeed.

A holder that died on this same machine (its pid no longer exists) is taken over at once
instead of after the expiry, so a township PC that crashed resumes its schedule right
after restart; holders on other hosts are only taken over when their lease expires.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from cms.db import writer
from cms.models import SchedulerLease

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
DEFAULT_TTL = timedelta(seconds=30)


def make_holder_id() -> str:
    """``host:pid:random``: unique per process start, readable on the status page."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _holder_dead_here(holder: str) -> bool:
    """Whether ``holder`` was a process on this host that no longer exists."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # another scheduler handle in this very process: alive
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    acquired_at: datetime | None
    heartbeat_at: datetime | None
    expires_at: datetime | None
    info: dict[str, Any]

    def held_by(self, holder: str, now: datetime) -> bool:
        return self.holder == holder and self.expires_at is not None and self.expires_at > now

    def alive(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at > now


def read(engine: Engine) -> LeaseState:
    with engine.connect() as conn:
        row = conn.execute(
            select(SchedulerLease).where(SchedulerLease.name == LEASE_NAME)
        ).one_or_none()
    if row is None:
        return LeaseState(None, None, None, None, {})
    return LeaseState(row.holder, row.acquired_at, row.heartbeat_at, row.expires_at, row.info or {})


def acquire(engine: Engine, holder: str, now: datetime, ttl: timedelta = DEFAULT_TTL) -> bool:
    """Take or renew the lease; True when ``holder`` holds it until ``now + ttl``."""
    expires = now + ttl
    table = SchedulerLease.__table__
    with writer(engine).begin() as conn:
        current = conn.execute(
            select(table.c.holder, table.c.expires_at).where(table.c.name == LEASE_NAME)
        ).one_or_none()
        if current is None:
            try:
                with conn.begin_nested():
                    conn.execute(
                        insert(table).values(
                            name=LEASE_NAME,
                            holder=holder,
                            acquired_at=now,
                            heartbeat_at=now,
                            expires_at=expires,
                            info={},
                        )
                    )
                return True
            except IntegrityError:
                return False  # another process inserted first; it holds the lease
        other, until = current
        if other == holder:
            result = conn.execute(
                update(table)
                .where(table.c.name == LEASE_NAME, table.c.holder == holder)
                .values(heartbeat_at=now, expires_at=expires)
            )
            return result.rowcount == 1
        # Compare-and-set against what we read: if someone else renewed or took it in
        # between, the WHERE no longer matches and we do not take it.
        takeover = until <= now or _holder_dead_here(other)
        if not takeover:
            return False
        result = conn.execute(
            update(table)
            .where(
                table.c.name == LEASE_NAME,
                table.c.holder == other,
                table.c.expires_at == until,
            )
            .values(holder=holder, acquired_at=now, heartbeat_at=now, expires_at=expires, info={})
        )
        if result.rowcount == 1:
            log.info("scheduler lease taken over from %s", other)
            return True
        return False


def release(engine: Engine, holder: str, now: datetime) -> None:
    """Give the lease up (clean shutdown) so another process may take it at once."""
    table = SchedulerLease.__table__
    with writer(engine).begin() as conn:
        conn.execute(
            update(table)
            .where(table.c.name == LEASE_NAME, table.c.holder == holder)
            .values(expires_at=now)
        )


def record_info(engine: Engine, holder: str, **info: Any) -> bool:
    """Merge ``info`` (last tick, queue lengths …) into the lease row while we hold it."""
    table = SchedulerLease.__table__
    with writer(engine).begin() as conn:
        current = conn.execute(
            select(table.c.info).where(table.c.name == LEASE_NAME, table.c.holder == holder)
        ).one_or_none()
        if current is None:
            return False
        merged = {**(current[0] or {}), **info}
        conn.execute(
            update(table)
            .where(table.c.name == LEASE_NAME, table.c.holder == holder)
            .values(info=merged)
        )
        return True
