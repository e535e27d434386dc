"""An offline neural voice: a Chinese VITS model run by sherpa-onnx.

The admin downloads a model folder once and points ``DALABA_NEURAL_MODEL_DIR`` at it::

    <folder>/
        model.onnx          the VITS network (or the folder's only ``*.onnx`` file)
        tokens.txt          its symbol table
        lexicon.txt         word → tokens (Chinese models with a lexicon frontend), or
        espeak-ng-data/     phonemizer data (piper models), instead of the lexicon
        dict/               optional: jieba dictionary (models with ``jieba=1``)
        *.fst               optional: sherpa-onnx's text-normalisation rules, applied
                            phone, date, number, others by name, new_heteronym last

sherpa-onnx ends the whole process (``exit(-1)``) on several kinds of broken folder
(missing metadata, a dictionary the model does not expect, an unknown language), so a
model is first loaded and tried once in a child process; only a model that passed this
probe is loaded here. The result is remembered per model identity (a SHA-256 of the
files that determine the sound), which also enters the cache key of every clip.

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
import wave
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audio.engines import Speech
from audio.errors import N_, NeuralError, Reason
from audio.ffmpeg import atomic_path
from audio.subtitles import Cue
from audio.voices import Voice

__all__ = [
    "MODEL_FILE",
    "NeuralEngine",
    "NeuralModel",
    "check_model",
    "default_threads",
    "locate_model",
    "unavailable_reason",
]

MODEL_FILE = "model.onnx"
TOKENS_FILE = "tokens.txt"
LEXICON_FILE = "lexicon.txt"
DICT_DIR = "dict"
ESPEAK_DATA_DIR = "espeak-ng-data"
PROBE_TEXT = "你好。"
"""Spoken by the probe: every Chinese model's lexicon has these two characters."""
PROBE_TIMEOUT_S = 300.0
_FST_ORDER = ("phone.fst", "date.fst", "number.fst")
"""Rule FSTs that go first, in this order; ``new_heteronym.fst`` goes last.

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


@dataclass(frozen=True)
class NeuralModel:
    """A model folder that has every file it needs.

    Attributes:
        folder: the folder.
        model: the ONNX network.
        tokens: ``tokens.txt``.
        lexicon: ``lexicon.txt``, or ``None`` for a piper model.
        data_dir: ``espeak-ng-data/`` of a piper model, else ``None``.
        dict_dir: ``dict/`` for jieba models, else ``None``.
        rule_fsts: text-normalisation FSTs, in the order they apply.
        identity: SHA-256 over all of the above (names and contents).
    """

    folder: Path
    model: Path
    tokens: Path
    lexicon: Path | None
    data_dir: Path | None
    dict_dir: Path | None
    rule_fsts: tuple[Path, ...]
    identity: str

    def files(self) -> list[Path]:
        """Every file whose content shapes the sound."""
        found = [self.model, self.tokens, *self.rule_fsts]
        if self.lexicon is not None:
            found.append(self.lexicon)
        for extra in (self.dict_dir, self.data_dir):
            if extra is not None:
                found += sorted(p for p in extra.rglob("*") if p.is_file())
        return found

    def config(self, num_threads: int) -> Any:
        """The ``sherpa_onnx.OfflineTtsConfig`` for this folder."""
        import sherpa_onnx

        vits = sherpa_onnx.OfflineTtsVitsModelConfig(
            model=str(self.model),
            lexicon=str(self.lexicon or ""),
            tokens=str(self.tokens),
            data_dir=str(self.data_dir or ""),
            dict_dir=str(self.dict_dir or ""),
        )
        return sherpa_onnx.OfflineTtsConfig(
            model=sherpa_onnx.OfflineTtsModelConfig(vits=vits, num_threads=num_threads),
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


def locate_model(folder: Path | str | None) -> NeuralModel:
    """Check a model folder's files (without loading it) and compute its identity.

    Args:
        folder: the folder, usually ``DALABA_NEURAL_MODEL_DIR``; ``None`` if not set.

    Returns:
        The model's files and identity.

    Raises:
        NeuralError: not set, missing, or lacking a file it needs; the message says which.
    """
    if folder is None or not str(folder).strip():
        raise NeuralError(N_("未设置离线神经语音模型文件夹（DALABA_NEURAL_MODEL_DIR）"))
    root = Path(folder).expanduser()
    if not root.exists():
        raise NeuralError(N_("离线神经语音模型文件夹不存在：{folder}"), folder=str(root))
    if not root.is_dir():
        raise NeuralError(N_("离线神经语音模型路径不是文件夹：{folder}"), folder=str(root))
    model = root / MODEL_FILE
    if not model.is_file():
        candidates = sorted(p.name for p in root.glob("*.onnx") if p.is_file())
        if len(candidates) == 1:
            model = root / candidates[0]
        elif candidates:
            raise NeuralError(
                N_(
                    "模型文件夹 {folder} 中有多个 .onnx 文件（{files}），请把要使用的那个改名为 {model}"
                ),
                folder=str(root),
                files="、".join(candidates),
                model=MODEL_FILE,
            )
        else:
            raise NeuralError(
                N_("模型文件夹 {folder} 中缺少 {file}"), folder=str(root), file=MODEL_FILE
            )
    if model.stat().st_size == 0:
        raise NeuralError(N_("模型文件 {file} 是空文件，请重新下载"), file=str(model))
    tokens = root / TOKENS_FILE
    if not tokens.is_file():
        raise NeuralError(
            N_("模型文件夹 {folder} 中缺少 {file}"), folder=str(root), file=TOKENS_FILE
        )
    lexicon = root / LEXICON_FILE
    data_dir = root / ESPEAK_DATA_DIR
    if not lexicon.is_file() and not data_dir.is_dir():
        raise NeuralError(
            N_("模型文件夹 {folder} 中缺少 {file}（piper 模型则需要 {data}/ 文件夹）"),
            folder=str(root),
            file=LEXICON_FILE,
            data=ESPEAK_DATA_DIR,
        )
    dict_dir = root / DICT_DIR
    partial = NeuralModel(
        folder=root,
        model=model,
        tokens=tokens,
        lexicon=lexicon if lexicon.is_file() else None,
        data_dir=data_dir if data_dir.is_dir() else None,
        dict_dir=dict_dir if dict_dir.is_dir() else None,
        rule_fsts=tuple(sorted((p for p in root.glob("*.fst") if p.is_file()), key=_fst_rank)),
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


def _probe(model: NeuralModel) -> Reason | None:
    """Load ``model`` and speak :data:`PROBE_TEXT` in a child process; ``None`` if it worked."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "audio.neural", str(model.folder)],
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
        return None
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


