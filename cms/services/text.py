"""Checks shared by every user-supplied field: text, whole numbers, ids, dates, file names.

Numbers are ASCII digits only: ``str.isdigit()`` is True for "²" (which ``int()`` then
refuses), ``int()`` itself accepts "١٢", "１２", "1_0" and " 7", and a 5000-digit string
exceeds its digit limit. Ids stop at ``MAX_ID`` (the INTEGER primary keys of PostgreSQL;
SQLite's driver cannot even bind 2**63). Dates stay in a range the calendar arithmetic of
the scheduler and the pages can step through.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from datetime import date
from pathlib import PurePosixPath, PureWindowsPath
from typing import TypeVar

from cms.services.errors import N_, Errors

E = TypeVar("E", bound=enum.Enum)

MAX_ID = 2**31 - 1
MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2100, 12, 31)
_INTEGER = re.compile(r"-?[0-9]{1,18}")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

_ALLOWED_CONTROLS = {"\n", "\t"}
# Bidi embeddings, overrides and isolates: they make text read differently from what is stored
# (a file name "gpj.exe" shown as "exe.jpg"); a plain Chinese or English text never needs them.
BIDI_CONTROLS = frozenset(
    "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"  # LRE RLE PDF LRO RLO LRI RLI FSI PDI
)


def _not_xml(ch: str) -> bool:
    """Not allowed in XML 1.0 (C0 controls but tab/LF/CR, surrogates) or a noncharacter."""
    code = ord(ch)
    if code < 0x20:
        return ch not in "\t\n\r"
    return 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _refused(ch: str) -> bool:
    """Characters no text field accepts (besides bidi controls, reported on their own)."""
    if ch in _ALLOWED_CONTROLS:
        return False
    return unicodedata.category(ch) in {"Cc", "Cs", "Co"} or _not_xml(ch)


def _codes(chars: set[str]) -> str:
    return "、".join(sorted(f"U+{ord(ch):04X}" for ch in chars)[:5])


def clean_text(
    errors: Errors,
    name: str,
    raw: object,
    *,
    label: str,
    max_len: int,
    required: bool = True,
    multiline: bool = False,
) -> str:
    """Normalise line endings and surrounding space; record an error for bad input."""
    if raw is None:
        raw = ""
    if not isinstance(raw, str):
        errors.add(name, N_("{label}应为文字"), label=label)
        return ""
    text = raw.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not multiline and "\n" in text:
        errors.add(name, N_("{label}不能换行"), label=label)
        return text
    present = set(text)
    for hidden, message in (
        ({ch for ch in present if _refused(ch)}, N_("{label}含有不可见的控制字符（{chars}），请删除后再保存")),
        (present & BIDI_CONTROLS, N_("{label}含有改变文字方向的隐藏字符（{chars}），请删除后再保存")),
    ):  # fmt: skip
        if hidden:
            errors.add(name, message, label=label, chars=_codes(hidden))
    if required and not text:
        errors.add(name, N_("请填写{label}"), label=label)
    elif len(text) > max_len:
        errors.add(
            name, N_("{label}最多 {max} 个字（现在 {n} 个）"), label=label, max=max_len, n=len(text)
        )
    return text


def printable(text: str) -> str:
    """``text`` without characters XML 1.0 forbids and without bidi controls (for output).

    Feeds and playlists use it on whatever is stored, including rows saved before the
    fields refused such characters, or text that came from a chat platform.
    """
    return "".join(ch for ch in text if not _not_xml(ch) and ch not in BIDI_CONTROLS)


def clean_filename(raw: str, default: str = "file") -> str:
    """An uploaded file's name as shown and stored: the last path part only, without controls.

    Browsers on Windows send ``C:\\Users\\…\\录音.mp3``; hostile clients send ``../``, NUL or
    U+202E (which shows "gpj.mp3" reversed). Chinese and spaces stay as they are.
    """
    name = PureWindowsPath(PurePosixPath(raw or "").name).name
    name = "".join(
        ch
        for ch in name
        if unicodedata.category(ch) not in {"Cc", "Cf", "Cs", "Co"} and not _not_xml(ch)
    )
    name = name.strip().strip(".").strip()
    return name[:200] or default


def parse_int(raw: object) -> int | None:
    """A whole number written in ASCII digits (an optional leading minus), else None.

    An ``int`` passes through (not a ``bool``); text may have surrounding space only.
    """
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    return int(text) if _INTEGER.fullmatch(text) else None


def parse_id(raw: object) -> int | None:
    """A row id (1 … MAX_ID) in ASCII digits, else None."""
    number = parse_int(raw)
    return number if number is not None and 1 <= number <= MAX_ID else None


def parse_choice(
    errors: Errors, field: str, raw: object, choices: type[E], default: E, invalid: str
) -> E:
    """The member of ``choices`` whose value is ``raw``; else ``invalid`` on ``field`` and ``default``."""
    try:
        return choices(str(raw))
    except ValueError:
        errors.add(field, invalid)
        return default


def parse_date(raw: object) -> date | None:
    """A YYYY-MM-DD date in ASCII digits (a real day), else None; the range is not checked."""
    if isinstance(raw, date):
        return raw
    if not isinstance(raw, str) or not _ISO_DATE.fullmatch(raw.strip()):
        return None
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def in_date_range(day: date) -> bool:
    return MIN_DATE <= day <= MAX_DATE
