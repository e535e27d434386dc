"""From written announcement text to the text a voice should speak.

Text normalisation (numbers, dates, times, money, percentages, units) is done by wetext
(WeTextProcessing's runtime). dalaba's own rewrites are strictly additive: each applies
only to a span whose meaning is clear from its context, and everything else reaches wetext
untouched. Spans that are certain are spoken here (wetext leaves Chinese words alone):

- phone numbers in their written forms (area codes, spaces, hyphens, brackets, 400-/800-
  numbers, extensions after 转; short service numbers such as 12345 or 95598 only after
  电话/拨打/热线 …) are read digit by digit with 幺, with a pause between the written
  groups: ``0871-6512 3456`` → 零八七幺，六五幺二，三四五六;
- codes after 编号/账号/身份证号 …, runs of 13 or more digits with no unit, room numbers
  (501室) and route or train numbers (G214线, K108次) are read digit by digit;
- clock times: ``2:30`` → 两点三十分, ``5:02`` → 五点零二分, ``10:04pm`` → 下午十点零四分
  (a colon near 比 is a ratio);
- ``第`` and a number is an ordinal (第二名, 第十一亿…), never a code.
- a 2 that counts is 两 (两次, 两户, 两公斤, 下午两点), and so is a leading 2 before
  百/千/万/亿 (两千亩, 两万平方米); ordinals, decimals, digit strings, dates, 十二 and 二十 keep 二.

Other spans are rewritten into forms wetext reads right: a dash between numbers is a range
only with a unit after the second one (``1-2组``, ``10-20%``, ``5-10km``; a tilde always is),
so ``中国1-2`` stays a score and ``08-08`` a date; leading zeros (08月), ``2019·2·10`` and
``12/2/2`` dates; currency signs (``$1.5万`` → 1.5万美元, ``¥1,234.50`` → 1234.5元);
negative percentages, per mille; Latin unit letters wetext leaves unread (g, t, V, W, Hz …).
``tests/audio/data/tn_corpus.tsv`` is the corpus these rules are measured on.

After normalisation, decorative symbols (【】, ★, emoji …) become pauses or disappear.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from audio.errors import N_, TextError
from audio.voices import check_rate

__all__ = [
    "MAX_TEXT_CHARS",
    "Lexicon",
    "estimate_duration",
    "spoken_text",
    "split_sentences",
]

MAX_TEXT_CHARS = 20_000
"""Longest written text accepted for one clip (about an hour of speech)."""

_SENTENCE_END = "。！？；!?;…"
_CLAUSE_END = "，、,：:"
_CLOSERS = "”’」』）)】》\"'"

_ASCII_WORD = re.compile(r"[A-Za-z0-9]")


@dataclass(frozen=True)
class Lexicon:
    """Whole-word substitutions applied to written text before normalisation.

    For place names with rare characters, polyphones a voice misreads (write the
    spoken form with homophones) and abbreviations. Longer entries win over shorter
    ones; replaced text is not substituted again. An entry that starts or ends with a
    Latin letter or digit only matches where it is not part of a longer Latin word or
    number (``APP`` does not match inside ``APPLE``).

    Attributes:
        entries: ``(written, spoken)`` pairs; written forms are unique.
    """

    entries: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        seen: set[str] = set()
        cleaned: list[tuple[str, str]] = []
        for pair in self.entries:
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise TextError(N_("读音词典的条目应为（写法，读法）：{pair}"), pair=repr(pair))
            written, spoken = (str(pair[0]).strip(), str(pair[1]).strip())
            if not written or not spoken:
                raise TextError(N_("读音词典的写法和读法都不能为空：{pair}"), pair=repr(pair))
            if written in seen:
                raise TextError(N_("读音词典中“{written}”重复出现"), written=written)
            seen.add(written)
            cleaned.append((written, spoken))
        object.__setattr__(self, "entries", tuple(cleaned))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str]) -> Lexicon:
        """Build a lexicon from ``{written: spoken}``."""
        return cls(tuple(mapping.items()))

    @classmethod
    def parse(cls, source: str) -> Lexicon:
        """Read ``写法=读法`` lines (``#`` starts a comment; blank lines are ignored).

        Raises:
            TextError: a line has no ``=``, or an entry is empty or repeated.
        """
        pairs: list[tuple[str, str]] = []
        for number, raw in enumerate(source.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            written, sep, spoken = line.partition("=")
            if not sep:
                raise TextError(
                    N_("读音词典第 {number} 行缺少“=”：{line}"), number=number, line=raw.strip()
                )
            pairs.append((written, spoken))
        return cls(tuple(pairs))

    def dump(self) -> str:
        """The lexicon as ``写法=读法`` lines, the inverse of :meth:`parse`."""
        return "".join(f"{w}={s}\n" for w, s in self.entries)

    @cached_property
    def digest(self) -> str:
        """A short hash of the entries, for cache keys and change detection."""
        return hashlib.sha256(self.dump().encode()).hexdigest()[:16]

    @cached_property
    def _regex(self) -> re.Pattern[str] | None:
        if not self.entries:
            return None
        parts = []
        for written, _ in sorted(self.entries, key=lambda e: -len(e[0])):
            part = re.escape(written)
            if _ASCII_WORD.match(written[0]):
                part = r"(?<![A-Za-z0-9])" + part
            if _ASCII_WORD.match(written[-1]):
                part += r"(?![A-Za-z0-9])"
            parts.append(part)
        return re.compile("|".join(parts))

    def apply(self, text: str) -> str:
        """Substitute every entry in ``text`` (one pass, longest match first)."""
        regex = self._regex
        if regex is None:
            return text
        table = dict(self.entries)
        return regex.sub(lambda m: table[m.group(0)], text)

    def matches(self, text: str) -> tuple[tuple[str, str], ...]:
        """The entries :meth:`apply` substitutes in ``text``, in the lexicon's order.

        Only these shape the spoken text: an entry that does not occur, occurs inside a
        longer Latin word or number, or inside a longer entry that wins, changes nothing.
        """
        regex = self._regex
        if regex is None:
            return ()
        found = {m.group(0) for m in regex.finditer(text)}
        return tuple(entry for entry in self.entries if entry[0] in found)

    def __bool__(self) -> bool:
        return bool(self.entries)


_normalizer_lock = threading.Lock()
_normalizer = None


def _tn(text: str) -> str:
    """wetext's Chinese text normaliser, built once per process (loading takes ~1 s)."""
    global _normalizer
    with _normalizer_lock:
        if _normalizer is None:
            from wetext import Normalizer

            _normalizer = Normalizer(lang="zh", operator="tn")
        normalized: str = _normalizer.normalize(text)
        return normalized


def wetext_only(text: str) -> str:
    """Plain wetext on ``text``, without any of dalaba's rewrites (the benchmark's baseline)."""
    return _tn(text)


# Fullwidth digits, Latin letters and a few symbols become ASCII; Chinese punctuation
# (，。：（） …) stays, it carries pauses.
_FULLWIDTH = {
    **{chr(0xFF10 + i): str(i) for i in range(10)},
    **{chr(0xFF21 + i): chr(0x41 + i) for i in range(26)},
    **{chr(0xFF41 + i): chr(0x61 + i) for i in range(26)},
    "％": "%",
    "．": ".",
    "－": "-",
    "＋": "+",
    "￥": "¥",
    "＄": "$",
    "＃": "#",
    "〜": "～",
    "−": "-",
    "\u3000": " ",
}
_FULLWIDTH_TABLE = str.maketrans(_FULLWIDTH)

# Spoken digits. Phone numbers and codes say 幺 for 1 (一 is easily misheard as 七);
# years keep 一 (二零一二年).
_CODE_DIGITS = str.maketrans("0123456789Xx", "零幺二三四五六七八九叉叉")
_YEAR_DIGITS = str.maketrans("0123456789", "零一二三四五六七八九")
_CN_DIGITS = "零一二三四五六七八九"


def _code_digits(digits: str) -> str:
    return re.sub(r"[\s-]", "", digits).translate(_CODE_DIGITS)


def _grouped(*groups: str) -> str:
    """Digits read one by one, with a pause between the groups people write them in."""
    return "，".join(_code_digits(g) for g in groups if g)


def _four(n: int) -> str:
    """0 < n < 10000 in Chinese, with inner zeros spoken once (一千零五)."""
    out = ""
    zero = False
    for value, name in ((1000, "千"), (100, "百"), (10, "十"), (1, "")):
        digit = n // value % 10
        if digit:
            out += ("零" if zero and out else "") + _CN_DIGITS[digit] + name
            zero = False
        else:
            zero = True
    return out


def _cardinal(n: int) -> str:
    """An integer in Chinese with 二 (never 两), e.g. for ordinals: 1200 → 一千二百."""
    if n == 0:
        return "零"
    groups: list[int] = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out = ""
    gap = False
    for index in range(len(groups) - 1, -1, -1):
        group = groups[index]
        if not group:
            gap = True
            continue
        if out and (gap or group < 1000):
            out += "零"
        out += _four(group) + ("", "万", "亿", "万亿")[index]
        gap = False
    return out[1:] if out.startswith("一十") else out


_DASH = r"(?:——|[-–—~～])"
_NUM = r"-?\d+(?:\.\d+)?"
_UNIT = (
    r"[万亿千百]?(?:小时|分钟|公里|公斤|千克|厘米|毫米|平方米|立方米|周岁|"
    r"[%‰℃°个人户名位岁天日月年号周次条件元角秒组栋楼层台辆头只袋斤两吨米亩倍期届批级项家间场张份本篇页排座章节]"
    r"|[a-zA-Z]+(?![a-zA-Z]))"
)
_NO_UNIT_AFTER = rf"(?![\d.,%]|\s*(?:{_UNIT}))"

# Phone numbers, in the forms notices write them. Each becomes its digit-by-digit
# reading with a pause between groups: 0871-6512 3456 → 零八七幺，六五幺二，三四五六.
_AREA = r"(01\d|02\d|0[3-9]\d{2})"
_LANDLINE = re.compile(
    rf"(?<![\d.])(?:[(（]\s*{_AREA}\s*[)）]|{_AREA})\s*[-–—]?\s*"
    r"(\d{3,4})[\s-]?(\d{4})(?!\d)"
    r"(?:\s*转\s*(分机)?\s*(\d{1,5})(?!\d))?"
)
_MOBILE = re.compile(rf"(?<![\d.第])(1[3-9]\d)[\s-]?(\d{{4}})[\s-]?(\d{{4}}){_NO_UNIT_AFTER}")
_SERVICE = re.compile(rf"(?<![\d.])([48]00)[\s-]?(\d{{3}})[\s-]?(\d{{4}}){_NO_UNIT_AFTER}")
# Short service numbers (110, 12345, 95598 …) only where a phone is being talked about.
_PHONE_WORDS = "电话|热线|拨打|拨|致电|报警|火警|急救|求助|投诉|举报|咨询|联系"
_SHORT_AFTER_WORD = re.compile(
    rf"((?:{_PHONE_WORDS})(?:是|为)?[：:\s]?)((?:1|9[56])\d{{2,4}}){_NO_UNIT_AFTER}"
)
_SHORT_BEFORE_WORD = re.compile(r"(?<![\d.])(1\d{2,4}|9[56]\d{3})(?=服务热线|热线|政务|便民)")


def _landline(match: re.Match[str]) -> str:
    area = match.group(1) or match.group(2)
    spoken = _grouped(area, match.group(3), match.group(4))
    if match.group(6):
        spoken += "，转" + (match.group(5) or "") + _code_digits(match.group(6))
    return spoken


def _phones(line: str) -> str:
    line = _LANDLINE.sub(_landline, line)
    line = _SERVICE.sub(lambda m: _grouped(*m.groups()), line)
    line = _MOBILE.sub(lambda m: _grouped(*m.groups()), line)
    line = _SHORT_AFTER_WORD.sub(lambda m: m.group(1) + _code_digits(m.group(2)), line)
    return _SHORT_BEFORE_WORD.sub(lambda m: _code_digits(m.group(1)), line)


# Codes are read digit by digit: after a word that names a code, or in a shape no amount
# has (13 digits or more with no unit after it; an ID card number).
# A word comes before any shorter word it starts with (QQ群 before QQ).
_CODE_WORDS = (
    "身份证号码", "邮政编码", "身份证号", "验证码", "订单号", "车牌号", "批次号", "微信号", "身份证",
    "编号", "账号", "帐号", "卡号", "号码", "密码", "邮编", "工号", "单号", "户号", "学号", "尾号",
    "车牌", "证号", "QQ群", "QQ",
)  # fmt: skip
_CODE_AFTER_WORD = re.compile(
    rf"((?:{'|'.join(_CODE_WORDS)})[是为：:\s]*(?:[\u4e00-\u9fff]?[A-Z])?)"
    r"(\d(?:[\d ]*\d)?[Xx]?)(?![\d.])"
)
_LONG_NUMBER = re.compile(rf"(?<![\d.,第])(\d{{17}}[Xx]|\d{{13,}}){_NO_UNIT_AFTER}")
_ROOM = re.compile(r"(?<![\d.])(\d{3,4})(?=室|房间|号房)")
_ROUTE = re.compile(r"(?<![A-Za-z])([GSXYKTDZCL])(\d{1,4})(?=线|次|国道|省道|高速)")


def _code_after_word(match: re.Match[str]) -> str:
    digits = re.sub(r"\s", "", match.group(2))
    if len(digits) < 4:
        return match.group(0)
    return match.group(1) + _code_digits(digits)


def _codes(line: str) -> str:
    line = _CODE_AFTER_WORD.sub(_code_after_word, line)
    line = _LONG_NUMBER.sub(lambda m: _code_digits(m.group(1)), line)
    line = _ROOM.sub(lambda m: _code_digits(m.group(1)), line)
    return _ROUTE.sub(lambda m: m.group(1) + _code_digits(m.group(2)), line)


# Clock times. wetext reads "8:30集合" as a ratio (八比三零) and leaves "10:04pm" half
# read; a colon between an hour and two-digit minutes is a time unless 比 is near.
_CLOCK = re.compile(
    r"(?<![\d:.])([01]?\d|2[0-4])[:：]([0-5]\d)(?:[:：]([0-5]\d))?(?![\d:])"
    r"(?:\s*([AaPp])\.?\s?[Mm](?![A-Za-z])\.?)?"
)
_CLOCK_RANGE = re.compile(
    rf"(?<=[点分秒])\s*{_DASH}\s*(?=(?:上午|下午)?[零一二两三四五六七八九十]+点)"
)


def _clock(match: re.Match[str]) -> str:
    line = match.string
    if (
        "比"
        in line[max(0, match.start() - 4) : match.start()] + line[match.end() : match.end() + 4]
    ):
        # A ratio (比例尺1:50, 按1:10的比例), which wetext would read as a time.
        return match.group(0).replace("：", ":").replace(":", "比")
    hour, minute = int(match.group(1)), int(match.group(2))
    second = int(match.group(3)) if match.group(3) else 0
    spoken = ("两" if hour == 2 else _cardinal(hour)) + "点"
    if minute or second:
        spoken += (f"零{_CN_DIGITS[minute]}" if 0 < minute < 10 else _cardinal(minute)) + "分"
    if second:
        spoken += (f"零{_CN_DIGITS[second]}" if second < 10 else _cardinal(second)) + "秒"
    meridiem = (match.group(4) or "").lower()
    prefix = {"a": "上午", "p": "下午"}.get(meridiem, "")
    return prefix + spoken


def _clocks(line: str) -> str:
    return _CLOCK_RANGE.sub("到", _CLOCK.sub(_clock, line))


# Dates wetext misreads: leading zeros (08月 → 零八月), middle dots, short years.
_DOT_DATE = re.compile(r"(?<![\d.])(\d{4})[·・•](\d{1,2})[·・•](\d{1,2})(?![\d.])")
_SHORT_DATE = re.compile(r"(?<![\d/.])(\d{2})/(0?[1-9]|1[0-2])/(0?[1-9]|[12]\d|3[01])(?![\d/])")
_LEADING_ZERO = re.compile(r"(?<![\d.])0([1-9])(?=月|时)|(?<=月)0([1-9])(?=[日号])")
_YEAR_RANGE = re.compile(rf"(?<!\d)((?:19|20)\d{{2}})\s*{_DASH}\s*(?=(?:19|20)\d{{2}}\s*年)")
_MONTH_RANGE = re.compile(
    rf"(?<![\d.])((?:19|20)\d{{2}}[./-]\d{{1,2}})\s*{_DASH}\s*(?=(?:19|20)\d{{2}}[./-]\d{{1,2}}(?![\d./-]))"
)


def _dates(line: str) -> str:
    line = _DOT_DATE.sub(r"\1年\2月\3日", line)
    line = _SHORT_DATE.sub(
        lambda m: (
            m.group(1).translate(_YEAR_DIGITS)
            + f"年{_cardinal(int(m.group(2)))}月{_cardinal(int(m.group(3)))}日"
        ),
        line,
    )
    line = _LEADING_ZERO.sub(lambda m: m.group(1) or m.group(2), line)
    line = _YEAR_RANGE.sub(lambda m: m.group(1).translate(_YEAR_DIGITS) + "到", line)
    return _MONTH_RANGE.sub(r"\1到", line)


# Ranges. A dash between two numbers is a range only with a unit after the second
# number ("1-2组", "10-20%", "5-10km"); a tilde always is. Otherwise the dash goes to wetext
# untouched: "中国1-2" is a score, "08-08" a date.
_RANGE = re.compile(
    rf"(?<![A-Za-z0-9.])({_NUM})(\s*(?:%|℃|°C|°)?)\s*({_DASH})\s*(?=({_NUM})\s*({_UNIT})?)"
)
_AFTER_UNIT_RANGE = re.compile(
    rf"(?<=[年月日号时分秒])\s*{_DASH}\s*(?=[\d零一二两三四五六七八九十])"
)
# Units where the first number of a range is an ordinal (3-5月, 1-2组): 2 stays 二.
_ORDINAL_UNITS = set("月日号周组栋楼层期届批级条排座页章节")


def _range(match: re.Match[str]) -> str:
    first, first_unit, dash, unit = match.group(1), match.group(2), match.group(3), match.group(5)
    if unit is None:
        return match.group(0) if dash in "-–—" else f"{first}{first_unit}到"
    if unit.startswith("%") and not first_unit.strip():
        first_unit = "%"
    ordinal = match.string[max(0, match.start() - 1) : match.start()] == "第"
    if first == "2" and not (first_unit.strip() or ordinal) and unit[0] not in _ORDINAL_UNITS:
        first = "两" if re.match(r"[\u4e00-\u9fff]", unit) else first
    return f"{first}{first_unit}到"


def _ranges(line: str) -> str:
    line = _RANGE.sub(_range, line)
    return _AFTER_UNIT_RANGE.sub("到", line)


# Ordinals: 第 and a number is a number (第1111111111 is not a code), spoken with 二.
_ORDINAL = re.compile(r"第\s*(\d+)(?![\d.])")


def _ordinal(match: re.Match[str]) -> str:
    digits = match.group(1)
    # 第0871号 is a document number, not an ordinal; nor is a number past 万亿.
    if digits.startswith("0") or len(digits) > 16:
        return "第" + _code_digits(digits)
    return "第" + _cardinal(int(digits))


# Money with a currency sign: the sign is read after the amount as its currency.
_CURRENCIES = {"US$": "美元", "HK$": "港元", "A$": "澳元", "$": "美元", "¥": "元", "€": "欧元"}
_CURRENCIES |= {"£": "英镑", "₩": "韩元"}
_SIGNED_MONEY = re.compile(
    r"(-\s*)?(US\$|HK\$|A\$|\$|¥|€|£|₩)\s*(\d[\d,]*(?:\.\d+)?)(\s*[万亿千])?(\s*元)?"
)
_MONEY_DECIMALS = re.compile(r"(\d+)\.(\d*?)0+(?=\s*(?:[美港澳欧韩]?元|块|万元|亿元))")
_PER_UNIT_PRICE = re.compile(
    r"(\d+(?:\.\d+)?(?:到\d+(?:\.\d+)?)?)\s*元\s*/\s*(小时|平方米|立方米|公斤|[次人天月年吨度斤亩户辆件个张份台头只袋间晚])"
)


def _signed_money(match: re.Match[str]) -> str:
    minus, sign, amount, multiplier = match.group(1), match.group(2), match.group(3), match.group(4)
    currency = _CURRENCIES[sign]
    # A 元 written after the amount as well (￥1234.5元) is the currency already said.
    return ("负" if minus else "") + amount.replace(",", "") + (multiplier or "").strip() + currency


def _money(line: str) -> str:
    line = _SIGNED_MONEY.sub(_signed_money, line)
    return _MONEY_DECIMALS.sub(
        lambda m: f"{m.group(1)}.{m.group(2)}" if m.group(2) else m.group(1), line
    )


# Percentages with a sign wetext drops or misplaces; per mille.
_NEGATIVE_PERCENT = re.compile(r"(?<![\d%A-Za-z)）])-\s*(?=\d+(?:\.\d+)?\s*%|百分之|千分之)")
_PER_MILLE = re.compile(r"(\d+(?:\.\d+)?)\s*‰")

# Latin unit letters wetext leaves unread after a number.
_LATIN_UNITS = {"kWh": "千瓦时", "mAh": "毫安时", "Hz": "赫兹", "dB": "分贝", "g": "克", "t": "吨"}
_LATIN_UNITS |= {"V": "伏", "W": "瓦"}
_LATIN_UNIT = re.compile(
    r"(?<=\d)\s*("
    + "|".join(sorted(_LATIN_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z]|网|信号|手机|基站|套餐)"
)

# 两 and 二. A lone 2 that counts something is 两 (两次, 两户, 两公斤, 下午两点) and so is a
# leading 2 before 百/千/万/亿 (两千亩, 两万平方米); wetext says 二 before many measure words.
# 二 stays in ordinals (第二, spoken earlier), decimals (二点五: the 2 touches a "."), digit
# strings (phones and codes are spoken earlier), dates and years (no 年/月/日/号 here; 年 only
# as a span of years, never 年级), and inside numbers (十二, 二十: the 2 touches a digit).
_MEASURE_WORDS = (
    "公斤|公里|千米|千克|平方米|立方米|平方公里|小时|分钟|个月|星期|礼拜|年(?!级|代)|周(?!年)"
    "|[次人户个天条名位辆亩袋元斤批台间份所处包株遍趟回种样项倍头只件套场张本篇座块瓶箱"
    "根棵片颗粒盒桶对双轮支队家吨米克升站笔顿餐夜晚]"
    r"|点(?![\d零一二三四五六七八九十])"
)
_TWO_COUNTS = re.compile(rf"(?<![\d.,:：/·第A-Za-z])2(?=\s*(?:{_MEASURE_WORDS}))")
_TWO_LEADS = re.compile(r"(?<![\d.,:：/·第A-Za-z])2(?=\s*[百千万亿])")
_DAY_TWO = re.compile(r"(?<=月)\s*2(?=\s*[日号])|(?<=[至到～~、和])2(?=\s*[日号])")
_THOUSANDS = re.compile(r"(?<![\d.,])(\d{1,3})((?:,\d{3})+)(?![\d,])")


def _twos(line: str) -> str:
    line = _DAY_TWO.sub("二", line)
    line = _TWO_COUNTS.sub("两", line)
    return _TWO_LEADS.sub("两", line)


_WORD_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=\d)")
_HASH_NUMBER = re.compile(r"(?<=\d)#")
# A unit number or a temperature of 2 is 二 (二单元, 二摄氏度), not the count 两.
_UNIT_NUMBER_TWO = re.compile(r"(?<![\d.-])2(?:(?=单元)|\s*(?:℃|°C))")


