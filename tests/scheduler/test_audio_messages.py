"""The audio library's messages, stored by the scheduler, read in the reader's language.

audio/ raises its errors and records its fallback reasons as message ids with parameters
(``audio.errors.N_``/``Reason``), so a render that failed or fell back to the offline voice
reads in English on English pages and in Chinese on Chinese ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from audio.engines import RetryPolicy
from audio.render import Renderer
from cms.jobs.context import Context
from cms.models import Clip, ClipProfile, JobState, Role
from cms.services.errors import Message
from tests.cms.test_i18n import chinese_left, set_english, user_data
from tests.conftest import login
from tests.fakes.edge_server import FakeEdgeServer, Fault
from tests.scheduler.helpers import local

UNSPEAKABLE = "文本中没有可朗读的内容"
FELL_BACK = "在线语音不可用，已改用离线语音：{reason}"


@pytest.fixture
def edge_down() -> Iterator[FakeEdgeServer]:
    """A loopback edge-tts service that refuses every connection with HTTP 403."""
    with FakeEdgeServer() as server:
        server.fail(Fault.FORBIDDEN, times=None)
        yield server


@pytest.fixture
def ctx(ctx: Context, edge_down: FakeEdgeServer, tmp_path: Path) -> Context:
    """The scheduler in auto mode: edge-tts first (down), then eSpeak NG."""
    retry = RetryPolicy(attempts=1, backoff_s=0.0, max_backoff_s=0.0, timeout_s=2.0)
    return dataclasses.replace(
        ctx,
        renderer_factory=lambda settings: Renderer(
            tmp_path / "cache",
            engine="auto",
            edge_wss_url=edge_down.url,
            retry=retry,
            sleep=lambda seconds: None,
        ),
    )


def _clip(session: Session, revision_id: int | None) -> Clip:
    clip = session.scalar(
        select(Clip).where(Clip.revision_id == revision_id, Clip.profile == ClipProfile.LOUDSPEAKER)
    )
    assert clip is not None
    return clip


@pytest.fixture
def rendered(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session
) -> tuple[int, int, Callable[[], Session]]:
    """One announcement that cannot be spoken, one spoken by eSpeak NG as edge-tts is down."""
    make_outlet(grid["v1"], "07:30 10", name="石桥大喇叭")
    bad = make_announcement(
        "approved", title="只有表情", body="🎉🎉🎉", area_ids=[grid["v1"].id], repeats=1
    )
    good = make_announcement(
        "approved", title="停电通知", body="今晚八点停电检修。", area_ids=[grid["v1"].id], repeats=1
    )
    clock.set(local(settings, today, "06:00"))
    scheduler.run_once()
    s = fresh_session()
    failed = _clip(s, bad.approved_revision_id)
    assert failed.state is JobState.FAILED
    assert Message.loads(failed.last_error or "").msgid == UNSPEAKABLE
    spoken = _clip(s, good.approved_revision_id)
    assert spoken.state is JobState.DONE and spoken.engine == "offline"
    reason = Message.loads(spoken.fallback_reason or "")
    assert reason.msgid == FELL_BACK
    assert reason.params["reason"] == Message("服务拒绝访问（HTTP 403）")
    return bad.id, good.id, fresh_session


def test_render_failures_and_fallbacks_read_in_english(client, make_user, rendered) -> None:  # type: ignore[no-untyped-def]
    bad_id, good_id, fresh_session = rendered
    login(client, make_user(Role.EDITOR))
    set_english(client)
    data = user_data(fresh_session())
    bad = client.get(f"/schedule/announcements/{bad_id}").get_data(as_text=True)
    assert "The text has nothing that can be read aloud" in bad
    good = client.get(f"/schedule/announcements/{good_id}").get_data(as_text=True)
    assert (
        "The online voice is unavailable, the offline voice was used instead: "
        "The service refused access (HTTP 403)"
    ) in good
    shown = client.get(f"/announcements/{good_id}").get_data(as_text=True)
    assert "the offline voice was used instead" in shown
    for page in (bad, good, shown):
        assert not chinese_left(page, data)


def test_render_failures_and_fallbacks_read_in_chinese(client, make_user, rendered) -> None:  # type: ignore[no-untyped-def]
    bad_id, good_id, _sessions = rendered
    login(client, make_user(Role.EDITOR))
    bad = client.get(f"/schedule/announcements/{bad_id}").get_data(as_text=True)
    assert UNSPEAKABLE in bad and '{"msgid"' not in bad
    good = client.get(f"/schedule/announcements/{good_id}").get_data(as_text=True)
    assert "在线语音不可用，已改用离线语音：服务拒绝访问（HTTP 403）" in good
    assert '{"msgid"' not in good
