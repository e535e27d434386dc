"""What one notice becomes in a chat: text parts, then the voice note, always in that order.

The plan is a pure function of the notice, so a delivery resumed after a restart skips
exactly the parts whose message ids were already recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from telegram import LinkPreviewOptions, Message
from telegram.constants import ParseMode
from telegram.ext import ExtBot

from bot.text import caption, message_parts

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@dataclass(frozen=True)
class Part:
    """One message of a notice: HTML text, or a voice note with its caption."""

    kind: str  # text | voice
    text: str = ""
    path: Path | None = None
    duration: float | None = None
    filename: str = "voice.ogg"


def plan(
    title: str, body: str, voice_path: Path | str | None, voice_duration: float | None
) -> list[Part]:
    """The messages that carry a notice, in sending order."""
    parts = [Part("text", text=t) for t in message_parts(title, body)]
    if voice_path is not None:
        parts.append(
            Part(
                "voice",
                text=caption(title),
                path=Path(voice_path),
                duration=voice_duration,
                filename=_voice_filename(title),
            )
        )
    return parts


def _voice_filename(title: str) -> str:
    safe = "".join(ch for ch in title if ch.isalnum() or ch in "-_ ").strip()[:40]
    return f"{safe or 'voice'}.ogg"


async def send_part(bot: ExtBot, chat_id: str | int, part: Part) -> Message:  # type: ignore[type-arg]
    """Send one part; errors are python-telegram-bot's, for the caller to classify."""
    if part.kind == "text":
        return await bot.send_message(
            chat_id,
            part.text,
            parse_mode=ParseMode.HTML,
            link_preview_options=NO_PREVIEW,
        )
    assert part.path is not None
    data = await asyncio.to_thread(part.path.read_bytes)
    duration = part.duration
    if duration is None:
        duration = await asyncio.to_thread(_measure, part.path)
    return await bot.send_voice(
        chat_id,
        data,
        duration=max(1, round(duration)),
        caption=part.text or None,
        parse_mode=ParseMode.HTML,
        filename=part.filename,
    )


def _measure(path: Path) -> float:
    """The voice note's length when the clip row has none (read from the Ogg granule)."""
    from audio.master import ogg_opus_duration

    return ogg_opus_duration(path)
