"""Spoken text: normalisation, the lexicon, sentence splitting, duration estimates."""

from __future__ import annotations

import pytest

from audio import Lexicon, TextError, VoiceError, estimate_duration, split_sentences, spoken_text
from audio.text import MAX_TEXT_CHARS, pack


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        # dates
        ("2024年3月5日召开会议", "二零二四年三月五日召开会议"),
        ("2024-03-05开会", "二零二四年三月五日开会"),
        ("3月5日-7日", "三月五日到七日"),
        # times
        ("上午8:30集合", "上午八点三十分集合"),
        ("下午3:05出发", "下午三点零五分出发"),
        ("早上8:30集合", "早上八点三十分集合"),
        ("比分3:2", "比分三比二"),
        # money
        ("每亩补贴200元", "每亩补贴两百元"),
        ("¥1,234.50", "一千二百三十四点五元"),
        ("￥1234.5元", "一千二百三十四点五元"),
        ("共计1234.00元", "共计一千二百三十四元"),
        # percentages
        ("增长了12.5%", "增长了百分之十二点五"),
        ("参保率达到98％", "参保率达到百分之九十八"),
        # phone numbers: digit by digit with 幺, a pause between the written groups
        ("联系电话13812345678", "联系电话幺三八，幺二三四，五六七八"),
        ("电话0871-65123456", "电话零八七幺，六五幺二，三四五六"),
        ("热线400-800-8820", "热线四零零，八零零，八八二零"),
        # codes, read digit by digit
        ("账号6228480012345678", "账号六二二八四八零零幺二三四五六七八"),
        ("身份证号：53010219900101123X", "身份证号：五三零幺零二幺九九零零幺零幺幺二三叉"),
        ("验证码123456", "验证码幺二三四五六"),
        ("人口1234567人", "人口一百二十三万四千五百六十七人"),
        # temperatures, negative ones included
        ("今天气温-5℃", "今天气温负五摄氏度"),
        ("最低-3.5℃", "最低负三点五摄氏度"),
        # ranges
        ("请1-2组村民参加", "请一到二组村民参加"),
        ("明天3～5℃", "明天三到五摄氏度"),
        ("夜间-5~-3℃", "夜间负五到负三摄氏度"),
        ("时间8:00-10:00", "时间八点到十点"),
        ("增幅10%-20%", "增幅百分之十到百分之二十"),
        ("第3-5条", "第三到五条"),
        # mixed Chinese and English
        ("请下载APP并关注WeChat公众号", "请下载APP并关注WeChat公众号"),
        ("COVID-19疫苗", "COVID 十九疫苗"),
        ("5G网络", "五G网络"),
        # units and symbols
        ("3#楼", "三号楼"),
        ("距离5km", "距离五公里"),
        ("【通知】★各位村民：", "通知，各位村民："),
    ],
)
def test_normalisation(written: str, spoken: str) -> None:
    assert spoken_text(written) == spoken


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("第100001000位", "第一亿零一千位"),
        ("第100100名", "第十万零一百名"),
        ("第0871号", "第零八七幺号"),
        ("第123456789012345678", "第幺二三四五六七八九零幺二三四五六七八"),
    ],
)
def test_ordinals_of_any_length(written: str, spoken: str) -> None:
    assert spoken_text(written) == spoken


def test_line_breaks_are_kept_and_blank_lines_dropped() -> None:
    assert spoken_text("第一行\n\n  第二行3人\r\n") == "第一行\n第二行三人"


def test_xml_special_characters_survive() -> None:
    # They reach edge-tts, which escapes them; nothing here may eat or double-escape them.
    assert spoken_text("A<B & C \"引号\" '单引号'") == "A<B & C \"引号\" '单引号'"


@pytest.mark.parametrize("text", ["", "   ", "★★★", "。。。", "【】"])
def test_nothing_speakable_is_an_error(text: str) -> None:
    with pytest.raises(TextError, match="没有可朗读的内容"):
        spoken_text(text)


def test_too_long_text_is_an_error() -> None:
    with pytest.raises(TextError, match="文本过长"):
        spoken_text("好" * (MAX_TEXT_CHARS + 1))


def test_lexicon_whole_words_longest_first() -> None:
    lexicon = Lexicon.from_mapping(
        {"APP": "应用", "长坡": "常坡", "长坡村": "常坡村委", "柏": "百"}
    )
    assert lexicon.apply("APPLE和APP") == "APPLE和应用"
    assert lexicon.apply("长坡村的长坡") == "常坡村委的常坡"
    # one pass: a replacement is not replaced again
    assert Lexicon.from_mapping({"甲": "乙", "乙": "丙"}).apply("甲乙") == "乙丙"


def test_lexicon_applies_before_normalisation() -> None:
    lexicon = Lexicon.from_mapping({"G5": "G五高速"})
    assert spoken_text("G5今天8:00封闭", lexicon) == "G五高速今天八点封闭"


def test_lexicon_parse_dump_and_errors() -> None:
    lexicon = Lexicon.parse("# 地名\n蔓耗=万耗\n\n六盘水 = 陆盘水  # 多音字\n")
    assert lexicon.entries == (("蔓耗", "万耗"), ("六盘水", "陆盘水"))
    assert Lexicon.parse(lexicon.dump()) == lexicon
    assert lexicon.digest != Lexicon.parse("蔓耗=万耗").digest
    with pytest.raises(TextError, match="第 1 行缺少"):
        Lexicon.parse("没有等号")
    with pytest.raises(TextError, match="重复"):
        Lexicon.parse("甲=乙\n甲=丙")
    with pytest.raises(TextError, match="不能为空"):
        Lexicon.from_mapping({"甲": " "})
    assert not Lexicon()


def test_split_sentences_keeps_everything_once() -> None:
    text = (
        "第一句。第二句！“第三句？”\n第四句；"
        + "很长的分句，" * 30
        + "完。English words here. 最后"
    )
    pieces = split_sentences(text, max_chars=40)
    assert pieces[:4] == ["第一句。", "第二句！", "“第三句？”", "第四句；"]
    assert all(0 < len(p) <= 40 for p in pieces)
    assert "".join(pieces).replace(" ", "") == text.replace("\n", "").replace(" ", "")


def test_split_sentences_cuts_a_run_without_punctuation() -> None:
    pieces = split_sentences("字" * 95, max_chars=40)
    assert [len(p) for p in pieces] == [40, 40, 15]


def test_chunks_group_sentences_in_order() -> None:
    chunks = pack(["一二三。", "四五六。", "七八九十。"], 9)
    assert chunks == ["一二三。四五六。", "七八九十。"]


def test_estimate_duration_scales_with_rate() -> None:
    text = "各位村民请注意，明天上午八点在村委会召开户长会。请准时参加！"
    normal = estimate_duration(text)
    assert 5 < normal < 9
    assert estimate_duration(text, rate=50) < normal < estimate_duration(text, rate=-50)
    assert estimate_duration("★") == 0.0
    with pytest.raises(VoiceError):
        estimate_duration(text, rate=80)
