"""A text that speech renders as silence fails once, with its reason, and is not retried."""

from __future__ import annotations

from sqlalchemy import select

from cms import queue
from cms.models import Clip, JobState, Program, Role
from cms.services.errors import Message
from tests.conftest import login
from tests.scheduler.helpers import local


def test_a_silent_text_fails_once_with_its_reason_and_is_not_retried(  # type: ignore[no-untyped-def]
    scheduler, clock, settings, today, grid, make_outlet, make_announcement, fresh_session,
    app, make_user,
):  # fmt: skip
    make_outlet(grid["v1"], "19:30 10")
    ann = make_announcement("approved", body="x", to_chats=False)
    clock.set(local(settings, today, "05:00"))
    scheduler.run_once()
    clips = list(fresh_session().scalars(select(Clip).where(Clip.revision_id == ann.current.id)))
    assert clips and all(c.state is JobState.FAILED and c.attempts == 1 for c in clips)
    reason = Message.loads(clips[0].last_error)
    assert "没有声音" in reason.render()
    # Hours of ticks later: still one attempt, no queue entry for it.
    for _ in range(queue.MAX_ATTEMPTS + 3):
        clock.advance(queue.backoff(queue.MAX_ATTEMPTS) * 2)
        scheduler.run_once()
    again = list(fresh_session().scalars(select(Clip).where(Clip.revision_id == ann.current.id)))
    assert [(c.state, c.attempts) for c in again] == [(JobState.FAILED, 1)] * len(clips)
    programs = list(fresh_session().scalars(select(Program)))
    assert all(p.attempts <= 1 for p in programs)
    client = app.test_client()
    login(client, make_user(Role.EDITOR))
    page = client.get(f"/announcements/{ann.id}").get_data(as_text=True)
    assert "没有声音" in page
