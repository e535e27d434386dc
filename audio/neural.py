"""An offline neural voice: a Chinese VITS, Matcha or Kokoro model run by sherpa-onnx.

``dalaba voices install`` puts a model from the catalogue (:mod:`audio.catalogue`) under the
data folder; an admin may also point ``DALABA_NEURAL_MODEL_DIR`` at a folder. The family is
read from the model's own metadata (``model_type``), with the folder's files as a fallback::

    VITS    model.onnx (or the folder's only *.onnx), tokens.txt, lexicon.txt
    Matcha  model-steps-3.onnx (acoustic model), a vocoder (vocos-*.onnx, hifigan*.onnx or
            vocoder.onnx), tokens.txt, lexicon.txt
    Kokoro  model.onnx, voices.bin (one style per speaker), tokens.txt, lexicon-zh.txt
            (and lexicon-us-en.txt for English words), or lexicon.txt
    all     dict/ (jieba, optional), *.fst (sherpa-onnx's text-normalisation rules, applied
            phone, date, number, others by name, new_heteronym last)

Piper folders (a VITS or Matcha model with ``espeak-ng-data/`` instead of a lexicon) are
refused: sherpa-onnx 2.x no longer reads ``espeak-ng-data`` (it ignores ``data_dir`` and
expects phonemes from an external phonemizer), so such a folder produces no audio.

sherpa-onnx ends the whole process (``exit(-1)``) on several kinds of broken folder
(missing metadata, a dictionary the model does not expect, an unknown language), so a
model is first loaded and tried once in a child process; only a model that passed this
probe is loaded here. The result is remembered per model identity (a SHA-256 of the
files that determine the sound), which also enters the cache key of every clip.

A multi-speaker model speaks each whitelisted voice with its own speaker: the speakers
named in the folder's ``dalaba-model.json`` (written by the installer from the
catalogue), matched by gender and menu order; without that file, the model's speakers in
order. The chosen speaker id is part of every clip's cache key.

One synthesis runs at a time per process (VITS keeps both cores of a township PC busy);
inside it onnxruntime uses :func:`default_threads` threads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Literal

from audio.engines import Speech, pcm_speech
from audio.errors import N_, NeuralError, Reason
from audio.subtitles import Cue
from audio.voices import VOICES, Voice

__all__ = [
    "FAMILIES",
    "MODEL_FILE",
    "NeuralEngine",
    "NeuralModel",
    "Speaker",
    "check_model",
    "default_threads",
    "locate_model",
    "Trial",
    "probe",
    "read_onnx_metadata",
    "unavailable_reason",
]

Family = Literal["vits", "matcha", "kokoro"]
FAMILIES: tuple[Family, ...] = ("vits", "matcha", "kokoro")
MODEL_FILE = "model.onnx"
MATCHA_FILE = "model-steps-3.onnx"
TOKENS_FILE = "tokens.txt"
LEXICON_FILE = "lexicon.txt"
VOICES_FILE = "voices.bin"
DICT_DIR = "dict"
ESPEAK_DATA_DIR = "espeak-ng-data"
DESCRIPTION_FILE = "dalaba-model.json"
"""Written by the installer: the catalogue name, family and named speakers of the folder."""
PROBE_TEXT = "你好。"
"""Spoken by the probe: every Chinese model's lexicon has these two characters."""
PROBE_TIMEOUT_S = 300.0
_FST_ORDER = (
    "phone.fst", "phone-zh.fst", "date.fst", "date-zh.fst", "number.fst", "number-zh.fst"
)  # fmt: skip
"""Rule FSTs that go first, in this order (``-zh`` names: matcha-icefall-zh-en); ``new_heteronym.fst`` goes last.

FST archives (``*.far``, e.g. the 181 MB ``rule.far`` of vits-zh-aishell3) are not
loaded: :func:`audio.spoken_text` has normalised the text already, and memory is short."""
MAX_THREADS = 4

