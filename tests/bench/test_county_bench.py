"""bench/county.py at a tiny scale (2 townships × 2 villages), so that the script cannot rot:
the seed goes through the services, every phase runs, and the officers' pages all answer;
on SQLite and on PostgreSQL (a private schema)."""

from __future__ import annotations

import pytest

from bench import county
from tests.pg import BACKENDS


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_county_is_seeded_built_delivered_and_browsed(
    backend: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_schema") if backend == "postgresql" else None
    o = county.run(
        townships=2,
        villages=2,
        chats=6,
        announcements=3,
        clients=3,
        seconds=2,
        baseline_seconds=0.5,
        think=0,  # no reading time: as many requests as the seconds allow
        database_url=url,
        postgres_from_env=False,  # SQLite when the backend is SQLite
    )
    assert o.db == backend
    c = o.county
    assert c.outlets == 8 and len(c.townships) == 2 and len(c.officers) == 4
    # The one campaign reaches the whole county: one township adopts it, the other adapts it.
    assert (c.campaigns, c.adopted, c.adapted) == (1, 1, 1)
    # 4 loudspeakers × 3 slots + 4 mobile speakers × 1 slot, every one built cold (the
    # campaign's copies reach every village), none rebuilt when nothing changed.
    assert o.programs == 16 and o.built == 16
    assert o.unchanged == 16
    # Every delivery planned was sent to the outbox.
    assert o.deliveries > 0 and o.sent == o.deliveries
    assert o.web.errors_5xx == 0 and o.baseline.errors_5xx == 0, o.web.failures[:5]
    # Each officer logged in (the form, then the redirect), then read pages and the API.
    assert o.logins.statuses == {200: 3, 302: 3}, dict(o.logins.statuses)
    assert {"page", "api"} <= set(o.web.by_kind)
    assert set(o.web.statuses) == {200}, dict(o.web.statuses)
    # The same pages again while ``dalaba build-day`` builds in its own process.
    assert o.builds_during_web >= 1
    assert o.during_build.requests > 0 and o.during_build.errors_5xx == 0
    assert set(o.during_build.statuses) == {200}, dict(o.during_build.statuses)
