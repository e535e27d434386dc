"""Helpers for the scheduler tests."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, time
from typing import Any

from cms.channels import Notice, ProgressCallback, SendResult
from cms.settings import Settings

LONG_AGO = datetime(2020, 1, 1, tzinfo=UTC)
"""When the tests' outlets came into service: before any day a test's clock shows."""


def local(settings: Settings, day: date, hhmm: str) -> datetime:
    hh, mm = hhmm.split(":")
    return datetime.combine(day, time(int(hh), int(mm)), tzinfo=settings.tz)


class FakeChannel:
    """A scripted chat channel: ``by_chat`` gives a chat its behaviour, else ``script`` is
    popped call by call (an exception to raise, a new chat id to report, or None)."""

    def __init__(self, platform: str = "telegram") -> None:
        self.platform = platform
        self.script: list[Any] = []
        self.by_chat: dict[str, Any] = {}
        self.sent: list[tuple[str, str]] = []
        self.calls = 0
        self._lock = threading.Lock()  # the dispatcher serves chats from several threads

    def send(self, notice: Notice, progress: ProgressCallback) -> SendResult:
        with self._lock:
            self.calls += 1
            if notice.chat_id in self.by_chat:
                behaviour = self.by_chat[notice.chat_id]
            else:
                behaviour = self.script.pop(0) if self.script else None
        if isinstance(behaviour, BaseException):
            raise behaviour
        ids = list(notice.sent_ids)
        parts = ["text"] + (["voice"] if notice.voice_path else [])
        for part in parts[len(ids) :]:
            with self._lock:
                self.sent.append((notice.chat_id, part))
                ids.append(f"{notice.chat_id}:{len(self.sent)}")
            progress(list(ids))
        new_chat = behaviour if isinstance(behaviour, str) else None
        return SendResult(message_ids=ids, new_chat_id=new_chat)
