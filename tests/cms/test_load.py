"""A few seconds of bench/load.py's mix in the suite: no 5xx, no lost lease, every kind served;
on SQLite and on PostgreSQL (a private schema)."""

from __future__ import annotations

import pytest

from bench import load
from tests.pg import BACKENDS


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_busy_township_pc_answers_everyone_and_keeps_its_scheduler(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_schema") if backend == "postgresql" else None
    outcome = load.run(clients=8, seconds=4, baseline_seconds=1, database_url=url)
    stats = outcome.load
    assert stats.errors_5xx == 0, stats.failures[:5]
    assert outcome.lease_losses == 0, outcome.log_tail
    assert len(outcome.holders) == 1  # the same process held the lease throughout
    # Each part of the mix really ran and succeeded at least once: reads, API writes
    # (201 created), form posts (302 after saving) and downloads.
    assert {"api_read", "api_write", "form_post", "download"} <= set(stats.by_kind)
    assert stats.statuses[201] > 0 and stats.statuses[302] > 0 and stats.statuses[200] > 0
    assert set(stats.statuses) <= {200, 201, 302}, dict(stats.statuses)