_synthesis_lock = threading.Lock()
"""One synthesis (or model load) at a time in this process."""
_loaded: tuple[str, int, Any] | None = None
"""(identity, threads, sherpa_onnx.OfflineTts): the one model this process keeps loaded,
shared by every renderer (the web app makes a renderer per request)."""
_cache_lock = threading.Lock()
_identities: dict[tuple[object, ...], str] = {}
_probes: dict[str, Reason | None] = {}
"""Model identity → ``None`` (the probe passed) or why it failed."""


def default_threads() -> int:
    """onnxruntime threads for one synthesis: the cores this process may use, at most 4."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, cores))


def _varint(handle: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        byte = handle.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, without loading its graph.

    Walks the top level of the ``ModelProto`` message (field 14 is ``metadata_props``,
    each a ``StringStringEntryProto`` of key 1 and value 2) and seeks past every other
    field, so a 300 MB model costs a few reads.

    Raises:
        ValueError: the file is not a protobuf message (a truncated or foreign file).
    """
    found: dict[str, str] = {}
    with path.open("rb") as handle:
        size = path.stat().st_size
        while handle.tell() < size:
            tag = _varint(handle)
            if tag is None:
                break
            number, wire = tag >> 3, tag & 7
            if wire == 0:
                _varint(handle)
            elif wire == 1:
                handle.seek(8, os.SEEK_CUR)
            elif wire == 5:
                handle.seek(4, os.SEEK_CUR)
            elif wire == 2:
                length = _varint(handle)
                if length is None or handle.tell() + length > size:
                    raise ValueError("truncated field")
                if number != 14:
                    handle.seek(length, os.SEEK_CUR)
                    continue
                entry = handle.read(length)
                key = value = ""
                offset = 0
                while offset < len(entry):
                    field_tag = entry[offset]
                    field_len, used = _decode_varint(entry, offset + 1)
                    start = offset + 1 + used
                    text = entry[start : start + field_len].decode("utf-8", "replace")
                    if field_tag >> 3 == 1:
                        key = text
                    elif field_tag >> 3 == 2:
                        value = text
                    offset = start + field_len
                found[key] = value
            else:
                raise ValueError(f"wire type {wire}")
    return found


def _decode_varint(data: bytes, offset: int) -> tuple[int, int]:
    shift = result = used = 0
    while offset + used < len(data):
        byte = data[offset + used]
        used += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
    return result, used


@dataclass(frozen=True)
class Speaker:
    """One speaker of a model.

    Attributes:
        sid: the speaker id sherpa-onnx takes.
        label: the name shown in voice menus (from the catalogue), e.g. ``"Kokoro zf_001"``.
        gender: ``female``, ``male`` or ``None`` when nobody has said.
    """

    sid: int
    label: str
    gender: Literal["female", "male"] | None = None


