"""Mastering: raw speech in, one finished clip out, for loudspeakers or for phones.

Two profiles, targets in EBU R128 terms:

=============  ==========  =========  =====  ============================================
profile        integrated  true peak  LRA    shaping
=============  ==========  =========  =====  ============================================
loudspeaker    −14 LUFS    −1.0 dBTP  7 LU   high-pass 150 Hz (12 dB/oct, twice), low-pass
                                             7 kHz, 3:1 compression above −24 dBFS. Horn
                                             speakers reproduce nothing below ~150 Hz and
                                             outdoors speech must stay dense and loud.
voice_note     −16 LUFS    −1.5 dBTP  11 LU  high-pass 80 Hz, 2:1 compression above
                                             −28 dBFS: the usual target for phones.
=============  ==========  =========  =====  ============================================

Leading and trailing silence is trimmed and replaced by a fixed 0.12 s pre-roll and
0.3 s tail, so clips join with predictable gaps.

Each clip takes three ffmpeg runs:

1. analyse: find the leading/trailing silence and measure loudness after shaping;
2. shape: trim, shape, apply the gain to the target, limit the sample peak
   (``alimiter``) below the true-peak target with a margin for encoder overshoot,
   writing 32-bit float PCM; an ``ebur128`` branch measures integrated loudness,
   gate threshold, loudness range and true peak in the same run: the first pass of
   two-pass loudness normalisation;
3. normalise and encode: ``loudnorm`` in linear mode with those measured values (the
   second pass; the shaping has already controlled dynamics, so only the final gain
   remains), ``-ar`` given explicitly so loudnorm's 192 kHz internal rate never leaks.
   The encoded file is measured; if the codec moved it more than 0.3 LU from the
   target or over the true-peak limit, it is encoded again with a corrected gain.

The measuring passes use ``ebur128`` (the same BS.1770 measurement) rather than
``loudnorm``'s own first pass, which resamples to 192 kHz and is six times slower.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from audio.errors import MasteringError
from audio.ffmpeg import atomic_path, measure_loudness, parse_ebur128, run_ffmpeg
from audio.mp3 import HOUSE_FORMAT, parse_frames

__all__ = [
    "PROFILES",
    "MasteredAudio",
    "MasteringProfile",
    "Profile",
    "master",
    "ogg_opus_duration",
]

log = logging.getLogger(__name__)

PRE_ROLL_S = 0.12
TAIL_S = 0.3
ENCODED_TOLERANCE_LU = 0.3
"""How far the encoded clip's measured loudness may sit from the target."""
SILENCE_DB = -45
"""Below this level (dBFS) audio counts as silence when trimming."""


class Profile(StrEnum):
    """Where a clip will be heard."""

    LOUDSPEAKER = "loudspeaker"
    """Village loudspeakers and mobile speakers: MP3 in the house format."""
    VOICE_NOTE = "voice_note"
    """Phones: an OGG/Opus voice note as Telegram voice messages need."""


@dataclass(frozen=True)
class MasteringProfile:
    """Targets and encoder settings of one :class:`Profile` (see the module docstring)."""

    profile: Profile
    suffix: str
    integrated_lufs: float
    true_peak_dbtp: float
    lra: float
    sample_rate: int
    shaping: str
    limiter_margin_db: float
    codec_makeup_db: float
    encoder: tuple[str, ...]

    def __post_init__(self) -> None:
        if not -30 <= self.integrated_lufs <= -5 or self.true_peak_dbtp > 0:
            raise ValueError("implausible loudness target")


PROFILES: dict[Profile, MasteringProfile] = {
    Profile.LOUDSPEAKER: MasteringProfile(
        profile=Profile.LOUDSPEAKER,
        suffix=".mp3",
        integrated_lufs=-14.0,
        true_peak_dbtp=-1.0,
        lra=7.0,
        sample_rate=HOUSE_FORMAT.sample_rate,
        shaping=(
            "highpass=f=150:poles=2,highpass=f=150:poles=2,lowpass=f=7000:poles=2,"
            "acompressor=threshold=-24dB:ratio=3:attack=5:release=150:knee=4"
        ),
        limiter_margin_db=2.0,
        codec_makeup_db=0.45,
        encoder=(
            "-c:a", "libmp3lame", "-b:a", f"{HOUSE_FORMAT.bitrate_kbps}k",
            "-reservoir", "0", "-write_xing", "0", "-id3v2_version", "0",
            "-write_id3v1", "0", "-f", "mp3",
        ),
    ),
    Profile.VOICE_NOTE: MasteringProfile(
        profile=Profile.VOICE_NOTE,
        suffix=".ogg",
        integrated_lufs=-16.0,
        true_peak_dbtp=-1.5,
        lra=11.0,
        sample_rate=48_000,
        shaping="highpass=f=80:poles=2,acompressor=threshold=-28dB:ratio=2:attack=10:release=200:knee=6",
        limiter_margin_db=3.5,
        codec_makeup_db=0.45,
        encoder=(
            "-c:a", "libopus", "-b:a", "32k", "-vbr", "on", "-application", "voip",
            "-frame_duration", "20", "-f", "ogg",
        ),
    ),
}  # fmt: skip


