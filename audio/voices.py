"""The whitelist of voices and the speaking-rate range.

edge-tts puts the voice name into SSML without escaping it, so only names from
:data:`VOICES` ever reach it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from audio.errors import N_, VoiceError

__all__ = ["DEFAULT_VOICE", "MAX_RATE", "MIN_RATE", "VOICES", "Voice", "check_rate", "get_voice"]

MIN_RATE = -50
MAX_RATE = 50


@dataclass(frozen=True)
class Voice:
    """One selectable voice.

    Attributes:
        name: the edge-tts short name, e.g. ``zh-CN-XiaoxiaoNeural``.
        label: the Chinese label shown in a dropdown.
        gender: ``female`` or ``male``; picks the matching eSpeak NG variant offline.
        espeak: the eSpeak NG voice used when the offline engine stands in.
    """

    name: str
    label: str
    gender: Literal["female", "male"]
    espeak: str


VOICES: dict[str, Voice] = {
    v.name: v
    for v in (
        Voice("zh-CN-XiaoxiaoNeural", "晓晓（女声，温暖）", "female", "cmn+f3"),
        Voice("zh-CN-YunjianNeural", "云健（男声，浑厚）", "male", "cmn"),
        Voice("zh-CN-XiaoyiNeural", "晓伊（女声，活泼）", "female", "cmn+f4"),
        Voice("zh-CN-YunxiNeural", "云希（男声，阳光）", "male", "cmn+m3"),
        Voice("zh-CN-YunyangNeural", "云扬（男声，播音）", "male", "cmn+m1"),
        Voice("zh-CN-liaoning-XiaobeiNeural", "晓北（女声，东北话）", "female", "cmn+f2"),
        Voice("zh-CN-shaanxi-XiaoniNeural", "晓妮（女声，陕西话）", "female", "cmn+f1"),
    )
}
"""Voices offered for announcements, keyed by edge-tts short name (insertion order = menu order)."""

DEFAULT_VOICE = "zh-CN-XiaoxiaoNeural"


def get_voice(name: str) -> Voice:
    """Look a voice up in the whitelist.

    Args:
        name: an edge-tts short name.

    Returns:
        The whitelisted :class:`Voice`.

    Raises:
        VoiceError: the name is not in :data:`VOICES`.
    """
    try:
        return VOICES[name]
    except (KeyError, TypeError):
        raise VoiceError(
            N_("不支持的发音人：{name}（可选：{choices}）"),
            name=repr(name),
            choices="、".join(VOICES),
        ) from None


def check_rate(rate: int) -> int:
    """Validate a speaking rate given in percent relative to normal speed.

    Args:
        rate: −50 (half speed) … +50 (one and a half times).

    Returns:
        The rate unchanged.

    Raises:
        VoiceError: not an integer, or outside the range.
    """
    if isinstance(rate, bool) or not isinstance(rate, int) or not MIN_RATE <= rate <= MAX_RATE:
        raise VoiceError(
            N_("语速应为 {low} 到 {high} 之间的整数（百分比），当前为 {rate}"),
            low=MIN_RATE,
            high=MAX_RATE,
            rate=repr(rate),
        )
    return rate
