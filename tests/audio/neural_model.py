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
"""

from __future__ import annotations

import math
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
