"""Deterministic offline speech: the same text, voice and rate give the same eSpeak bytes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audio.engines import OfflineEngine
from audio.voices import get_voice

TEXT = ["各位村民请注意，明天上午八点在村委会召开户长会。", "请准时参加。"]
OTHERS = [
    (["寒潮来袭，最低气温零下五度！"], "zh-CN-YunjianNeural", 30),
    (["请问您吃饭了吗？", "Hello world 123"], "zh-CN-liaoning-XiaobeiNeural", -20),
    (["缴费电话：零八七一，六五一二。"], "zh-CN-YunyangNeural", 10),
]
# 晓晓 (cmn+f3) and 晓北 (cmn+f2) are breathy variants: their noise generator was seeded
# from the clock. 云健 (cmn) carried other state from one synthesis to the next.
VOICES = ["zh-CN-XiaoxiaoNeural", "zh-CN-YunjianNeural"]

_FRESH = """
import hashlib, sys
from pathlib import Path
from audio.engines import OfflineEngine
from audio.voices import get_voice
out = Path(sys.argv[1])
OfflineEngine().synthesize({text!r}, get_voice({voice!r}), 0, out)
print(hashlib.sha256(out.read_bytes()).hexdigest())
"""


def _speak(tmp_path: Path, name: str, chunks: list[str], voice: str, rate: int = 0) -> bytes:
    out = tmp_path / f"{name}.wav"
    OfflineEngine().synthesize(chunks, get_voice(voice), rate, out)
    return out.read_bytes()


@pytest.mark.parametrize("voice", VOICES)
def test_same_text_gives_same_bytes_before_and_after_other_texts_and_in_a_fresh_process(
    tmp_path: Path, voice: str
) -> None:
    before = _speak(tmp_path, "before", TEXT, voice)
    for index, (chunks, other, rate) in enumerate(OTHERS):
        _speak(tmp_path, f"other{index}", chunks, other, rate)
    after = _speak(tmp_path, "after", TEXT, voice)
    assert len(before) > 44 + 22_050  # a real second or more of speech
    assert after == before

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    fresh = subprocess.run(
        [sys.executable, "-c", _FRESH.format(text=TEXT, voice=voice), str(tmp_path / "f.wav")],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=120,
    )
    assert fresh.stdout.strip() == hashlib.sha256(before).hexdigest()


def test_rate_and_voice_still_change_the_speech(tmp_path: Path) -> None:
    base = _speak(tmp_path, "base", TEXT, VOICES[0])
    assert _speak(tmp_path, "fast", TEXT, VOICES[0], 30) != base
    assert _speak(tmp_path, "voice", TEXT, VOICES[1]) != base


def test_another_user_of_the_shared_library_does_not_bring_the_state_back(tmp_path: Path) -> None:
    import ctypes

    import espeakng_loader

    before = _speak(tmp_path, "before", TEXT, VOICES[0])
    # Someone else in the process (another package) loads the same library and keeps it.
    other = ctypes.CDLL(espeakng_loader.get_library_path())
    other.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    assert other.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0) > 0
    try:
        for index, (chunks, voice, rate) in enumerate(OTHERS):
            _speak(tmp_path, f"other{index}", chunks, voice, rate)
        assert _speak(tmp_path, "after", TEXT, VOICES[0]) == before
    finally:
        other.espeak_Terminate()