def _before_tn(line: str) -> str:
    """dalaba's own rewrites, each on a span whose meaning is clear from its context.

    Spans that are certain (phone numbers, codes, clock times, ordinals) are spoken here
    and reach wetext as Chinese words, which it leaves alone; the others are rewritten
    into forms wetext reads right. Everything else goes to wetext untouched.
    """
    line = _phones(line)
    line = _codes(line)
    line = _clocks(line)
    line = _dates(line)
    line = _money(line)
    line = _THOUSANDS.sub(lambda m: m.group(1) + m.group(2).replace(",", ""), line)
    line = _ranges(line)
    line = _PER_UNIT_PRICE.sub(r"每\2\1元", line)
    line = _ORDINAL.sub(_ordinal, line)
    line = _NEGATIVE_PERCENT.sub("负", line)
    line = _PER_MILLE.sub(r"千分之\1", line)
    line = _LATIN_UNIT.sub(lambda m: _LATIN_UNITS[m.group(1)], line)
    line = _UNIT_NUMBER_TWO.sub(lambda m: "二" if m.group(0) == "2" else "二摄氏度", line)
    line = _twos(line)
    line = _WORD_HYPHEN.sub(" ", line)
    return _HASH_NUMBER.sub("号", line)


_OPENERS_DROP = str.maketrans({"【": "", "〖": "", "［": "", "[": ""})
_PAUSES = str.maketrans({"】": "，", "〗": "，", "］": "，", "]": "，", "|": "，", "｜": "，"})
_REPEATED_PUNCT = re.compile(r"([，。！？；、,.!?;])[，、,\s]*(?=[，。！？；、,.!?;])")
_SPACES = re.compile(r"[ \t]+")


