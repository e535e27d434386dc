"""The text-normalisation corpus in ``tests/audio/data/tn_corpus.tsv`` and how it is scored.

Shared by ``tests/audio/test_tn_corpus.py`` and ``bench/speech.py`` so that both score
the same way.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).parent / "data" / "tn_corpus.tsv"


@dataclass(frozen=True)
class Case:
    """One written text and the reading a Mandarin listener expects."""

    written: str
    spoken: str
    kind: str
    source: str
    line: int


def load_corpus(path: Path = CORPUS) -> list[Case]:
    """Read the TSV (``#`` lines are comments; the first other line is the header)."""
    cases: list[Case] = []
    header_seen = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        if not header_seen:
            header_seen = True
            continue
        written, spoken, kind, source = raw.split("\t")
        cases.append(Case(written, spoken, kind, source, number))
    return cases


def canonical(text: str) -> str:
    """What is compared: NFKC, without whitespace and punctuation (pauses are not scored).

    Symbols (``$``, ``%``, ``·`` is punctuation) and letters stay, so a currency sign or a
    unit letter left unread still counts as a miss.
    """
    text = unicodedata.normalize("NFKC", text)
    return "".join(
        ch
        for ch in text
        if not ch.isspace() and not unicodedata.category(ch).startswith(("P", "Z"))
    )


def matches(output: str, case: Case) -> bool:
    """Whether ``output`` reads the case as expected."""
    return canonical(output) == canonical(case.spoken)