@dataclass(frozen=True)
class NeuralModel:
    """A model folder that has every file its family needs.

    Attributes:
        folder: the folder.
        family: ``vits``, ``matcha`` or ``kokoro``.
        model: the ONNX network (Matcha: the acoustic model).
        tokens: ``tokens.txt``.
        lexicons: the lexicon files, in the order sherpa-onnx reads them.
        vocoder: Matcha's vocoder, else ``None``.
        voices: Kokoro's ``voices.bin``, else ``None``.
        dict_dir: ``dict/`` for jieba models, else ``None``.
        rule_fsts: text-normalisation FSTs, in the order they apply.
        speakers: the speakers voices map onto (at least one).
        name: the catalogue name from ``dalaba-model.json``, else the folder's name.
        identity: SHA-256 over all of the above (names and contents).
    """

    folder: Path
    family: Family
    model: Path
    tokens: Path
    lexicons: tuple[Path, ...]
    vocoder: Path | None
    voices: Path | None
    dict_dir: Path | None
    rule_fsts: tuple[Path, ...]
    speakers: tuple[Speaker, ...]
    name: str
    identity: str

    @property
    def lexicon(self) -> Path | None:
        """The first lexicon file (the only one of VITS and Matcha models)."""
        return self.lexicons[0] if self.lexicons else None

    def files(self) -> list[Path]:
        """Every file whose content shapes the sound."""
        found = [self.model, self.tokens, *self.lexicons, *self.rule_fsts]
        found += [p for p in (self.vocoder, self.voices) if p is not None]
        description = self.folder / DESCRIPTION_FILE
        if description.is_file():
            found.append(description)
        if self.dict_dir is not None:
            found += sorted(p for p in self.dict_dir.rglob("*") if p.is_file())
        return found

    def speaker_for(self, voice: Voice) -> Speaker:
        """The speaker a whitelisted voice speaks with: its own, where the model has enough.

        The n-th voice of a gender in the menu takes the n-th speaker of that gender; where
        no speaker's gender is known, the n-th voice of the menu takes the n-th speaker.
        Both wrap around when there are fewer speakers than voices.
        """
        same = [s for s in self.speakers if s.gender == voice.gender]
        if same:
            names = [v.name for v in VOICES.values() if v.gender == voice.gender]
            pool = same
        else:
            names = list(VOICES)
            pool = [s for s in self.speakers if s.gender is None] or list(self.speakers)
        index = names.index(voice.name) if voice.name in names else 0
        return pool[index % len(pool)]

    def config(self, num_threads: int) -> Any:
        """The ``sherpa_onnx.OfflineTtsConfig`` for this folder."""
        import sherpa_onnx

        lexicon = ",".join(str(p) for p in self.lexicons)
        dict_dir = str(self.dict_dir or "")
        if self.family == "matcha":
            family = {
                "matcha": sherpa_onnx.OfflineTtsMatchaModelConfig(
                    acoustic_model=str(self.model),
                    vocoder=str(self.vocoder or ""),
                    lexicon=lexicon,
                    tokens=str(self.tokens),
                    dict_dir=dict_dir,
                )
            }
        elif self.family == "kokoro":
            family = {
                "kokoro": sherpa_onnx.OfflineTtsKokoroModelConfig(
                    model=str(self.model),
                    voices=str(self.voices or ""),
                    tokens=str(self.tokens),
                    lexicon=lexicon,
                    dict_dir=dict_dir,
                )
            }
        else:
            family = {
                "vits": sherpa_onnx.OfflineTtsVitsModelConfig(
                    model=str(self.model),
                    lexicon=lexicon,
                    tokens=str(self.tokens),
                    dict_dir=dict_dir,
                )
            }
        return sherpa_onnx.OfflineTtsConfig(
            model=sherpa_onnx.OfflineTtsModelConfig(num_threads=num_threads, **family),
            rule_fsts=",".join(str(p) for p in self.rule_fsts),
            max_num_sentences=1,
        )


def _require_sherpa() -> None:
    try:
        import sherpa_onnx  # noqa: F401
    except ImportError as exc:
        raise NeuralError(
            N_("未安装 sherpa-onnx，无法使用离线神经语音：请运行 {command}"),
            command="pip install 'dalaba[neural]'",
        ) from exc


_VOCODER_NAMES = ("vocos-*.onnx", "hifigan*.onnx", "vocoder*.onnx")


def _vocoders(root: Path) -> list[Path]:
    return sorted({p for pattern in _VOCODER_NAMES for p in root.glob(pattern) if p.is_file()})


def _missing(root: Path, file: str) -> NeuralError:
    return NeuralError(N_("模型文件夹 {folder} 中缺少 {file}"), folder=str(root), file=file)


def _single_model(root: Path, vocoders: list[Path]) -> Path:
    """``model.onnx``, or the folder's only other ``*.onnx`` (vocoders aside)."""
    model = root / MODEL_FILE
    if model.is_file():
        return model
    candidates = sorted(p.name for p in root.glob("*.onnx") if p.is_file() and p not in vocoders)
    if len(candidates) == 1:
        return root / candidates[0]
    if candidates:
        raise NeuralError(
            N_(
                "模型文件夹 {folder} 中有多个 .onnx 文件（{files}），请把要使用的那个改名为 {model}"
            ),
            folder=str(root),
            files="、".join(candidates),
            model=MODEL_FILE,
        )
    raise _missing(root, MODEL_FILE)


