"""Chinese telephone numbers in a notice's text: found for tap-to-call links, checked in forms.

Mobile numbers have 11 digits starting 13–19 (written 13812345678, 138 1234 5678 or
138-1234-5678); fixed lines an area code of 3–4 digits starting 0 and 7–8 digits
(0871-65123456, 0871-6512 3456, (0871) 6512 3456); and the national service lines 12345,
12315, 12320, 12319 and 12119 (forest fires).
"""

from __future__ import annotations

import re

__all__ = ["PHONE", "dial", "is_phone", "segments"]

PHONE = re.compile(
    r"(?<![\d-])(?:"
    r"1[3-9]\d[ -]?\d{4}[ -]?\d{4}"
    r"|(?:\(0\d{2,3}\)|（0\d{2,3}）|0\d{2,3})[ -]?\d{3,4}[ -]?\d{4}"
    r"|12(?:345|315|320|319|119)"
    r")(?![\d-])"
)


def dial(number: str) -> str:
    """The digits to dial (what goes after ``tel:``)."""
    return re.sub(r"\D", "", number)


def is_phone(value: str) -> bool:
    """Whether ``value`` is one telephone number and nothing else."""
    return PHONE.fullmatch(value.strip()) is not None


def segments(text: str) -> list[tuple[str, str | None]]:
    """``text`` cut into pieces, each with the number to dial if it is a phone number."""
    out: list[tuple[str, str | None]] = []
    last = 0
    for match in PHONE.finditer(text):
        if match.start() > last:
            out.append((text[last : match.start()], None))
        out.append((match.group(), dial(match.group())))
        last = match.end()
    if last < len(text):
        out.append((text[last:], None))
    return out
