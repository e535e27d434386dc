"""The written/spoken alignment behind the editor's live preview (audio.explain).

Most tests check properties that hold whatever the normalisation rules are (they are
being improved separately); the exact alignment is tested against a fake normaliser.
"""

from __future__ import annotations

import re

import pytest

import audio.explain
from audio.errors import TextError
from audio.explain import Span, applied_entries, explain, spoken_of
from audio.text import MAX_TEXT_CHARS, Lexicon, spoken_text

LEXICON = Lexicon.from_mapping({"石桥村": "石乔村", "APP": "应用", "石桥": "时桥"})
NOTICES = [
    "【通知】请石桥村村民明天8:00-10:00到村委会开会。",
    "每亩补贴200元，咨询电话：0871-65123456。\n逾期不候！",
    "下载APP领取，APPLE不算。",
    "★★★\n\n今天停水",
    "2024年3月5日，气温3～5℃，降水概率80%。",
]


@pytest.mark.parametrize("text", NOTICES)
def test_spans_give_back_the_written_and_the_spoken_text(text: str) -> None:
    spans = explain(text, LEXICON)
    assert "".join(s.written for s in spans) == text
    assert spoken_of(spans).strip() == spoken_text(text, LEXICON)


@pytest.mark.parametrize("text", NOTICES)
def test_every_number_is_inside_a_changed_span(text: str) -> None:
    for span in explain(text, LEXICON):
        if re.search(r"\d", span.written):
            assert span.changed, span
        if not span.changed:
            assert re.sub(r"\W", "", span.written) == re.sub(r"\W", "", span.spoken), span


def test_lexicon_entries_that_applied_are_named_on_their_span() -> None:
    spans = explain("请石桥村村民和石桥小学的老师下载APP，APPLE除外。", LEXICON)
    village = next(s for s in spans if "石桥村" in s.written)
    assert village.changed and village.spoken == "石乔村"
    assert village.entries == (("石桥村", "石乔村"),)
    assert applied_entries(spans) == [("石桥村", "石乔村"), ("石桥", "时桥"), ("APP", "应用")]
    apple = next(s for s in spans if "APPLE" in s.written)
    assert not apple.changed and apple.entries == ()


def test_text_with_nothing_to_rewrite_is_one_unchanged_span() -> None:
    assert explain("今天停水。", None) == [Span("今天停水。", "今天停水。", False)]
    assert explain("", None) == []


def test_decoration_is_not_marked_as_a_rewrite() -> None:
    spans = explain("【通知】今天停水", None)
    assert not any(s.changed for s in spans)
    assert spoken_of(spans) == spoken_text("【通知】今天停水")


def test_unspeakable_lines_are_silent() -> None:
    spans = explain("★★★\n今天停水", None)
    assert spans[0] == Span("★★★\n", "", False)
    assert spoken_of(spans) == "今天停水"


def test_bad_input_raises_text_error() -> None:
    with pytest.raises(TextError):
        explain("字" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(TextError):
        explain(123)  # type: ignore[arg-type]


def _fake_normaliser(text: str, lexicon: Lexicon | None = None) -> str:
    """Reads digits one by one, turns 【】 into a pause, and applies the lexicon."""
    if lexicon:
        for written, spoken in lexicon.entries:
            text = text.replace(written, spoken)
    digits = str.maketrans("0123456789", "零一二三四五六七八九")
    return text.replace("【", "").replace("】", "，").translate(digits).rstrip("\n")


def test_exact_alignment_against_a_fake_normaliser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audio.explain, "spoken_text", _fake_normaliser)
    lexicon = Lexicon.from_mapping({"石桥村": "石乔村"})
    spans = explain("【通知】石桥村12号。\n来", lexicon)
    assert spans == [
        Span("【", "", False),
        Span("通知", "通知", False),
        Span("】", "，", False),
        Span("石桥村", "石乔村", True, (("石桥村", "石乔村"),)),
        Span("12", "一二", True),
        Span("号。\n", "号。\n", False),
        Span("来", "来", False),
    ]
