"""The catalogue of Chinese models ``dalaba voices install`` knows, shipped with dalaba.

Every archive is published on sherpa-onnx's GitHub releases
(``https://github.com/k2-fsa/sherpa-onnx/releases/download/<tag>/<file>``, tags
``tts-models`` and ``vocoder-models``); ``DALABA_MODEL_MIRROR`` replaces the base for
networks that reach GitHub badly (a mirror keeps the ``<tag>/<file>`` layout).

Sizes and SHA-256 checksums are the published files' as recorded by other projects that pin
them (they could not be fetched from GitHub while this catalogue was written). Where no
checksum could be found it is ``None`` and :mod:`audio.install` refuses to install the
archive unless the admin gives one (``--sha256``), having checked it elsewhere.

Speakers: where the model's metadata names its speakers (Kokoro), the catalogue names the
ones offered in voice menus by those names; their gender comes from the name's prefix
(``zf_`` female, ``zm_`` male, Kokoro's convention). Where a model only numbers them
(aishell3), the catalogue lists a few ids with no gender: nobody here has heard them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CATALOGUE",
    "DEFAULT_BASE",
    "Download",
    "ModelEntry",
    "SpeakerEntry",
    "find",
]

DEFAULT_BASE = "https://github.com/k2-fsa/sherpa-onnx/releases/download/"


@dataclass(frozen=True)
class Download:
    """One published file.

    Attributes:
        path: ``<release tag>/<file name>``, relative to the download base.
        size: bytes, or ``None`` where unknown.
        sha256: the file's SHA-256 (hex), or ``None`` where no published value was found.
    """

    path: str
    size: int | None
    sha256: str | None

    @property
    def filename(self) -> str:
        """The file's name (the last part of :attr:`path`)."""
        return self.path.rsplit("/", 1)[-1]

    def url(self, base: str | None = None) -> str:
        """The download address under ``base`` (sherpa-onnx's releases by default)."""
        base = (base or DEFAULT_BASE).rstrip("/") + "/"
        return base + self.path


@dataclass(frozen=True)
class SpeakerEntry:
    """A speaker offered in the voice menu: a name in the model's metadata, or an id."""

    key: str
    label: str
    gender: Literal["female", "male"] | None = None


@dataclass(frozen=True)
class ModelEntry:
    """One catalogued model.

    Attributes:
        name: the archive's (and installed folder's) name.
        family: ``vits``, ``matcha`` or ``kokoro``.
        speakers_total: how many speakers the model has.
        speakers: the ones voices map onto (see :meth:`audio.neural.NeuralModel.speaker_for`).
        sample_rate: Hz, or ``None`` where not published.
        archive: the model's ``.tar.bz2``.
        vocoder: the vocoder a Matcha model needs, else ``None``.
        licence: the licence facts as published.
        sounds_for: what it sounds like it is for, honestly (Chinese, shown by ``voices list``).
    """

    name: str
    family: Literal["vits", "matcha", "kokoro"]
    speakers_total: int
    speakers: tuple[SpeakerEntry, ...]
    sample_rate: int | None
    archive: Download
    vocoder: Download | None
    licence: str
    sounds_for: str

    @property
    def download_size(self) -> int | None:
        """Bytes to download, vocoder included; ``None`` if a size is unknown."""
        sizes = [self.archive.size] + ([self.vocoder.size] if self.vocoder else [])
        return None if None in sizes else sum(s for s in sizes if s is not None)


_VOCOS_22K = Download(
    "vocoder-models/vocos-22khz-univ.onnx",
    53_884_024,
    "0574a135aa1db2de6e181050db2ec528496cacd4a4701fc5d7faf9f9804c0081",
)
_VOCOS_16K = Download(
    "vocoder-models/vocos-16khz-univ.onnx",
    53_882_848,
    "b599142a1fb8ff03de3e84ac35ff537c619e56f4267a6fe894851a42844acf9e",
)
_AISHELL3_SPEAKERS = tuple(
    SpeakerEntry(str(i), f"aishell3 #{i}") for i in (10, 33, 99, 21, 41, 45, 66)
)

