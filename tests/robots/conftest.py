"""Fixtures for the group robots: voice clips, robots bound in the database, the dispatcher."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from cms.channels import ChannelRegistry, ChatChannel
from cms.clock import ManualClock
from cms.db import make_session_factory, unit_of_work
from cms.jobs import deliveries
from cms.jobs.context import Context
from cms.models import Area, ChatGroup, Clip, ClipProfile, Delivery, DeliveryState, JobState
from cms.services import chats
from cms.settings import Settings


def _sine(path: Path, seconds: float) -> Path:
    import imageio_ffmpeg

    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-ac", "1", "-ar", "48000", "-c:a", "libopus", "-b:a", "24k", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.fixture(scope="session")
def short_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-second OGG/Opus voice note (WeCom sends it as an AMR voice message)."""
    return _sine(tmp_path_factory.mktemp("voice") / "short.ogg", 3)


@pytest.fixture(scope="session")
def long_voice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 70-second clip: longer than a WeCom voice message may be (sent as an MP3 file)."""
    return _sine(tmp_path_factory.mktemp("voice") / "long.ogg", 70)


@pytest.fixture(autouse=True)
def local_webhooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fakes listen on loopback: allow such webhooks, as a self-hosted relay would."""
    monkeypatch.setenv("DALABA_ALLOW_LOCAL_WEBHOOKS", "1")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The test settings, allowing loopback webhooks (the fakes) in the web app too."""
    return settings.with_(allow_local_webhooks=True)


@pytest.fixture
def bind(session: Session, grid: dict[str, Area]) -> Callable[..., ChatGroup]:
    """Bind a robot to the first group's area through the real service."""

    def make(platform: str, webhook: str, secret: str = "", title: str = "") -> ChatGroup:
        chat = chats.bind_robot(
            session,
            None,
            platform=platform,
            webhook=webhook,
            secret=secret,
            area=grid["g1"],
            title=title,
        )
        session.commit()
        return chat

    return make


@pytest.fixture
def notice(
    session: Session, grid: dict[str, Area], make_announcement: Callable[..., Any]
) -> Callable[..., int]:
    """An approved notice for village 1 (optionally with a voice clip); returns the revision id."""

    def make(
        title: str = "防汛紧急通知",
        body: str | None = None,
        voice: Path | None = None,
        duration: float | None = None,
        shared: bool = True,
    ) -> int:
        kwargs: dict[str, Any] = {"title": title, "area_ids": [grid["v1"].id]}
        if body is not None:
            kwargs["body"] = body
        ann = make_announcement("approved", **kwargs)
        rev_id = int(ann.approved_revision_id)
        if not shared:
            ann.share_token = None  # no share page: channels send plain text, no link
        if voice is not None:
            session.add(
                Clip(
                    revision_id=rev_id,
                    profile=ClipProfile.VOICE,
                    state=JobState.DONE,
                    path=str(voice),
                    duration=duration,
                )
            )
        session.commit()
        return rev_id

    return make


class Dispatcher:
    """The real dispatcher's send path (deliveries.send_one), with a clock the test moves."""

    def __init__(self, ctx: Context, clock: ManualClock) -> None:
        self.ctx = ctx
        self.clock = clock

    def queue(self, session: Session, revision_id: int, chat_ids: list[int]) -> list[int]:
        rows = [
            Delivery(
                revision_id=revision_id,
                chat_group_id=chat_id,
                due_at=self.clock.now() - timedelta(minutes=1),
            )
            for chat_id in chat_ids
        ]
        session.add_all(rows)
        session.commit()
        return [r.id for r in rows]

    def run(self, passes: int = 6) -> list[str]:
        """Send every due delivery, then let time pass for retries; the outcomes (a notice
        without a voice clip first waits for one: those "waiting" passes are left out)."""
        outcomes: list[str] = []
        for _ in range(passes):
            ids = unit_of_work(
                self.ctx.sessions, lambda s: deliveries.due_delivery_ids(s, self.clock.now())
            )
            outcomes += [
                o for o in (deliveries.send_one(self.ctx, i) for i in ids) if o != "waiting"
            ]
            pending = unit_of_work(
                self.ctx.sessions,
                lambda s: s.scalar(
                    select(Delivery.id).where(Delivery.state == DeliveryState.PENDING).limit(1)
                ),
            )
            if pending is None:
                break
            self.clock.advance(timedelta(hours=2))
        return outcomes


@pytest.fixture
def dispatcher(settings: Settings, engine: Engine) -> Callable[..., Dispatcher]:
    def make(*channels: ChatChannel) -> Dispatcher:
        registry = ChannelRegistry()
        for channel in channels:
            registry.register(channel)
        clock = ManualClock(datetime.now(UTC))
        ctx = Context(
            settings=settings,
            engine=engine,
            sessions=make_session_factory(engine),
            registry=registry,
            worker="test-worker",
            clock=clock,
        )
        return Dispatcher(ctx, clock)

    return make
