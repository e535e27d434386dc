"""The text-normalisation corpus: every case, and never worse than plain wetext."""

from __future__ import annotations

import pytest

from audio.text import spoken_text, wetext_only
from tests.audio.tn_corpus import Case, canonical, load_corpus, matches

CASES = load_corpus()


def test_corpus_is_big_and_covers_the_classes() -> None:
    assert len(CASES) >= 300
    assert len({case.written for case in CASES}) == len(CASES)
    kinds = {case.kind for case in CASES}
    assert {"date", "time", "phone", "code", "ordinal", "cardinal", "money"} <= kinds
    assert {"percent", "temperature", "range", "address", "measure"} <= kinds
    assert sum(case.source == "wetext" for case in CASES) >= 50


def test_canonical_ignores_pauses_only() -> None:
    assert canonical("零八七幺，六五幺二 三四五六。") == "零八七幺六五幺二三四五六"
    assert canonical("$一点五万") != canonical("一点五万")
    assert canonical("一点二g") != canonical("一点二克")


@pytest.mark.parametrize("case", CASES, ids=[f"{c.line}-{c.kind}-{c.written}" for c in CASES])
def test_corpus_case(case: Case) -> None:
    assert canonical(spoken_text(case.written)) == canonical(case.spoken)


def test_never_worse_than_plain_wetext() -> None:
    worse = [
        (case.written, spoken_text(case.written))
        for case in CASES
        if matches(wetext_only(case.written), case) and not matches(spoken_text(case.written), case)
    ]
    assert worse == []
    # wetext alone really misses part of the corpus, or this comparison would prove nothing.
    assert sum(not matches(wetext_only(case.written), case) for case in CASES) >= 50
