"""Splitting at sentence boundaries and escaping for Telegram."""

from __future__ import annotations

import html
import re

import pytest

from bot.text import (
    CAPTION_LIMIT,
    MESSAGE_LIMIT,
    caption,
    escape,
    message_parts,
    split_text,
    tg_len,
)

SENTENCE = "本周六上午九点在村委会门口集中清理垃圾，请每户派一人参加。"


def visible(part: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", part))


def test_short_text_is_one_part() -> None:
    assert split_text("各位村民：" + SENTENCE) == ["各位村民：" + SENTENCE]
    assert split_text("  \n ") == []


def test_long_text_splits_at_sentence_ends_within_the_limit() -> None:
    text = SENTENCE * 400  # 11,600 characters
    parts = split_text(text)
    assert len(parts) == 3
    assert all(tg_len(p) <= MESSAGE_LIMIT for p in parts)
    assert all(p.endswith("。") for p in parts)
    assert "".join(parts) == text


def test_newlines_are_boundaries_and_whitespace_at_cuts_is_dropped() -> None:
    text = "第一段。\n\n第二段！\n第三段？"
    assert split_text(text, limit=6) == ["第一段。", "第二段！", "第三段？"]


def test_a_sentence_longer_than_the_limit_is_cut_at_commas_then_anywhere() -> None:
    clause = "请每户派一人参加，"
    parts = split_text(clause * 10, limit=20)
    assert all(tg_len(p) <= 20 for p in parts)
    assert all(p.endswith("，") for p in parts)
    assert split_text("啊" * 45, limit=20) == ["啊" * 20, "啊" * 20, "啊" * 5]


def test_length_is_counted_in_utf16_units_and_surrogates_are_never_cut() -> None:
    emoji = "📢" * 3000  # 6,000 UTF-16 units
    parts = split_text(emoji)
    assert [tg_len(p) for p in parts] == [4096, 1904]
    assert "".join(parts) == emoji


def test_escape_leaves_only_safe_html() -> None:
    assert escape("<b>&\"'") == "&lt;b&gt;&amp;\"'"


def test_message_parts_put_the_escaped_bold_title_first_and_stay_within_the_limit() -> None:
    parts = message_parts("垃圾<分类>&回收", "a<b>c " + SENTENCE * 300)
    assert parts[0].startswith("<b>【垃圾&lt;分类&gt;&amp;回收】</b>\n\n")
    assert "a&lt;b&gt;c" in parts[0]
    assert all(tg_len(visible(p)) <= MESSAGE_LIMIT for p in parts)
    assert "".join(visible(p) for p in parts).count(SENTENCE) == 300


@pytest.mark.parametrize("title", ["通知", "长" * 2000])
def test_caption_fits(title: str) -> None:
    text = caption(title)
    assert tg_len(html.unescape(text)) <= CAPTION_LIMIT
    assert text.startswith(title[:10])
