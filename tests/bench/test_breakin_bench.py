"""bench/breakin.py at a tiny scale (2 townships × 2 villages), so that the script cannot rot:
a break-in is approved, built once, linked to every outlet, ended, and sent again."""

from __future__ import annotations

import pytest

from bench import breakin
from tests.pg import BACKENDS


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_tiny_county_breaks_in(backend: str, request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("postgres_schema") if backend == "postgresql" else None
    o = breakin.run(townships=2, villages=2, database_url=url, postgres_from_env=False)
    assert o.db == backend
    assert o.outlets == 8
    # Two break-ins (the cold one and the warm one), each reaching every outlet of the county.
    assert o.files == 2 * 8
    assert o.linked == 1  # every outlet's copy is the one insert, hard-linked
    assert o.render_s > 0 and o.ready_s > 0 and o.warm_s > 0