def _probe_main(folder: str) -> int:
    """The child's side of :func:`_probe`: load, speak, report on stdout."""
    import sherpa_onnx

    model = locate_model(folder)
    tts = sherpa_onnx.OfflineTts(model.config(1))
    audio = tts.generate(PROBE_TEXT, sid=0, speed=1.0)
    if not len(audio.samples):
        failure = Reason.of(
            N_("模型无法朗读测试句“{text}”（词典或 {file} 不完整）"),
            text=PROBE_TEXT,
            file=TOKENS_FILE,
        )
        print(failure.dumps(), file=sys.stderr)
        return 2
    print(json.dumps({"sample_rate": tts.sample_rate, "speakers": tts.num_speakers}))
    return 0


def _to_pcm16(samples: Sequence[float]) -> bytes:
    """Float samples in −1…1 as 16-bit little-endian PCM, clipped."""
    return array(
        "h", (int(32767 * (1.0 if s > 1.0 else -1.0 if s < -1.0 else s)) for s in samples)
    ).tobytes()


class NeuralEngine:
    """A Chinese VITS voice through sherpa-onnx, from the folder ``DALABA_NEURAL_MODEL_DIR``.

    Every whitelisted voice speaks with the model's first speaker: a model's speakers do
    not map onto edge-tts's voices.

    Args:
        folder: the model folder, or ``None`` when none is configured (every use then
            raises :class:`NeuralError` saying so).
        num_threads: onnxruntime threads; :func:`default_threads` if ``None``.
    """

    name = "neural"
    speaker = 0

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
            sample_rate = int(tts.sample_rate)
            pcm = bytearray()
            cues = []
            started = time.perf_counter()
            for chunk in chunks:
                start = len(pcm) / 2 / sample_rate
                try:
                    audio = tts.generate(chunk, sid=self.speaker, speed=speed)
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
        with atomic_path(out) as tmp, wave.open(str(tmp), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(bytes(pcm))
        return Speech(out, len(pcm) / 2 / sample_rate, tuple(cues), compute_s=compute_s)

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
    sys.exit(_probe_main(sys.argv[1]))