@dataclass(frozen=True)
class MasteredAudio:
    """What :func:`master` produced.

    Attributes:
        path: the encoded file.
        duration: its playing time in seconds (from its frames/pages, not estimated).
        shift: seconds to add to a timestamp of the raw input to find it in the output
            (the pre-roll minus the trimmed leading silence); subtitles use it.
    """

    path: Path
    duration: float
    shift: float


_TIME = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")
_SILENCE_START = re.compile(r"silence_start: (-?[\d.]+)")
_SILENCE_END = re.compile(r"silence_end: (-?[\d.]+)")


@dataclass(frozen=True)
class _Analysis:
    integrated: float
    speech_start: float
    speech_end: float


def _analyse(raw: Path, spec: MasteringProfile) -> _Analysis:
    out = run_ffmpeg(
        [
            "-i", str(raw), "-vn", "-af",
            f"silencedetect=n={SILENCE_DB}dB:d=0.1,{spec.shaping},ebur128=framelog=quiet",
            "-f", "null", "-",
        ],
        what="分析音频",
    )  # fmt: skip
    times = _TIME.findall(out)
    if not times:
        raise MasteringError("分析音频失败：无法得知音频时长")
    hours, minutes, seconds = times[-1]
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    integrated = parse_ebur128(out)["integrated"]
    starts = [float(s) for s in _SILENCE_START.findall(out)]
    ends = [float(e) for e in _SILENCE_END.findall(out)]
    speech_start = 0.0
    if starts and starts[0] <= 0.01 and ends:
        speech_start = ends[0]
    speech_end = duration
    if (
        starts
        and (len(ends) < len(starts) or ends[-1] >= duration - 0.05)
        and starts[-1] > speech_start
    ):
        speech_end = starts[-1]
    return _Analysis(integrated, speech_start, max(speech_end, speech_start))


def is_silent(loudness_lufs: float) -> bool:
    """True for a measured integrated loudness that means "nothing audible"."""
    return math.isinf(loudness_lufs) or math.isnan(loudness_lufs) or loudness_lufs < -60


def master(
    raw: Path, out: Path, profile: Profile, *, target_lufs: float | None = None
) -> MasteredAudio:
    """Master ``raw`` (any format ffmpeg decodes) into ``out`` for ``profile``.

    Args:
        raw: the unmastered audio.
        out: destination; written atomically. Its suffix is not consulted.
        profile: the mastering profile.
        target_lufs: override the profile's integrated loudness (the chime sits 3 LU
            below speech).

    Returns:
        The file, its duration and the timestamp shift for subtitles.

    Raises:
        MasteringError: ffmpeg failed, or the audio is silent.
    """
    spec = PROFILES[Profile(profile)]
    target = spec.integrated_lufs if target_lufs is None else target_lufs
    analysis = _analyse(raw, spec)
    if is_silent(analysis.integrated):
        raise MasteringError("音频没有可听见的声音（全是静音）")
    start = analysis.speech_start
    length = analysis.speech_end - start
    gain = target - analysis.integrated
    margin = spec.limiter_margin_db
    trim = spec.codec_makeup_db

    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".master-") as scratch,
        atomic_path(out) as encoded,
    ):
        shaped = Path(scratch) / "shaped.wav"
        shaped_margin = None
        for _attempt in range(4):
            if shaped_margin != margin:
                normalise, gain = _shape(raw, shaped, spec, start, length, gain, margin, target)
                shaped_margin = margin
            run_ffmpeg(
                ["-y", "-i", str(shaped), "-af", f"{normalise},volume={trim:.2f}dB",
                 "-ar", str(spec.sample_rate), "-ac", "1", "-map_metadata", "-1",
                 *spec.encoder, str(encoded)],
                what="编码音频",
            )  # fmt: skip
            # Lossy codecs move loudness a little (both lose ~0.45 LU on speech, which
            # ``codec_makeup_db`` anticipates) and
            # overshoot peaks (Opus by up to 2–3 dB on buzzy voices): measure the encoded
            # file; correct the gain, or limit harder and shape again.
            final = measure_loudness(encoded)
            error = target - final.integrated
            overshoot = final.true_peak - (spec.true_peak_dbtp - 0.1)
            if abs(error) <= ENCODED_TOLERANCE_LU and overshoot <= 0:
                break
            if overshoot > 0:
                margin += overshoot + 0.3
            trim += error
        else:
            log.warning(
                "mastering %s: %.1f LUFS / %.1f dBTP after retries (target %.1f / %.1f)",
                raw.name, final.integrated, final.true_peak, target, spec.true_peak_dbtp,
            )  # fmt: skip
        duration = _duration(encoded, spec)
    return MasteredAudio(out, duration, PRE_ROLL_S - start)