def _piper(root: Path) -> NeuralError:
    return NeuralError(
        N_(
            "{folder} 是 piper 类模型（靠 {data}/ 注音，没有 {lexicon}）："
            "sherpa-onnx 2.x 不再读取 {data}，这样的模型不能朗读。"
            "请改用 dalaba voices list 中列出的模型"
        ),
        folder=str(root),
        data=ESPEAK_DATA_DIR,
        lexicon=LEXICON_FILE,
    )


def _description(root: Path) -> dict[str, Any]:
    path = root / DESCRIPTION_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise NeuralError(
            N_("无法读取模型说明 {file}：{detail}"), file=str(path), detail=str(exc)
        ) from exc
    return data if isinstance(data, dict) else {}


def _speakers(meta: dict[str, str], described: dict[str, Any]) -> tuple[Speaker, ...]:
    """The model's speakers: the catalogue's named ones (resolved to ids), else all of them."""
    try:
        count = max(1, int(meta.get("n_speakers", "1") or "1"))
    except ValueError:
        count = 1
    names = [n.strip() for n in meta.get("speaker_names", "").split(",") if n.strip()]
    listed = described.get("speakers") or []
    chosen: list[Speaker] = []
    for entry in listed if isinstance(listed, list) else []:
        if not isinstance(entry, dict):
            continue
        key = str(entry.get("key", ""))
        sid = names.index(key) if key in names else int(key) if key.isdigit() else None
        if sid is None or sid >= count:
            continue
        gender = entry.get("gender")
        chosen.append(
            Speaker(
                sid,
                str(entry.get("label") or key),
                gender if gender in ("female", "male") else None,
            )
        )
    if chosen:
        return tuple(chosen)
    if count == 1:
        return (Speaker(0, names[0] if names else "0"),)
    return tuple(Speaker(i, names[i] if i < len(names) else str(i)) for i in range(count))


def _family(meta: dict[str, str], root: Path) -> Family:
    kind = meta.get("model_type", "").lower()
    if "kokoro" in kind or (root / VOICES_FILE).is_file():
        return "kokoro"
    if "matcha" in kind or any(root.glob("model-steps-*.onnx")):
        return "matcha"
    return "vits"