def _after_tn(line: str) -> str:
    line = line.translate(_OPENERS_DROP).translate(_PAUSES)
    kept = []
    for char in line:
        category = unicodedata.category(char)
        # Symbols (★, emoji), private-use and control characters carry no speech.
        if category in {"So", "Sk"} or category.startswith("C") or char in "*#～~^_=":
            kept.append(" ")
        else:
            kept.append(char)
    line = "".join(kept)
    line = _REPEATED_PUNCT.sub("", line)
    line = _SPACES.sub(" ", line)
    line = re.sub(r" ?([，。！？；：、“”（）]) ?", r"\1", line)
    # A space between two Chinese characters is a leftover of a removed symbol.
    line = re.sub(r"(?<=[\u4e00-\u9fff]) (?=[\u4e00-\u9fff])", "", line)
    return line.strip(" ，、,")


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in text)


def check_text(text: object) -> None:
    """Refuse what cannot be one clip's text: not a string, or longer than :data:`MAX_TEXT_CHARS`.

    Raises:
        TextError: with the reason.
    """
    if not isinstance(text, str):
        raise TextError(N_("公告文本应为字符串"))
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(
            N_("文本过长（{length} 字），单条公告最多 {limit} 字"),
            length=len(text),
            limit=MAX_TEXT_CHARS,
        )


