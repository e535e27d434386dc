"""A tiny VITS model folder for sherpa-onnx, generated at test time (no download).

The ONNX graph has the inputs, output and metadata sherpa-onnx's offline VITS model
reads (``sherpa-onnx/csrc/offline-tts-vits-model.cc``): inputs ``x`` (int64 [1, T]),
``x_length`` (int64 [1]), ``noise_scale``, ``length_scale``, ``noise_scale_w`` (float [1])
and ``sid`` (int64 [1]); output ``y`` (float [1, 1, N]); metadata ``model_type``,
``sample_rate``, ``add_blank``, ``n_speakers``, ``language``, ``punctuation``,
``comment`` and ``jieba``. Instead of a voice it sings a sine: ``hop × length_scale``
samples per token, so longer texts and slower rates give longer audio, with a pitch
(220–415 Hz) that depends on the token ids, so different texts sound different.

The Chinese lexicon frontend maps each character through ``lexicon.txt`` to tokens of
``tokens.txt``, and looks up the blank (``" "``), ``sil`` and ``eos`` tokens itself.

:func:`write_tiny_matcha` and :func:`write_tiny_kokoro` write the other two families the
same way. Matcha (``offline-tts-matcha-model.cc``, ``offline-tts-matcha-impl.h``): an
acoustic model with inputs ``x``, ``x_length``, ``noise_scale``, ``length_scale`` (and
``sid``), metadata ``sample_rate``, ``n_speakers``, ``jieba``, ``has_espeak``,
``use_eos_bos``, ``pad_id`` and ``voice``; its output goes through a vocoder whose
metadata ``model_type`` is ``hifigan`` (``vocoder.cc``: one input, the first output is the
waveform). Kokoro (``offline-tts-kokoro-model.cc``): inputs ``tokens``, ``style`` [1, D] and
``speed`` [1]; ``voices.bin`` holds ``n_speakers × max_len × D`` floats, and the metadata
``style_dim`` (``max_len,1,D``), ``sample_rate``, ``n_speakers``, ``has_espeak``, ``version``
and ``voice``. Here the style row picks the pitch, so each speaker sounds different.
"""

from __future__ import annotations

import math
from array import array
from pathlib import Path

CHARACTERS = "各位村民请注意明天上午八点在委会开防火你好大喇叭测试第一二三条今的广播内容谢收听"
"""Every character the tiny lexicon knows (the probe speaks 你好)."""
PUNCTUATION = ["，", "。", "！", "？", "；", "：", "、"]
SAMPLE_RATE = 16_000
HOP = 1_600
"""Samples per token at ``length_scale`` 1: a tenth of a second."""


