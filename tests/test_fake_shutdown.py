"""A loopback fake leaves nothing running behind it when it stops.

A request the fake was still answering when a test ended (a slow answer the client had given
up on, a held long poll) used to stay pending on the fake's closed event loop. The garbage
collector destroyed it later, in the middle of some other test, logging "Task was destroyed
but it is pending!"; on CPython 3.11.7 that log, written during a running ``ast.parse``,
failed an unrelated test with "AST constructor recursion depth mismatch" (CI, stop 17). The
fake now cancels and awaits what it still holds when it stops, as ``asyncio.run`` does.
"""

from __future__ import annotations

import gc
import logging

import httpx
import pytest

from tests.fakes.telegram_api import FakeBotApi, Fault


def test_a_request_still_being_answered_is_finished_when_the_fake_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="asyncio")
    with httpx.Client(timeout=0.3) as client, FakeBotApi(slow_seconds=2.0) as api:
        api.fail(Fault.SLOW, method="sendMessage")
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                f"{api.base_url}{api.token}/sendMessage", json={"chat_id": "-1001", "text": "x"}
            )
        # The fake stops here while its handler still sleeps before answering.
    gc.collect()
    destroyed = [r.getMessage() for r in caplog.records if "destroyed" in r.getMessage()]
    assert destroyed == []