def spoken_text(text: str, lexicon: Lexicon | None = None) -> str:
    """Turn written announcement text into the text to be spoken.

    Applies the lexicon, rewrites ranges and currency signs, normalises numbers, dates,
    times, money, percentages, phone numbers and units with wetext, and removes
    decorative symbols. Line breaks are kept (they are sentence boundaries).

    Args:
        text: the written text, as the officer typed it.
        lexicon: pronunciation substitutions, applied before normalisation.

    Returns:
        Text containing only words and punctuation, e.g. ``"明天8:00-10:00"`` →
        ``"明天八点到十点"``.

    Raises:
        TextError: the text is not a string, is longer than :data:`MAX_TEXT_CHARS`, or has
            nothing speakable in it.
    """
    check_text(text)
    text = unicodedata.normalize("NFC", text).translate(_FULLWIDTH_TABLE)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if lexicon:
        text = lexicon.apply(text)
    lines = []
    for raw in text.split("\n"):
        line = _SPACES.sub(" ", raw).strip()
        if not line:
            continue
        line = _after_tn(_tn(_before_tn(line)))
        if line:
            lines.append(line)
    result = "\n".join(lines)
    if not _speakable(result):
        raise TextError(N_("文本中没有可朗读的内容"))
    return result


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Split one over-long sentence at clause marks, then at spaces, then hard."""
    pieces: list[str] = []
    current = ""
    for clause in re.findall(rf"[^{_CLAUSE_END}]*[{_CLAUSE_END}]*", sentence):
        if not clause:
            continue
        if len(current) + len(clause) <= max_chars:
            current += clause
            continue
        if current:
            pieces.append(current)
        current = ""
        while len(clause) > max_chars:
            cut = clause.rfind(" ", 1, max_chars + 1)
            cut = cut if cut > 0 else max_chars
            pieces.append(clause[:cut])
            clause = clause[cut:]
        current = clause
    if current:
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split text into sentences no longer than ``max_chars``.

    Sentences end at 。！？；!?; … and line breaks (closing quotes and brackets stay with
    their sentence). A sentence longer than ``max_chars`` is split at ，、,：: then at a
    space, and only as a last resort inside a run of characters. Nothing is dropped and
    nothing repeated: joining the pieces gives the text back, minus whitespace at the
    cut points.

    Args:
        text: usually the output of :func:`spoken_text`.
        max_chars: the longest piece an engine should receive (at least 10).

    Returns:
        Non-empty pieces in reading order.
    """
    if max_chars < 10:
        raise ValueError("max_chars must be at least 10")
    pattern = rf"[^{_SENTENCE_END}\n]*(?:[{_SENTENCE_END}]+[{_CLOSERS}]*|\n|$)"
    pieces: list[str] = []
    for sentence in re.findall(pattern, text):
        sentence = sentence.strip()
        if not sentence:
            continue
        if len(sentence) <= max_chars:
            pieces.append(sentence)
        else:
            pieces.extend(_split_long(sentence, max_chars))
    return pieces