def write_tiny_vits(
    folder: Path,
    *,
    hop: int = HOP,
    sample_rate: int = SAMPLE_RATE,
    metadata: dict[str, str | None] | None = None,
    eos: bool = True,
) -> Path:
    """Write ``model.onnx``, ``tokens.txt`` and ``lexicon.txt`` into ``folder``.

    Args:
        folder: created if missing.
        hop: samples per token; another value is another model.
        sample_rate: the model's sample rate (metadata and the sine's time base).
        metadata: changes to the metadata; a ``None`` value removes the key.
        eos: ``False`` leaves ``eos`` out of ``tokens.txt``: sherpa-onnx's Chinese
            frontend, finding ``sil``, then looks ``eos`` up and fails.

    Returns:
        ``folder``.
    """
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.INT64, [1, "T"]),
        helper.make_tensor_value_info("x_length", TensorProto.INT64, [1]),
        helper.make_tensor_value_info("noise_scale", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("length_scale", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("noise_scale_w", TensorProto.FLOAT, [1]),
        helper.make_tensor_value_info("sid", TensorProto.INT64, [1]),
    ]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, "N"])
    node = helper.make_node
    nodes = [
        # N = T · hop · length_scale samples
        node("Shape", ["x"], ["shape"]),
        node("Gather", ["shape", "one"], ["tokens"], axis=0),
        node("Cast", ["tokens"], ["tokens_f"], to=TensorProto.FLOAT),
        node("Squeeze", ["length_scale"], ["scale"]),
        node("Mul", ["tokens_f", "hop"], ["unscaled"]),
        node("Mul", ["unscaled", "scale"], ["count"]),
        node("Range", ["zero", "count", "step"], ["t"]),
        # frequency = 220 + 5 · (Σx mod 40) Hz
        node("ReduceSum", ["x"], ["x_sum"], keepdims=0),
        node("Mod", ["x_sum", "forty"], ["x_mod"]),
        node("Cast", ["x_mod"], ["x_mod_f"], to=TensorProto.FLOAT),
        node("Mul", ["x_mod_f", "five"], ["offset"]),
        node("Add", ["offset", "base"], ["frequency"]),
        # y = 0.5 · sin(2π · frequency · t / sample_rate)
        node("Mul", ["t", "frequency"], ["cycles"]),
        node("Mul", ["cycles", "radians"], ["phase"]),
        node("Sin", ["phase"], ["wave"]),
        node("Mul", ["wave", "amplitude"], ["scaled"]),
        node("Reshape", ["scaled", "out_shape"], ["y"]),
    ]

    def scalar(name: str, value: float, kind: int = TensorProto.FLOAT) -> onnx.TensorProto:
        return helper.make_tensor(name, kind, [], [value])

    initializers = [
        scalar("one", 1, TensorProto.INT64),
        scalar("hop", float(hop)),
        scalar("zero", 0.0),
        scalar("step", 1.0),
        scalar("forty", 40, TensorProto.INT64),
        scalar("five", 5.0),
        scalar("base", 220.0),
        scalar("radians", 2 * math.pi / sample_rate),
        scalar("amplitude", 0.5),
        helper.make_tensor("out_shape", TensorProto.INT64, [3], [1, 1, -1]),
    ]
    graph = helper.make_graph(nodes, "tiny-vits", inputs, [output], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    meta: dict[str, str | None] = {
        "model_type": "vits",
        "sample_rate": str(sample_rate),
        "add_blank": "0",
        "n_speakers": "1",
        "language": "Chinese",
        "punctuation": " ".join(PUNCTUATION),
        "comment": "dalaba tiny test model",
        "jieba": "0",
    }
    meta.update(metadata or {})
    for key, value in meta.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    onnx.save(model, str(folder / "model.onnx"))

    special = [" ", "sil", "eos"] if eos else [" ", "sil"]
    tokens = special + PUNCTUATION + [f"c{i}" for i in range(len(CHARACTERS))]
    (folder / "tokens.txt").write_text(
        "".join(f"{token} {i}\n" for i, token in enumerate(tokens)), encoding="utf-8"
    )
    (folder / "lexicon.txt").write_text(
        "".join(f"{ch} c{i}\n" for i, ch in enumerate(CHARACTERS)), encoding="utf-8"
    )
    return folder


def _sine_model(
    inputs: list[object],
    nodes_before: list[object],
    tokens_input: str,
    scale: str,
    output: str,
    output_shape: list[int],
    hop: int,
    sample_rate: int,
    base: str = "base",
    extra_initializers: list[object] | None = None,
    metadata: dict[str, str | None] | None = None,
    name: str = "tiny",
) -> object:
    """A graph singing ``hop × scale`` samples per token, at 220 Hz + 5 Hz × (Σtokens mod 40)."""
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node
    nodes = [
        *nodes_before,
        node("Shape", [tokens_input], ["shape"]),
        node("Gather", ["shape", "one"], ["length"], axis=0),
        node("Cast", ["length"], ["length_f"], to=TensorProto.FLOAT),
        node("Mul", ["length_f", "hop"], ["unscaled"]),
        node("Mul", ["unscaled", scale], ["count"]),
        node("Range", ["zero", "count", "step"], ["t"]),
        node("ReduceSum", [tokens_input], ["x_sum"], keepdims=0),
        node("Mod", ["x_sum", "forty"], ["x_mod"]),
        node("Cast", ["x_mod"], ["x_mod_f"], to=TensorProto.FLOAT),
        node("Mul", ["x_mod_f", "five"], ["offset"]),
        node("Add", ["offset", base], ["frequency"]),
        node("Mul", ["t", "frequency"], ["cycles"]),
        node("Mul", ["cycles", "radians"], ["phase"]),
        node("Sin", ["phase"], ["wave"]),
        node("Mul", ["wave", "amplitude"], ["scaled"]),
        node("Reshape", ["scaled", "out_shape"], [output]),
    ]

    def scalar(name: str, value: float, kind: int = TensorProto.FLOAT) -> onnx.TensorProto:
        return helper.make_tensor(name, kind, [], [value])

    initializers = [
        scalar("one", 1, TensorProto.INT64),
        scalar("hop", float(hop)),
        scalar("zero", 0.0),
        scalar("step", 1.0),
        scalar("forty", 40, TensorProto.INT64),
        scalar("five", 5.0),
        scalar("radians", 2 * math.pi / sample_rate),
        scalar("amplitude", 0.5),
        helper.make_tensor("out_shape", TensorProto.INT64, [len(output_shape)], output_shape),
        *(extra_initializers or []),
    ]
    if base == "base":
        initializers.append(scalar("base", 220.0))
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N"] * len(output_shape))
    graph = helper.make_graph(nodes, name, inputs, [out], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.checker.check_model(model)
    return model


def _write_tokens_and_lexicon(folder: Path, special: list[str]) -> None:
    tokens = special + PUNCTUATION + [f"c{i}" for i in range(len(CHARACTERS))]
    (folder / "tokens.txt").write_text(
        "".join(f"{token} {i}\n" for i, token in enumerate(tokens)), encoding="utf-8"
    )
    (folder / "lexicon.txt").write_text(
        "".join(f"{ch} c{i}\n" for i, ch in enumerate(CHARACTERS)), encoding="utf-8"
    )


def write_tiny_matcha(
    folder: Path,
    *,
    hop: int = HOP,
    sample_rate: int = 22_050,
    vocoder: bool = True,
    metadata: dict[str, str | None] | None = None,
) -> Path:
    """Write a Matcha folder (``model-steps-3.onnx``, tokens, lexicon) and a HiFiGAN-type vocoder.

    Like the published ``matcha-icefall-zh-baker``: one speaker, ``jieba=1`` (the character
    lexicon frontend), the vocoder as ``vocoder.onnx`` beside the model (``vocoder=False``
    leaves it out).
    """
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    info = helper.make_tensor_value_info
    inputs = [
        info("x", TensorProto.INT64, [1, "T"]),
        info("x_length", TensorProto.INT64, [1]),
        info("noise_scale", TensorProto.FLOAT, [1]),
        info("length_scale", TensorProto.FLOAT, [1]),
    ]
    meta: dict[str, str | None] = {
        "model_type": "matcha-tts",
        "sample_rate": str(sample_rate),
        "n_speakers": "1",
        "jieba": "1",
        "has_espeak": "0",
        "use_eos_bos": "0",
        "pad_id": "0",
        "voice": "zh",
        "language": "Chinese",
        "comment": "dalaba tiny test model",
    }
    meta.update(metadata or {})
    # The "mel" is the waveform itself, [1, 1, N]; the vocoder only flattens it.
    acoustic = _sine_model(
        inputs,
        [helper.make_node("Squeeze", ["length_scale"], ["scale"])],
        "x",
        "scale",
        "mel",
        [1, 1, -1],
        hop,
        sample_rate,
        metadata=meta,
        name="tiny-matcha",
    )
    onnx.save(acoustic, str(folder / "model-steps-3.onnx"))
    if vocoder:
        mel = info("mel", TensorProto.FLOAT, [1, "C", "F"])
        audio = info("audio", TensorProto.FLOAT, [1, "N"])
        graph = helper.make_graph(
            [helper.make_node("Reshape", ["mel", "flat"], ["audio"])],
            "tiny-hifigan",
            [mel],
            [audio],
            [helper.make_tensor("flat", TensorProto.INT64, [2], [1, -1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        entry = model.metadata_props.add()
        entry.key, entry.value = "model_type", "hifigan"
        onnx.checker.check_model(model)
        onnx.save(model, str(folder / "vocoder.onnx"))
    _write_tokens_and_lexicon(folder, ["_", " ", "sil", "eos"])
    return folder


def write_tiny_kokoro(
    folder: Path,
    *,
    hop: int = HOP,
    sample_rate: int = 24_000,
    speakers: tuple[str, ...] = ("zf_001", "zf_002", "zm_009"),
    max_len: int = 64,
    dim: int = 4,
    metadata: dict[str, str | None] | None = None,
) -> Path:
    """Write a Kokoro folder: ``model.onnx``, ``voices.bin``, ``tokens.txt``, ``lexicon-zh.txt``.

    Each speaker's style rows carry its own base pitch (220 Hz + 40 Hz × speaker index) in
    their first value, which the graph adds to the pitch: speaker ids are audible.
    """
    import onnx
    from onnx import TensorProto, helper

    folder.mkdir(parents=True, exist_ok=True)
    info = helper.make_tensor_value_info
    inputs = [
        info("tokens", TensorProto.INT64, [1, "T"]),
        info("style", TensorProto.FLOAT, [1, dim]),
        info("speed", TensorProto.FLOAT, [1]),
    ]
    node = helper.make_node
    before = [
        node("Squeeze", ["speed"], ["speed_s"]),
        node("Div", ["one_f", "speed_s"], ["scale"]),
        node("Gather", ["style", "zero_i"], ["style_col"], axis=1),
        node("ReduceSum", ["style_col"], ["pitch"], keepdims=0),
    ]
    meta: dict[str, str | None] = {
        "model_type": "kokoro",
        "sample_rate": str(sample_rate),
        "n_speakers": str(len(speakers)),
        "has_espeak": "0",
        "version": "2",
        "voice": "cmn",
        "style_dim": f"{max_len},1,{dim}",
        "speaker_names": ",".join(speakers),
        "language": "Chinese",
        "comment": "dalaba tiny test model",
    }
    meta.update(metadata or {})
    model = _sine_model(
        inputs,
        before,
        "tokens",
        "scale",
        "audio",
        [-1],
        hop,
        sample_rate,
        base="pitch",
        extra_initializers=[
            helper.make_tensor("one_f", TensorProto.FLOAT, [], [1.0]),
            helper.make_tensor("zero_i", TensorProto.INT64, [1], [0]),
        ],
        metadata=meta,
        name="tiny-kokoro",
    )
    onnx.save(model, str(folder / "model.onnx"))
    styles = array("f")
    for index in range(len(speakers)):
        for _ in range(max_len):
            styles.extend([220.0 + 40.0 * index] + [0.0] * (dim - 1))
    (folder / "voices.bin").write_bytes(styles.tobytes())
    tokens = ["$", " "] + PUNCTUATION + [f"c{i}" for i in range(len(CHARACTERS))]
    (folder / "tokens.txt").write_text(
        "".join(f"{token} {i}\n" for i, token in enumerate(tokens)), encoding="utf-8"
    )
    (folder / "lexicon-zh.txt").write_text(
        "".join(f"{ch} c{i}\n" for i, ch in enumerate(CHARACTERS)), encoding="utf-8"
    )
    return folder
