"""Chat text: split at sentence boundaries to Telegram's limits, escape for HTML parse mode.

Telegram counts message length in UTF-16 code units after entity parsing (4096 for a
message, 1024 for a caption). We measure the plain text that way, then escape it: escaping
adds markup, not visible characters, so a part that fits before escaping fits after it.
"""

from __future__ import annotations

import html
import re

from audio.text import pack

__all__ = [
    "CAPTION_LIMIT",
    "MESSAGE_LIMIT",
    "caption",
    "escape",
    "message_parts",
    "split_text",
    "tg_len",
]

MESSAGE_LIMIT = 4096
CAPTION_LIMIT = 1024

# A sentence ends at 。！？；!?; or …, with any closing quotes or brackets that follow it.
_SENTENCE_END = re.compile(r"[。！？；!?;…]+[”’」』）)\]】》\"']*|\n+")
_CLAUSE_END = re.compile(r"[，、,：:]+|\s+")


def tg_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP counts 2)."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    """Escape for ``parse_mode=HTML``: only ``&``, ``<`` and ``>`` are special there."""
    return html.escape(text, quote=False)


def _pieces(text: str, pattern: re.Pattern[str]) -> list[str]:
    """Cut after each match of ``pattern``; the pieces concatenate back to ``text``."""
    pieces, start = [], 0
    for match in pattern.finditer(text):
        if match.end() > start:
            pieces.append(text[start : match.end()])
            start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _fit(pieces: list[str], limit: int, finer: list[re.Pattern[str]]) -> list[str]:
    """Pack ``pieces`` into parts; a piece over ``limit`` is cut at the next finer boundary,
    and a run with no boundary at all by length, never inside a surrogate."""
    parts: list[str] = []
    fitting: list[str] = []
    for piece in pieces:
        if tg_len(piece) <= limit:
            fitting.append(piece)
            continue
        parts += pack(fitting, limit, tg_len)
        fitting = []
        if finer:
            parts += _fit(_pieces(piece, finer[0]), limit, finer[1:])
        else:
            parts += pack(piece, limit, tg_len)
    return parts + pack(fitting, limit, tg_len)


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units.

    Parts end at sentence boundaries when possible, else at clause boundaries, else
    anywhere. Whitespace at the cut is dropped; empty parts are never returned.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return []
    parts = _fit(_pieces(text, _SENTENCE_END), limit, [_CLAUSE_END])
    return [p.strip() for p in parts if p.strip()]


def message_parts(title: str, body: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The notice as HTML messages: the bold title heads the first part, the body follows."""
    title = " ".join(title.split())
    head = f"【{title}】\n\n" if title else ""
    first_room = limit - tg_len(head)
    if first_room < limit // 2:
        # A very long title gets a message of its own rather than starving the body.
        return [escape(p) for p in split_text(title, limit)] + [
            escape(p) for p in split_text(body, limit)
        ]
    # Every part gets the first part's room, so parts do not depend on where the title sits.
    parts = split_text(body, first_room)
    escaped = [escape(p) for p in parts]
    if not escaped:
        return [f"<b>{escape(head.strip())}</b>"] if head else []
    escaped[0] = f"<b>{escape(head.strip())}</b>\n\n{escaped[0]}" if head else escaped[0]
    return escaped


def caption(title: str, limit: int = CAPTION_LIMIT) -> str:
    """A voice note's caption: the title, shortened with … to fit, escaped."""
    title = " ".join(title.split())
    if tg_len(title) > limit:
        cut = ""
        for ch in title:
            if tg_len(cut) + tg_len(ch) > limit - 1:
                break
            cut += ch
        title = cut + "…"
    return escape(title)