def _shape(
    raw: Path,
    shaped: Path,
    spec: MasteringProfile,
    start: float,
    length: float,
    gain: float,
    margin: float,
    target: float,
) -> tuple[str, float]:
    """Trim, shape, amplify and limit ``raw`` into ``shaped``; measure it on the way.

    Returns:
        The ``loudnorm`` second-pass filter for ``shaped``, and the gain used.
    """
    ceiling = 10 ** ((spec.true_peak_dbtp - margin) / 20)
    for _attempt in range(3):
        graph = (
            f"[0:a]atrim=start={start:.3f}:duration={length:.3f},asetpts=PTS-STARTPTS,"
            f"aresample={spec.sample_rate},{spec.shaping},volume={gain:.2f}dB,"
            f"alimiter=limit={ceiling:.4f}:attack=2:release=60:level=false,"
            f"adelay={int(PRE_ROLL_S * 1000)}:all=1,apad=pad_dur={TAIL_S},"
            "asplit[keep][probe];[probe]ebur128=peak=true:framelog=quiet[sink]"
        )
        log_text = run_ffmpeg(
            ["-y", "-i", str(raw), "-filter_complex", graph,
             "-map", "[keep]", "-c:a", "pcm_f32le", "-ar", str(spec.sample_rate), "-ac", "1",
             "-f", "wav", str(shaped), "-map", "[sink]", "-f", "null", "-"],
            what="处理音频",
        )  # fmt: skip
        stats = parse_ebur128(log_text)
        measured = stats["integrated"]
        if is_silent(measured):
            raise MasteringError("音频没有可听见的声音（全是静音）")
        # The limiter costs some loudness. loudnorm can make up the rest linearly as
        # long as the true peak stays under the limit; otherwise shape again, louder.
        if stats["true_peak"] + (target - measured) <= spec.true_peak_dbtp - 0.2:
            break
        gain += target - measured
    # loudnorm stays linear only for 0 < measured LRA <= target LRA; the compressor has
    # already narrowed the range, and a clip shorter than 3 s measures 0.
    lra = min(max(stats["lra"], 0.1), spec.lra)
    normalise = (
        f"loudnorm=I={target}:TP={spec.true_peak_dbtp}:LRA={spec.lra}"
        f":measured_I={measured}:measured_TP={stats['true_peak']}"
        f":measured_LRA={lra}:measured_thresh={stats['threshold']}"
        ":linear=true:print_format=summary"
    )
    return normalise, gain


def _duration(path: Path, spec: MasteringProfile) -> float:
    if spec.suffix == ".mp3":
        return round(parse_frames(path.read_bytes(), name="编码结果").duration, 3)
    return round(ogg_opus_duration(path), 3)


def ogg_opus_duration(path: Path) -> float:
    """Playing time of an OGG/Opus file from its last page's granule position.

    Raises:
        MasteringError: the file is not OGG/Opus.
    """
    data = path.read_bytes()
    head = data.find(b"OpusHead")
    last = data.rfind(b"OggS")
    if not data.startswith(b"OggS") or head < 0 or last < 0 or len(data) < last + 14:
        raise MasteringError(f"{path.name} 不是 OGG/Opus 文件")
    pre_skip = int.from_bytes(data[head + 10 : head + 12], "little")
    granule = int.from_bytes(data[last + 6 : last + 14], "little")
    return max(0.0, (granule - pre_skip) / 48_000)