def locate_model(folder: Path | str | None) -> NeuralModel:
    """Check a model folder's files (without loading it) and compute its identity.

    Args:
        folder: the folder, usually ``DALABA_NEURAL_MODEL_DIR`` or an installed model.

    Returns:
        The model's family, files, speakers and identity.

    Raises:
        NeuralError: not set, missing, lacking a file its family needs, or a piper
            folder (which sherpa-onnx 2.x cannot speak with); the message says which.
    """
    if folder is None or not str(folder).strip():
        raise NeuralError(N_("未设置离线神经语音模型文件夹（DALABA_NEURAL_MODEL_DIR）"))
    root = Path(folder).expanduser()
    if not root.exists():
        raise NeuralError(N_("离线神经语音模型文件夹不存在：{folder}"), folder=str(root))
    if not root.is_dir():
        raise NeuralError(N_("离线神经语音模型路径不是文件夹：{folder}"), folder=str(root))
    vocoders = _vocoders(root)
    matcha = sorted(p for p in root.glob("model-steps-*.onnx") if p.is_file())
    if (root / MATCHA_FILE).is_file():
        model = root / MATCHA_FILE
    elif len(matcha) == 1:
        model = matcha[0]
    else:
        model = _single_model(root, vocoders)
    if model.stat().st_size == 0:
        raise NeuralError(N_("模型文件 {file} 是空文件，请重新下载"), file=str(model))
    try:
        meta = read_onnx_metadata(model)
    except (OSError, ValueError):
        meta = {}  # not readable here: sherpa-onnx's probe says why
    family = _family(meta, root)
    tokens = root / TOKENS_FILE
    if not tokens.is_file():
        raise _missing(root, TOKENS_FILE)
    lexicon = root / LEXICON_FILE
    lexicons: tuple[Path, ...] = (lexicon,) if lexicon.is_file() else ()
    vocoder = voices = None
    if family == "kokoro":
        voices = root / VOICES_FILE
        if not voices.is_file():
            raise _missing(root, VOICES_FILE)
        if not lexicons:
            # English words come from lexicon-us-en.txt, Chinese from lexicon-zh.txt.
            named = sorted(p for p in root.glob("lexicon-*.txt") if p.is_file())
            lexicons = tuple(sorted(named, key=lambda p: (p.name != "lexicon-us-en.txt", p.name)))
        if not lexicons:
            raise NeuralError(
                N_(
                    "Kokoro 模型文件夹 {folder} 中缺少词典（lexicon-zh.txt 等）："
                    "sherpa-onnx 2.x 不再读取 {data}，只按词典注音"
                ),
                folder=str(root),
                data=ESPEAK_DATA_DIR,
            )
    elif not lexicons:
        if (root / ESPEAK_DATA_DIR).is_dir() or meta.get("has_espeak") == "1":
            raise _piper(root)
        raise _missing(root, LEXICON_FILE)
    if family == "matcha":
        if not vocoders:
            raise NeuralError(
                N_("Matcha 模型文件夹 {folder} 中缺少声码器（如 vocos-22khz-univ.onnx）"),
                folder=str(root),
            )
        vocoder = vocoders[0]
    described = _description(root)
    dict_dir = root / DICT_DIR
    partial = NeuralModel(
        folder=root,
        family=family,
        model=model,
        tokens=tokens,
        lexicons=lexicons,
        vocoder=vocoder,
        voices=voices,
        dict_dir=dict_dir if dict_dir.is_dir() else None,
        rule_fsts=tuple(sorted((p for p in root.glob("*.fst") if p.is_file()), key=_fst_rank)),
        speakers=_speakers(meta, described),
        name=str(described.get("name") or root.name),
        identity="",
    )
    try:
        identity = _identity(partial)
    except OSError as exc:
        raise NeuralError(
            N_("无法读取模型文件夹 {folder}：{detail}"),
            folder=str(root),
            detail=str(exc.strerror or exc),
        ) from exc
    return dataclasses.replace(partial, identity=identity)


def _fst_rank(path: Path) -> tuple[int, str]:
    if path.name in _FST_ORDER:
        return _FST_ORDER.index(path.name), path.name
    return (len(_FST_ORDER) + (path.name == "new_heteronym.fst"), path.name)


def _identity(model: NeuralModel) -> str:
    """SHA-256 over the files' names and contents, rehashed only when a file changed."""
    files = model.files()
    fingerprint: tuple[object, ...] = tuple(
        (str(p), st.st_size, st.st_mtime_ns) for p in files for st in (p.stat(),)
    )
    with _cache_lock:
        known = _identities.get(fingerprint)
    if known is not None:
        return known
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(model.folder).as_posix().encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    identity = digest.hexdigest()
    with _cache_lock:
        _identities[fingerprint] = identity
    return identity


def check_model(folder: Path | str | None) -> NeuralModel:
    """Check a model folder fully: its files, then a trial load and synthesis in a child.

    The trial runs once per model identity and process; a folder whose files change is
    tried again.

    Raises:
        NeuralError: sherpa-onnx is not installed, or the folder is missing, incomplete,
            or cannot be loaded or spoken with; the message says why.
    """
    _require_sherpa()
    model = locate_model(folder)
    with _cache_lock:
        known = model.identity in _probes
        failure = _probes.get(model.identity)
    if not known:
        failure = _probe(model)
        with _cache_lock:
            _probes[model.identity] = failure
    if failure is not None:
        raise NeuralError(
            N_("离线神经语音模型无法使用（{folder}）：{reason}"),
            folder=str(model.folder),
            reason=failure,
        )
    return model