CHARS_PER_SECOND = 4.4
"""Chinese syllables per second at rate 0 (about 265 per minute): a usual announcer's pace
and our working estimate for the neural voices. It was not calibrated against the live
service (tests run offline); compare with real clips' durations and adjust if needed."""
_SENTENCE_PAUSE_S = 0.35
_CLAUSE_PAUSE_S = 0.15


def estimate_duration(text: str, rate: int = 0, lexicon: Lexicon | None = None) -> float:
    """Estimate how long ``text`` takes to speak, without synthesis (for the editor).

    Counts syllables of the spoken text (one per Chinese character or digit-word, about
    two per Latin word) at :data:`CHARS_PER_SECOND` scaled by the rate, plus pauses at
    sentence and clause marks.

    Args:
        text: written text.
        rate: speaking rate in percent (−50…+50).
        lexicon: as for :func:`spoken_text`.

    Returns:
        Seconds, rounded to 0.1; 0.0 for text with nothing speakable.

    Raises:
        VoiceError: the rate is out of range.
        TextError: the text is too long.
    """
    check_rate(rate)
    try:
        spoken = spoken_text(text, lexicon)
    except TextError:
        if isinstance(text, str) and len(text) <= MAX_TEXT_CHARS:
            return 0.0
        raise
    syllables = sum(1 for ch in spoken if "\u3400" <= ch <= "\u9fff")
    syllables += 2 * len(re.findall(r"[A-Za-z]+", spoken))
    syllables += len(re.findall(r"\d", spoken))
    pauses = sum(_SENTENCE_PAUSE_S for ch in spoken if ch in _SENTENCE_END or ch == "\n")
    pauses += sum(_CLAUSE_PAUSE_S for ch in spoken if ch in _CLAUSE_END)
    seconds = syllables / (CHARS_PER_SECOND * (1 + rate / 100)) + pauses
    return round(seconds, 1)


def pack(pieces: Iterable[str], limit: int, length: Callable[[str], int] = len) -> list[str]:
    """Join consecutive ``pieces`` into chunks of at most ``limit`` by ``length``.

    A piece longer than ``limit`` stands alone; pieces are never cut.
    """
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        if current and length(current) + length(piece) > limit:
            chunks.append(current)
            current = ""
        current += piece
    if current:
        chunks.append(current)
    return chunks
