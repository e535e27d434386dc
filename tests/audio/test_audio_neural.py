"""The offline neural engine: real sherpa-onnx loading and synthesis on a generated model."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from audio import NeuralError, Renderer, measure_loudness
from audio.engines import Speech
from audio.neural import check_model, default_threads, locate_model, unavailable_reason
from tests.audio.neural_model import write_tiny_vits
from tests.fakes.edge_server import FakeEdgeServer, Fault

TEXT = "各位村民请注意。明天上午八点在村委会开会！"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_vits(tmp_path_factory.mktemp("tiny-vits"))


@pytest.fixture
def syntheses() -> list[tuple[str, Speech]]:
    return []


@pytest.fixture
def neural(
    make_renderer: Callable[..., Renderer], model_dir: Path, syntheses: list[tuple[str, Speech]]
) -> Renderer:
    return make_renderer(
        "neural",
        neural_model_dir=model_dir,
        on_synthesis=lambda name, speech: syntheses.append((name, speech)),
    )


def test_renders_a_mastered_clip_with_subtitles(
    neural: Renderer, model_dir: Path, syntheses: list[tuple[str, Speech]]
) -> None:
    clip = neural.render(TEXT)
    assert clip.engine == "neural" and clip.fallback_reason is None
    assert clip.neural_model == locate_model(model_dir).identity
    assert measure_loudness(clip.path).integrated == pytest.approx(-14.0, abs=1.0)
    assert "各位村民请注意。" in clip.srt and "明天上午八点在村委会开会！" in clip.srt
    ((name, speech),) = syntheses
    # One token (0.1 s) per character plus the frontend's fixed ones (sil, eos, …):
    # the second sentence has 5 characters more than the first (7).
    first, second = (round(c.end - c.start, 2) for c in speech.cues)
    assert name == "neural" and second == pytest.approx(first + 0.5)
    assert speech.duration == pytest.approx(first + second)
    assert speech.compute_s is not None and speech.compute_s > 0
    # the cache answers the second time: no synthesis
    assert neural.render(TEXT) == clip and len(syntheses) == 1
    stored = json.loads(clip.path.with_suffix(".json").read_text(encoding="utf-8"))
    assert stored["engine"] == "neural" and stored["neural_model"] == clip.neural_model


def test_rate_changes_the_speed(neural: Renderer, syntheses: list[tuple[str, Speech]]) -> None:
    neural.render("请注意防火。", rate=0)
    neural.render("请注意防火。", rate=50)
    normal, fast = (speech.duration for _, speech in syntheses)
    assert fast == pytest.approx(normal / 1.5, rel=0.02)


def test_voice_note_reuses_the_neural_speech(
    neural: Renderer, syntheses: list[tuple[str, Speech]]
) -> None:
    clip = neural.render("你好。")
    note = neural.voice_note(clip)
    assert note.engine == "neural" and note.neural_model == clip.neural_model
    assert note.path.suffix == ".ogg" and len(syntheses) == 1


def test_cache_key_follows_the_model(
    make_renderer: Callable[..., Renderer], tmp_path: Path, syntheses: list[tuple[str, Speech]]
) -> None:
    folder = write_tiny_vits(tmp_path / "model")
    renderer = make_renderer(
        "neural", neural_model_dir=folder, on_synthesis=lambda n, s: syntheses.append((n, s))
    )
    first = renderer.render("你好。")
    write_tiny_vits(folder, hop=2_400)  # a retrained model in the same folder
    second = renderer.render("你好。")
    assert second.key != first.key and second.source_key != first.source_key
    assert second.neural_model != first.neural_model
    assert second.duration > first.duration  # and it was really reloaded
    (folder / "lexicon.txt").write_text(
        (folder / "lexicon.txt").read_text(encoding="utf-8") + "喂 c0\n", encoding="utf-8"
    )
    third = renderer.render("你好。")
    assert third.key not in {first.key, second.key}
    assert len(syntheses) == 3


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("missing", "模型文件夹不存在"),
        ("no-model", "缺少 model.onnx"),
        ("no-tokens", "缺少 tokens.txt"),
        ("no-lexicon", "缺少 lexicon.txt"),
        ("corrupt", "Protobuf parsing failed"),
        ("empty", "是空文件"),
        # sherpa-onnx calls exit(-1) when a required metadata key is missing: the probe
        # runs in a child, so this process survives to report it.
        ("no-metadata", "sample_rate"),
        ("no-eos", "tokens.txt 与模型不匹配"),
        ("bad-fst", "error reading FST header from .*number.fst"),
    ],
)
def test_broken_folder_is_a_clear_error(
    make_renderer: Callable[..., Renderer], tmp_path: Path, damage: str, expected: str
) -> None:
    folder = tmp_path / "model"
    if damage == "no-metadata":
        write_tiny_vits(folder, metadata={"sample_rate": None})
    elif damage == "no-eos":
        write_tiny_vits(folder, eos=False)
    elif damage != "missing":
        write_tiny_vits(folder)
    if damage == "no-model":
        (folder / "model.onnx").unlink()
    elif damage == "no-tokens":
        (folder / "tokens.txt").unlink()
    elif damage == "no-lexicon":
        (folder / "lexicon.txt").unlink()
    elif damage == "corrupt":
        (folder / "model.onnx").write_bytes(b"\x08\x07not a protobuf" * 50)
    elif damage == "empty":
        (folder / "model.onnx").write_bytes(b"")
    elif damage == "bad-fst":
        (folder / "number.fst").write_bytes(b"not an FST" * 10)
    renderer = make_renderer("neural", neural_model_dir=folder)
    with pytest.raises(NeuralError, match=expected) as caught:
        renderer.render("你好。")
    assert str(unavailable_reason(folder)) == str(caught.value)


def test_not_configured(make_renderer: Callable[..., Renderer]) -> None:
    with pytest.raises(NeuralError, match="DALABA_NEURAL_MODEL_DIR"):
        make_renderer("neural").render("你好。")
    assert "DALABA_NEURAL_MODEL_DIR" in str(unavailable_reason(None))


def test_availability(model_dir: Path) -> None:
    assert unavailable_reason(model_dir) is None
    assert check_model(model_dir).model == model_dir / "model.onnx"


def test_a_single_differently_named_model_is_found(tmp_path: Path) -> None:
    folder = write_tiny_vits(tmp_path / "vits-zh-aishell3")
    (folder / "model.onnx").rename(folder / "vits-aishell3.onnx")
    assert locate_model(folder).model.name == "vits-aishell3.onnx"
    (folder / "vits-aishell3.int8.onnx").write_bytes(b"x")
    with pytest.raises(NeuralError, match="多个 .onnx 文件.*改名为 model.onnx"):
        locate_model(folder)


def test_auto_prefers_neural_when_edge_fails(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], model_dir: Path
) -> None:
    renderer = make_renderer("auto", neural_model_dir=model_dir)
    edge.fail(Fault.FORBIDDEN, times=None)
    clip = renderer.render("请注意防火。")
    assert clip.engine == "neural"
    assert str(clip.fallback) == "在线语音不可用：服务拒绝访问（HTTP 403），已改用离线神经语音"
    again = renderer.render("你好。")  # cooling down: straight to the neural model
    assert again.engine == "neural" and "刚才失败" in str(again.fallback)
    edge.heal()


def test_auto_prefers_edge(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], model_dir: Path
) -> None:
    clip = make_renderer("auto", neural_model_dir=model_dir).render("请注意防火。")
    assert clip.engine == "edge" and clip.fallback_reason is None


def test_auto_falls_back_to_espeak_when_the_model_is_broken(
    edge: FakeEdgeServer, make_renderer: Callable[..., Renderer], tmp_path: Path
) -> None:
    folder = write_tiny_vits(tmp_path / "model")
    (folder / "model.onnx").write_bytes(b"garbage")
    renderer = make_renderer("auto", neural_model_dir=folder)
    edge.fail(Fault.FORBIDDEN, times=None)
    clip = renderer.render("请注意防火。")
    assert clip.engine == "offline" and clip.neural_model is None
    reason = str(clip.fallback)
    assert reason.startswith("在线语音不可用：服务拒绝访问（HTTP 403）；离线神经语音不可用：")
    assert "离线神经语音模型无法使用" in reason and reason.endswith("已改用离线语音")
    edge.heal()


def test_one_synthesis_at_a_time(neural: Renderer, monkeypatch: pytest.MonkeyPatch) -> None:
    from audio.neural import NeuralEngine

    active: list[str] = []
    overlaps: list[int] = []
    real_load = NeuralEngine._load

    class Watched:
        """The loaded model, noting how many generate() calls run at once."""

        def __init__(self, tts: Any) -> None:
            self.tts = tts
            self.sample_rate = tts.sample_rate

        def generate(self, text: str, **kwargs: Any) -> Any:
            active.append(text)
            overlaps.append(len(active))
            try:
                time.sleep(0.05)  # long enough for an unserialised thread to enter
                return self.tts.generate(text, **kwargs)
            finally:
                active.remove(text)

    monkeypatch.setattr(NeuralEngine, "_load", lambda self: Watched(real_load(self)))
    texts = ["第一条。", "第二条。", "第三条。", "今天的广播内容。"]
    threads = [threading.Thread(target=neural.render, args=(t,)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(overlaps) == len(texts) and max(overlaps) == 1
    assert 1 <= neural.neural.num_threads == default_threads() <= 4


def test_renderers_share_one_loaded_model(
    make_renderer: Callable[..., Renderer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sherpa_onnx

    folder = write_tiny_vits(tmp_path / "model", hop=1_200)
    loads: list[object] = []
    real = sherpa_onnx.OfflineTts

    def counting(config: object) -> object:
        loads.append(config)
        return real(config)

    monkeypatch.setattr(sherpa_onnx, "OfflineTts", counting)
    # the web app builds a renderer per request: the model must not load per request
    for text in ("第一条。", "第二条。", "第三条。"):
        assert make_renderer("neural", neural_model_dir=folder).render(text).engine == "neural"
    assert len(loads) == 1