def unavailable_reason(folder: Path | str | None) -> Reason | None:
    """Why the neural engine cannot speak with ``folder`` now, or ``None`` if it can.

    For menus and status pages: it never raises for a bad folder.
    """
    try:
        check_model(folder)
    except NeuralError as exc:
        return exc.message
    return None


@dataclass(frozen=True)
class Trial:
    """What a trial load in a child process measured.

    Attributes:
        family: the model's family.
        sample_rate: the model's sample rate (Hz).
        speakers: how many speakers the model has.
        audio_s: seconds of speech the trial sentence gave.
        compute_s: seconds the synthesis took (loading excluded).
        load_s: seconds the model took to load.
    """

    family: str
    sample_rate: int
    speakers: int
    audio_s: float
    compute_s: float
    load_s: float

    @property
    def rtf(self) -> float:
        """Real-time factor: compute time per second of speech (below 1 is faster than real time)."""
        return self.compute_s / self.audio_s if self.audio_s else float("inf")


def probe(folder: Path | str, text: str = PROBE_TEXT, threads: int = 1) -> Trial:
    """Load the model in ``folder`` and speak ``text`` in a child process, measuring it.

    Raises:
        NeuralError: the folder is incomplete, or the child failed (the reason is the
            child's own message, or sherpa-onnx's last line).
    """
    _require_sherpa()
    model = locate_model(folder)
    result = _run_child(model, text, threads)
    if isinstance(result, Reason):
        raise NeuralError(
            N_("离线神经语音模型无法使用（{folder}）：{reason}"),
            folder=str(model.folder),
            reason=result,
        )
    return result


def _probe(model: NeuralModel) -> Reason | None:
    """Load ``model`` and speak :data:`PROBE_TEXT` in a child process; ``None`` if it worked."""
    result = _run_child(model, PROBE_TEXT, 1)
    return result if isinstance(result, Reason) else None


def _run_child(model: NeuralModel, text: str, threads: int) -> Trial | Reason:
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "audio.neural", str(model.folder), text, str(threads)],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Reason.of(N_("试加载超过 {seconds} 秒仍未完成"), seconds=f"{PROBE_TIMEOUT_S:.0f}")
    except OSError as exc:
        return Reason.of(N_("无法启动试加载进程：{detail}"), detail=str(exc.strerror or exc))
    if done.returncode == 0:
        try:
            return Trial(**json.loads(done.stdout.strip().splitlines()[-1]))
        except (ValueError, TypeError, IndexError):
            return Reason(done.stdout.strip()[-300:])
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    if not lines:
        return Reason.of(N_("进程退出码 {code}"), code=done.returncode)
    if "_Map_base::at" in lines[-1]:
        return Reason.of(
            N_("{file} 与模型不匹配，缺少前端需要的符号（如 sil、eos 或空格）"), file=TOKENS_FILE
        )
    if lines[-1].startswith('{"msgid"'):
        return Reason.loads(lines[-1])  # the child's own message (see _probe_main)
    # sherpa-onnx's or the interpreter's last line: technical detail, shown as is.
    return Reason(lines[-1][:300])


def _probe_main(folder: str, text: str = PROBE_TEXT, threads: int = 1) -> int:
    """The child's side of :func:`_probe`: load, speak, report on stdout."""
    import sherpa_onnx

    model = locate_model(folder)
    started = time.perf_counter()
    tts = sherpa_onnx.OfflineTts(model.config(threads))
    loaded = time.perf_counter()
    audio = tts.generate(text, sid=model.speakers[0].sid, speed=1.0)
    done = time.perf_counter()
    if not len(audio.samples):
        failure = Reason.of(
            N_("模型无法朗读测试句“{text}”（词典或 {file} 不完整）"),
            text=text,
            file=TOKENS_FILE,
        )
        print(failure.dumps(), file=sys.stderr)
        return 2
    trial = Trial(
        family=model.family,
        sample_rate=int(tts.sample_rate),
        speakers=int(tts.num_speakers),
        audio_s=len(audio.samples) / int(tts.sample_rate),
        compute_s=done - loaded,
        load_s=loaded - started,
    )
    print(json.dumps(dataclasses.asdict(trial)))
    return 0


