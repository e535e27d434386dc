"""What the voice will say, span by span: written text beside its spoken form.

:func:`explain` runs :func:`audio.text.spoken_text` one sentence at a time and aligns
each written sentence with its spoken form (``difflib``), so that an editor can show
the spoken text with every rewritten span marked (numbers read out, ranges, codes read
digit by digit, lexicon substitutions) and name the lexicon entries that applied. It
relies only on the public behaviour of :mod:`audio.text`, never on its rewrite rules.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from audio.errors import TextError
from audio.text import Lexicon, check_text, spoken_text

__all__ = ["Span", "applied_entries", "explain", "spoken_of"]

_SENTENCE = re.compile(r"[^。！？；!?;…\n]*(?:[。！？；!?;…]+[”’」』）)】》\"']*\n?|\n|$)")
_ASCII_ALNUM = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True)
class Span:
    """A piece of the written text and what the voice says for it.

    Attributes:
        written: the text as typed (spans joined give the input back).
        spoken: what is spoken for it (spans joined give the spoken text, sentence by
            sentence).
        changed: the words differ, not only punctuation or spacing.
        entries: the lexicon entries ``(written, spoken)`` applied inside this span.
    """

    written: str
    spoken: str
    changed: bool
    entries: tuple[tuple[str, str], ...] = ()


def _words(text: str) -> str:
    return "".join(ch for ch in text if ch.isalnum())


def _sentences(text: str) -> list[str]:
    """Cut at sentence ends and line breaks, keeping every character."""
    return [piece for piece in _SENTENCE.findall(text) if piece]


def _occurrences(sentence: str, lexicon: Lexicon | None) -> list[tuple[int, int, tuple[str, str]]]:
    """Where lexicon entries match: longer entries first, no overlaps, whole Latin words."""
    if not lexicon or not lexicon.entries:
        return []
    taken = [False] * len(sentence)
    found: list[tuple[int, int, tuple[str, str]]] = []
    for written, spoken in sorted(lexicon.entries, key=lambda e: -len(e[0])):
        start = sentence.find(written)
        while start >= 0:
            end = start + len(written)
            clear = not any(taken[start:end])
            if _ASCII_ALNUM.match(written[0]) and start > 0:
                clear = clear and not _ASCII_ALNUM.match(sentence[start - 1])
            if _ASCII_ALNUM.match(written[-1]) and end < len(sentence):
                clear = clear and not _ASCII_ALNUM.match(sentence[end])
            if clear:
                taken[start:end] = [True] * (end - start)
                found.append((start, end, (written, spoken)))
            start = sentence.find(written, start + 1)
    return sorted(found)


def _spoken_sentence(sentence: str, lexicon: Lexicon | None) -> str:
    try:
        spoken = spoken_text(sentence, lexicon)
    except TextError:
        return ""  # nothing speakable here (a line of symbols or blank): it is silent
    # spoken_text keeps line breaks between lines; one sentence alone loses its own.
    return spoken + "\n" if sentence.endswith("\n") else spoken


def _explain_sentence(sentence: str, lexicon: Lexicon | None) -> list[Span]:
    spoken = _spoken_sentence(sentence, lexicon)
    if spoken == sentence:
        return [Span(sentence, spoken, False)]
    ops = difflib.SequenceMatcher(None, sentence, spoken, autojunk=False).get_opcodes()
    occurrences = _occurrences(sentence, lexicon)
    # Regions of the written sentence that changed; an insertion is an empty region.
    regions = [(i1, i2) for tag, i1, i2, _j1, _j2 in ops if tag != "equal"]
    # A lexicon substitution is shown whole, not as the few characters that differ.
    regions += [
        (start, end)
        for start, end, _ in occurrences
        if any(i1 < end and start < i2 or start <= i1 == i2 <= end for i1, i2 in regions)
    ]
    merged: list[list[int]] = []
    for start, end in sorted(regions):
        last = merged[-1] if merged else None
        # Overlapping regions merge; touching ones only when one of them is an insertion.
        if last and (start < last[1] or start == last[1] and (start == end or last[0] == last[1])):
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    def spoken_start(pos: int) -> int:
        for _tag, i1, i2, j1, _j2 in ops:
            if i1 <= pos < i2 or i1 == i2 == pos:
                return j1 + (pos - i1 if _tag == "equal" else 0)
        return len(spoken)

    def spoken_end(pos: int) -> int:
        for _tag, i1, i2, j1, j2 in reversed(ops):
            if i1 < pos <= i2 or i1 == i2 == pos:
                return j1 + (pos - i1) if _tag == "equal" else j2
        return 0

    spans: list[Span] = []
    cursor, said = 0, 0
    for start, end in merged:
        if start > cursor:
            spans.append(Span(sentence[cursor:start], spoken[said : spoken_start(start)], False))
            said = spoken_start(start)
        stop = max(spoken_end(end), said)
        written_part, spoken_part = sentence[start:end], spoken[said:stop]
        entries = tuple(e for s, t, e in occurrences if s < end and start < t)
        changed = _words(written_part) != _words(spoken_part)
        spans.append(Span(written_part, spoken_part, changed, entries if changed else ()))
        cursor, said = end, stop
    if cursor < len(sentence) or said < len(spoken):
        spans.append(Span(sentence[cursor:], spoken[said:], False))
    return [s for s in spans if s.written or s.spoken]


def explain(text: str, lexicon: Lexicon | None = None) -> list[Span]:
    """Align written text with what the voice will say, marking every rewritten span.

    Args:
        text: the written announcement text.
        lexicon: pronunciation substitutions, as the renderer applies them.

    Returns:
        Spans in reading order. Their ``written`` parts joined give ``text`` back;
        their ``spoken`` parts joined give the spoken text, each sentence normalised on
        its own (as :func:`audio.text.spoken_text` would read it).

    Raises:
        TextError: the text is not a string or is longer than
            :data:`audio.text.MAX_TEXT_CHARS`.
    """
    check_text(text)
    spans: list[Span] = []
    for sentence in _sentences(text):
        spans.extend(_explain_sentence(sentence, lexicon))
    return spans


def spoken_of(spans: list[Span]) -> str:
    """The spoken text of :func:`explain`'s spans, joined."""
    return "".join(s.spoken for s in spans)


def applied_entries(spans: list[Span]) -> list[tuple[str, str]]:
    """The lexicon entries that applied anywhere, each once, in reading order."""
    seen: dict[tuple[str, str], None] = {}
    for span in spans:
        for entry in span.entries:
            seen.setdefault(entry)
    return list(seen)
