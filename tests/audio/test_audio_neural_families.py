"""Matcha and Kokoro through the neural engine, piper folders refused: real sherpa-onnx, tiny models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from audio import NeuralError, Renderer
from audio.engines import Speech
from audio.neural import locate_model, probe, read_onnx_metadata
from audio.voices import get_voice
from tests.audio.neural_model import write_tiny_kokoro, write_tiny_matcha, write_tiny_vits

TEXT = "各位村民请注意。明天上午八点在村委会开会！"


def _dominant_hz(path: Path) -> float:
    """The pitch of a WAV sine from its zero crossings."""
    import wave
    from array import array

    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = array("h", wav.readframes(wav.getnframes()))
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    return crossings / (len(samples) / rate)


@pytest.fixture(scope="module")
def matcha_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_matcha(tmp_path_factory.mktemp("tiny-matcha"))


@pytest.fixture(scope="module")
def kokoro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_tiny_kokoro(tmp_path_factory.mktemp("tiny-kokoro"))
    (folder / "dalaba-model.json").write_text(
        json.dumps(
            {
                "name": "kokoro-multi-lang-v1_1",
                "speakers": [
                    {"key": "zf_001", "label": "zf_001（女声）", "gender": "female"},
                    {"key": "zf_002", "label": "zf_002（女声）", "gender": "female"},
                    {"key": "zm_009", "label": "zm_009（男声）", "gender": "male"},
                ],
            }
        ),
        encoding="utf-8",
    )
    return folder


def test_metadata_is_read_without_loading_the_graph(kokoro_dir: Path) -> None:
    meta = read_onnx_metadata(kokoro_dir / "model.onnx")
    assert meta["model_type"] == "kokoro" and meta["style_dim"] == "64,1,4"
    assert meta["speaker_names"] == "zf_001,zf_002,zm_009"
    with pytest.raises(ValueError):
        read_onnx_metadata(kokoro_dir / "tokens.txt")


def test_matcha_speaks_through_its_vocoder(
    make_renderer: Callable[..., Renderer], matcha_dir: Path
) -> None:
    model = locate_model(matcha_dir)
    assert model.family == "matcha" and model.vocoder == matcha_dir / "vocoder.onnx"
    syntheses: list[tuple[str, Speech]] = []
    renderer = make_renderer(
        "neural",
        neural_model_dir=matcha_dir,
        on_synthesis=lambda name, speech: syntheses.append((name, speech)),
    )
    clip = renderer.render(TEXT)
    assert clip.engine == "neural" and clip.neural_model == model.identity
    ((_, speech),) = syntheses
    first, second = (round(c.end - c.start, 2) for c in speech.cues)
    # one token per character with a blank between each (add_blank): 2 × 0.1 s more each
    assert second > first
    # one speaker: every voice speaks alike and shares the speech
    other = renderer.render(TEXT, voice="zh-CN-YunjianNeural")
    assert other.source_key == clip.source_key and len(syntheses) == 1


def test_kokoro_voices_speak_as_their_own_speakers(
    make_renderer: Callable[..., Renderer], kokoro_dir: Path
) -> None:
    model = locate_model(kokoro_dir)
    assert model.family == "kokoro" and model.voices == kokoro_dir / "voices.bin"
    assert [s.sid for s in model.speakers] == [0, 1, 2]
    syntheses: list[tuple[str, Speech]] = []
    renderer = make_renderer(
        "neural",
        neural_model_dir=kokoro_dir,
        on_synthesis=lambda name, speech: syntheses.append((name, speech)),
    )
    clips = {
        voice: renderer.render("请注意防火。", voice=voice)
        for voice in ("zh-CN-XiaoxiaoNeural", "zh-CN-XiaoyiNeural", "zh-CN-YunjianNeural")
    }
    # three speakers, three syntheses, three cache keys
    assert len(syntheses) == 3 and len({c.source_key for c in clips.values()}) == 3
    pitches = [_dominant_hz(speech.path) for _, speech in syntheses]
    # speaker n sings at 220 + 40·n Hz (+ the text's offset, the same for all three)
    assert pitches[1] - pitches[0] == pytest.approx(40, abs=4)
    assert pitches[2] - pitches[0] == pytest.approx(80, abs=4)
    assert model.speaker_for(get_voice("zh-CN-YunxiNeural")).label == "zm_009（男声）"
    # the same voice again: from the cache
    renderer.render("请注意防火。", voice="zh-CN-XiaoyiNeural")
    assert len(syntheses) == 3


def test_trial_reports_family_sample_rate_and_rtf(matcha_dir: Path, kokoro_dir: Path) -> None:
    matcha = probe(matcha_dir, TEXT)
    assert (matcha.family, matcha.sample_rate, matcha.speakers) == ("matcha", 22_050, 1)
    assert matcha.audio_s > 1 and 0 < matcha.rtf < float("inf")
    kokoro = probe(kokoro_dir, TEXT)
    assert (kokoro.family, kokoro.sample_rate, kokoro.speakers) == ("kokoro", 24_000, 3)


def test_piper_folder_is_refused_with_the_true_reason(tmp_path: Path) -> None:
    folder = write_tiny_vits(tmp_path / "vits-piper-zh_CN-huayan-medium")
    (folder / "lexicon.txt").unlink()
    (folder / "espeak-ng-data").mkdir()
    (folder / "espeak-ng-data" / "phontab").write_bytes(b"\0" * 16)
    with pytest.raises(
        NeuralError, match=r"piper 类模型.*sherpa-onnx 2\.x 不再读取 espeak-ng-data"
    ):
        locate_model(folder)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("matcha-no-vocoder", "缺少声码器"),
        ("kokoro-no-voices", "缺少 voices.bin"),
        ("kokoro-no-lexicon", "缺少词典.*不再读取 espeak-ng-data"),
        ("kokoro-bad-voices", "Corrupted"),
    ],
)
def test_broken_family_folders(
    make_renderer: Callable[..., Renderer], tmp_path: Path, damage: str, expected: str
) -> None:
    folder = tmp_path / "model"
    if damage.startswith("matcha"):
        write_tiny_matcha(folder, vocoder=False)
    else:
        write_tiny_kokoro(folder)
    if damage == "kokoro-no-voices":
        (folder / "voices.bin").unlink()
    elif damage == "kokoro-no-lexicon":
        (folder / "lexicon-zh.txt").unlink()
        (folder / "espeak-ng-data").mkdir()
    elif damage == "kokoro-bad-voices":
        (folder / "voices.bin").write_bytes(b"\0" * 12)
    with pytest.raises(NeuralError, match=expected):
        make_renderer("neural", neural_model_dir=folder).render("你好。")
