"""From written announcement text to the text a voice should speak.

Text normalisation (numbers, dates, times, money, percentages, phone numbers, units) is
done by wetext (WeTextProcessing's runtime). A few written forms wetext gets wrong are
rewritten first, always into forms wetext then reads correctly:

- ranges: ``1-2组`` is not "一减二组" but ``1到2组``; ``3～5℃``, ``10%-20%``, ``8:00-10:00``,
  ``-5~-3℃`` likewise (dates like ``2024-03-05`` and phone numbers like ``0871-65123456``
  are left alone);
- money: ``¥1,234.50`` / ``￥1234.5元`` become ``1234.5元``;
- ``COVID-19`` keeps its hyphen from turning into "负";
- clock times ``8:30`` become ``8点30分`` (wetext sometimes reads them as ratios);
- codes are read digit by digit: numbers after 编号/账号/卡号/密码/验证码/身份证号 …
  and any run of nine or more digits not followed by a unit (wetext would read
  ``6228480012345678`` as an amount).

After normalisation, decorative symbols (【】, ★, emoji …) become pauses or disappear.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property

from audio.errors import TextError
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
                raise TextError(f"读音词典的条目应为（写法，读法）：{pair!r}")
            written, spoken = (str(pair[0]).strip(), str(pair[1]).strip())
            if not written or not spoken:
                raise TextError(f"读音词典的写法和读法都不能为空：{pair!r}")
            if written in seen:
                raise TextError(f"读音词典中“{written}”重复出现")
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
                raise TextError(f"读音词典第 {number} 行缺少“=”：{raw.strip()}")
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

_DASH = r"(?:——|[-–—~～])"
_NUM = r"-?\d+(?:\.\d+)?"
# Spans that contain a dash but are not ranges: ISO dates and phone numbers.
_PROTECTED = re.compile(
    r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}"
    r"|(?<!\d)0\d{2,3}-\d{7,8}(?!\d)"
    r"|(?<!\d)\d{3}-\d{3,4}-\d{4}(?!\d)"
)
_TIME_RANGE = re.compile(rf"(\d{{1,2}}:\d{{2}})\s*{_DASH}\s*(?=\d{{1,2}}:\d{{2}})")
_NUM_RANGE = re.compile(rf"(?<![A-Za-z0-9.])({_NUM})(\s*(?:%|℃|°C|°)?)\s*{_DASH}\s*(?={_NUM})")
_UNIT_RANGE = re.compile(rf"(?<=[年月日号点时分秒])\s*{_DASH}\s*(?=\d)")
_WORD_HYPHEN = re.compile(r"(?<=[A-Za-z])-(?=\d)")
_YUAN_SIGN = re.compile(r"¥\s*(\d[\d,]*(?:\.\d+)?)(\s*元)?")
_MONEY_DECIMALS = re.compile(r"(\d+)\.(\d*?)0+(?=\s*(?:元|块|万元|亿元))")
_HASH_NUMBER = re.compile(r"(?<=\d)#")
# Codes are read digit by digit: wetext reads 6228480012345678 as a (garbled) amount.
_CODE_WORDS = "编号|账号|帐号|卡号|号码|密码|验证码|邮编|身份证号|身份证|工号|单号|订单号|户号|学号"
_CODE_AFTER_WORD = re.compile(rf"((?:{_CODE_WORDS})[是为：:\s]*)(\d{{4,}}[Xx]?)(?![\d.])")
_LONG_NUMBER = re.compile(
    r"(?<![\d.,])(\d{9,}[Xx]?)(?![\d.,%]|\s*[元万亿千百十人户亩米斤吨个次年])"
)
_DIGIT_WORDS = str.maketrans("0123456789Xx", "零幺二三四五六七八九叉叉")
# wetext reads "8:30集合" as a ratio ("八比三零"); clock times are spelled out for it.
_CLOCK = re.compile(r"(?<![\d:.])(?<!比分)(?<!比)([01]?\d|2[0-3]):([0-5]\d)(?![\d:])")


def _money(match: re.Match[str]) -> str:
    return match.group(1).replace(",", "") + "元"


def _money_decimals(match: re.Match[str]) -> str:
    whole, decimals = match.group(1), match.group(2)
    return f"{whole}.{decimals}" if decimals else whole


def _clock(match: re.Match[str]) -> str:
    hour, minute = int(match.group(1)), match.group(2)
    return f"{hour}点" if minute == "00" else f"{hour}点{minute}分"


def _rewrite_ranges(piece: str) -> str:
    piece = _TIME_RANGE.sub(r"\1到", piece)
    piece = _CLOCK.sub(_clock, piece)
    piece = _NUM_RANGE.sub(r"\1\2到", piece)
    return _UNIT_RANGE.sub("到", piece)


def _digits(match: re.Match[str]) -> str:
    return match.group(0).translate(_DIGIT_WORDS)


def _code(match: re.Match[str]) -> str:
    return match.group(1) + match.group(2).translate(_DIGIT_WORDS)


def _before_tn(line: str) -> str:
    line = _CODE_AFTER_WORD.sub(_code, line)
    line = _LONG_NUMBER.sub(_digits, line)
    line = _YUAN_SIGN.sub(_money, line)
    line = _MONEY_DECIMALS.sub(_money_decimals, line)
    line = _WORD_HYPHEN.sub(" ", line)
    line = _HASH_NUMBER.sub("号", line)
    out: list[str] = []
    last = 0
    for match in _PROTECTED.finditer(line):
        out.append(_rewrite_ranges(line[last : match.start()]))
        out.append(match.group(0))
        last = match.end()
    out.append(_rewrite_ranges(line[last:]))
    return "".join(out)


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
    if not isinstance(text, str):
        raise TextError("公告文本应为字符串")
    if len(text) > MAX_TEXT_CHARS:
        raise TextError(f"文本过长（{len(text)} 字），单条公告最多 {MAX_TEXT_CHARS} 字")
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
        raise TextError("文本中没有可朗读的内容")
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


def chunk_sentences(sentences: Iterable[str], max_chars: int) -> list[str]:
    """Group consecutive sentences into chunks of at most ``max_chars`` characters."""
    chunks: list[str] = []
    current = ""
    for sentence in sentences:
        if current and len(current) + len(sentence) > max_chars:
            chunks.append(current)
            current = ""
        current += sentence
    if current:
        chunks.append(current)
    return chunks