CATALOGUE: tuple[ModelEntry, ...] = (
    ModelEntry(
        name="matcha-icefall-zh-baker",
        family="matcha",
        speakers_total=1,
        speakers=(SpeakerEntry("0", "Baker", "female"),),
        sample_rate=22_050,
        archive=Download(
            "tts-models/matcha-icefall-zh-baker.tar.bz2",
            75_463_442,
            "20de2ec034b55562609d6362771c934905dfe11d0f41ec103d593427ad9a7efb",
        ),
        vocoder=_VOCOS_22K,
        licence="Apache-2.0（icefall 模型）；训练语料标贝（Databaker）中文女声库仅限非商业用途",
        sounds_for="一位女声，用标贝的普通话朗读语料训练：通知类广播的首选候选（未在此试听）",
    ),
    ModelEntry(
        name="matcha-icefall-zh-en",
        family="matcha",
        speakers_total=1,
        speakers=(SpeakerEntry("0", "Matcha zh-en"),),
        sample_rate=16_000,
        archive=Download(
            "tts-models/matcha-icefall-zh-en.tar.bz2",
            79_033_838,
            "271b804af570400d3bcdcb53bf6e53cc9f75180ee763b9f13eb5eaf2b0d086ef",
        ),
        vocoder=_VOCOS_16K,
        licence="未查到明确许可（来源：modelscope dengcunqin/matcha_tts_zh_en_20251010），使用前请阅读其 README",
        sounds_for="中文夹英文的通知（英文只读词典里有的词）；16 kHz 采样，频带比 22 kHz 的模型窄（未在此试听）",
    ),
    ModelEntry(
        name="kokoro-multi-lang-v1_1",
        family="kokoro",
        speakers_total=103,
        speakers=(
            SpeakerEntry("zf_001", "Kokoro zf_001", "female"),
            SpeakerEntry("zf_002", "Kokoro zf_002", "female"),
            SpeakerEntry("zf_003", "Kokoro zf_003", "female"),
            SpeakerEntry("zf_004", "Kokoro zf_004", "female"),
            SpeakerEntry("zm_009", "Kokoro zm_009", "male"),
            SpeakerEntry("zm_010", "Kokoro zm_010", "male"),
            SpeakerEntry("zm_011", "Kokoro zm_011", "male"),
        ),
        sample_rate=24_000,
        archive=Download(
            "tts-models/kokoro-multi-lang-v1_1.tar.bz2",
            364_816_464,
            "a3f4c73d043860e3fd2e5b06f36795eb81de0fc8e8de6df703245edddd87dbad",
        ),
        vocoder=None,
        licence="Apache-2.0（Kokoro-82M）",
        sounds_for="中英文，男女声各多位：一个村想要男声、另一个村想要女声时用它（未在此试听；"
        "模型较大，两核电脑上合成较慢）",
    ),
    ModelEntry(
        name="vits-icefall-zh-aishell3",
        family="vits",
        speakers_total=174,
        speakers=_AISHELL3_SPEAKERS,
        sample_rate=None,
        archive=Download(
            "tts-models/vits-icefall-zh-aishell3.tar.bz2",
            31_559_701,
            "ab468db3a3308cdd861495e0db2f25d79418a0c00639f74944c7cdf5dd8c6ec1",
        ),
        vocoder=None,
        licence="Apache-2.0（icefall 模型；AISHELL-3 语料 Apache-2.0）",
        sounds_for="体积最小（约 30 MB），174 位说话人可换着用；较早的 VITS 结构，"
        "说话人性别未标注（未在此试听）",
    ),
    ModelEntry(
        name="vits-zh-aishell3",
        family="vits",
        speakers_total=174,
        speakers=_AISHELL3_SPEAKERS,
        sample_rate=None,
        archive=Download("tts-models/vits-zh-aishell3.tar.bz2", None, None),
        vocoder=None,
        licence="AISHELL-3 语料 Apache-2.0；模型许可未查到",
        sounds_for="较早的 aishell3 模型，174 位说话人；校验值未知，安装时须用 --sha256 给出（未在此试听）",
    ),
    ModelEntry(
        name="vits-melo-tts-zh_en",
        family="vits",
        speakers_total=1,
        speakers=(SpeakerEntry("0", "MeloTTS", "female"),),
        sample_rate=44_100,
        archive=Download(
            "tts-models/vits-melo-tts-zh_en.tar.bz2",
            167_006_755,
            "e58351ed7149f290a54534538badd4077cdbe6fddc964b24d0bee870415d1514",
        ),
        vocoder=None,
        licence="MIT（MeloTTS）",
        sounds_for="中英文混读，一位女声，44.1 kHz；sherpa-onnx 以 VITS 方式加载，未用真模型在此试过",
    ),
)
"""The catalogue, best first for a township loudspeaker (as far as can be judged unheard)."""


def find(name: str) -> ModelEntry | None:
    """The catalogue entry called ``name``, or ``None``."""
    return next((entry for entry in CATALOGUE if entry.name == name), None)
