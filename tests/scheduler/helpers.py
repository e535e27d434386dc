"""Helpers for the scheduler tests."""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from cms.channels import Notice, ProgressCallback, SendResult
from cms.settings import Settings


def local(settings: Settings, day: date, hhmm: str) -> datetime:
    hh, mm = hhmm.split(":")
    return datetime.combine(day, time(int(hh), int(mm)), tzinfo=settings.tz)


class FakeChannel:
    """A scripted chat channel: each call pops the next behaviour (or succeeds)."""

    def __init__(self, platform: str = "telegram") -> None:
        self.platform = platform
        self.script: list[Any] = []
        self.sent: list[tuple[str, str]] = []
        self.calls = 0

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        self.calls += 1
        behaviour = self.script.pop(0) if self.script else None
        if isinstance(behaviour, BaseException):
            raise behaviour
        ids = list(notice.sent_ids)
        parts = ["text"] + (["voice"] if notice.voice_path else [])
        for part in parts[len(ids) :]:
            self.sent.append((notice.chat_id, part))
            ids.append(f"{notice.chat_id}:{len(self.sent)}")
            progress(list(ids))
        new_chat = behaviour if isinstance(behaviour, str) else None
        return SendResult(message_ids=ids, new_chat_id=new_chat)