def _to_pcm16(samples: Sequence[float]) -> bytes:
    """Float samples in −1…1 as 16-bit little-endian PCM, clipped."""
    return array(
        "h", (int(32767 * (1.0 if s > 1.0 else -1.0 if s < -1.0 else s)) for s in samples)
    ).tobytes()


class NeuralEngine:
    """A Chinese voice through sherpa-onnx (VITS, Matcha or Kokoro) from one model folder.

    Each whitelisted voice speaks with its own speaker of a multi-speaker model
    (:meth:`NeuralModel.speaker_for`); a one-speaker model speaks every voice alike.

    Args:
        folder: the model folder, or ``None`` when none is configured (every use then
            raises :class:`NeuralError` saying so).
        num_threads: onnxruntime threads; :func:`default_threads` if ``None``.
    """

    name = "neural"

    def __init__(self, folder: Path | str | None, num_threads: int | None = None) -> None:
        self.folder = Path(folder).expanduser() if folder else None
        self.num_threads = num_threads or default_threads()

    @property
    def configured(self) -> bool:
        """Whether a model folder was given at all."""
        return self.folder is not None

    def model(self) -> NeuralModel:
        """The folder's files and identity (cheap: files are rehashed only when changed).

        Raises:
            NeuralError: no folder configured, or a file is missing.
        """
        return locate_model(self.folder)

    def synthesize(self, chunks: Sequence[str], voice: Voice, rate: int, out: Path) -> Speech:
        """Speak each chunk with the model into one WAV file, one cue per chunk.

        Raises:
            NeuralError: sherpa-onnx is missing, the model cannot be loaded, fails, or
                produced no audio.
        """
        speed = 1 + rate / 100
        with _synthesis_lock:
            tts = self._load()
            sid = self.model().speaker_for(voice).sid
            sample_rate = int(tts.sample_rate)
            pcm = bytearray()
            cues = []
            started = time.perf_counter()
            for chunk in chunks:
                start = len(pcm) / 2 / sample_rate
                try:
                    audio = tts.generate(chunk, sid=sid, speed=speed)
                except (RuntimeError, IndexError, ValueError) as exc:
                    raise NeuralError(
                        N_("离线神经语音合成失败：{detail}"), detail=f"{type(exc).__name__}: {exc}"
                    ) from exc
                if len(audio.samples):
                    pcm += _to_pcm16(audio.samples)
                    cues.append(Cue(start, len(pcm) / 2 / sample_rate, chunk))
            compute_s = time.perf_counter() - started
        if not pcm:
            raise NeuralError(N_("离线神经语音没有生成音频（文本中的字可能都不在模型词典里）"))
        return pcm_speech(out, pcm, sample_rate, cues, compute_s=compute_s)

    def _load(self) -> Any:
        """The loaded model, (re)loaded when the folder's files changed; caller holds the lock."""
        global _loaded
        model = check_model(self.folder)
        if _loaded is None or _loaded[:2] != (model.identity, self.num_threads):
            import sherpa_onnx

            _loaded = None  # let the old model go before the new one takes its memory
            try:
                tts = sherpa_onnx.OfflineTts(model.config(self.num_threads))
            except RuntimeError as exc:
                raise NeuralError(
                    N_("离线神经语音模型无法加载（{folder}）：{detail}"),
                    folder=str(model.folder),
                    detail=str(exc),
                ) from exc
            _loaded = (model.identity, self.num_threads, tts)
        return _loaded[2]


if __name__ == "__main__":
    args = sys.argv[1:] + [PROBE_TEXT, "1"][len(sys.argv) - 2 :]
    sys.exit(_probe_main(args[0], args[1], int(args[2])))
