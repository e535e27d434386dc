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

Each clip takes at least four ffmpeg runs:

1. analyse: find the leading/trailing silence and measure loudness after shaping;
2. shape: trim, shape, apply the gain, then a true-peak limiter as the very last stage
   (``alimiter`` at four times the sample rate, so inter-sample peaks are caught too),
   writing 32-bit float PCM; an ``ebur128`` branch measures the result in the same run.
   The limiter costs loudness, so the gain is corrected and the audio shaped again until
   it sits at the target (plus ``codec_makeup_db``, what the codec will take away);
3. encode, with no filter at all: nothing may raise a peak after the limiter;
4. measure the encoded file (``ebur128``, true peak to ~0.01 dB). A ceiling is a promise
   about the file that ships, and codecs overshoot the limiter (MP3 by up to ~1 dB,
   Opus by up to ~2 dB on buzzy eSpeak voices): if the file is more than 0.3 LU off
   the target, or less than 0.1 dB under the true-peak ceiling, the limiter goes lower
   by the overshoot, the gain follows the error, and steps 2–4 run again. After
   :data:`MAX_PASSES` the clip fails with :class:`MasteringError`: a file over its
   ceiling is never written.

Why not ``loudnorm``: its linear mode is a gain *after* the limiter, which is how peaks
came back over the ceiling (−0.3 dBTP on eSpeak's male voices against −1.0); its dynamic
mode is an AGC that pumps speech. The measuring passes use ``ebur128`` (the same BS.1770
measurement), which is also six times faster than ``loudnorm``'s 192 kHz first pass.
"""

from __future__ import annotations

import logging
import math
import re
import tempfile
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from audio.errors import N_, MasteringError, SilentAudioError
from audio.ffmpeg import atomic_path, decode_pcm, measure_loudness, parse_ebur128, run_ffmpeg
from audio.mp3 import HOUSE_FORMAT, parse_frames

__all__ = [
    "AMR_NB_VOICE",
    "MP3_PHONE_FILE",
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
TRUE_PEAK_SAFETY_DB = 0.1
"""How far under the ceiling the encoded clip's true peak must measure: true-peak meters
differ by a few hundredths of a dB, and a ceiling is a promise to every one of them."""
MAX_PASSES = 6
"""Shape-encode-measure passes before giving up on a clip (two suffice for speech)."""
SHAPE_PASSES = 5
SHAPE_TOLERANCE_LU = 0.1
OVERSAMPLING = 4
"""The limiter runs at this multiple of the sample rate to catch inter-sample peaks."""
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
    """Targets and encoder settings of one :class:`Profile` (see the module docstring).

    ``limiter_margin_db`` is how far under ``true_peak_dbtp`` the true-peak limiter starts
    (the codec's usual overshoot); ``codec_makeup_db`` how much louder than the target the
    audio goes into the encoder (the codec's usual loss). Both are first guesses: the
    encoded file is measured and the next pass corrects them.
    """

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
        limiter_margin_db=1.0,
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
        limiter_margin_db=1.7,
        codec_makeup_db=0.45,
        encoder=(
            "-c:a", "libopus", "-b:a", "32k", "-vbr", "on", "-application", "voip",
            "-frame_duration", "20", "-f", "ogg",
        ),
    ),
}  # fmt: skip


def _phone_file(
    suffix: str, sample_rate: int, margin_db: float, makeup_db: float, encoder: tuple[str, ...]
) -> MasteringProfile:
    """The phone targets in another codec's file, with neutral shaping (the audio is a
    finished voice note): only the codec's own guesses and settings differ."""
    return replace(
        PROFILES[Profile.VOICE_NOTE],
        suffix=suffix,
        sample_rate=sample_rate,
        shaping="anull",
        limiter_margin_db=margin_db,
        codec_makeup_db=makeup_db,
        encoder=encoder,
    )


AMR_NB_VOICE = _phone_file(
    ".amr", 8_000, margin_db=3.0, makeup_db=0.5,
    encoder=("-c:a", "libopencore_amrnb", "-b:a", "12.2k", "-f", "amr"),
)  # fmt: skip
"""A phone clip again as AMR-NB 8 kHz, for platforms whose voice messages need it (WeCom).

Pass a finished voice note to :func:`master` with this spec: its shaping is neutral, and
the AMR file is held to the phone targets like any other file. AMR-NB, a speech codec
that keeps no waveform, overshoots the limiter by 1–3 dB, erratically; it also loses
~0.5 LU.
"""

MP3_PHONE_FILE = _phone_file(
    ".mp3", 48_000, margin_db=1.0, makeup_db=0.3,
    encoder=("-c:a", "libmp3lame", "-b:a", "48k", "-id3v2_version", "0", "-f", "mp3"),
)  # fmt: skip
"""A phone clip again as a 48 kbit/s MP3 file, for platforms that take audio only as a
file (WeCom, for clips longer than a voice message), held to the phone targets."""


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
        what=N_("分析音频"),
    )  # fmt: skip
    times = _TIME.findall(out)
    if not times:
        raise MasteringError(N_("分析音频失败：无法得知音频时长"))
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
    raw: Path,
    out: Path,
    profile: Profile | MasteringProfile,
    *,
    target_lufs: float | None = None,
) -> MasteredAudio:
    """Master ``raw`` (any format ffmpeg decodes) into ``out`` for ``profile``.

    The encoded file is measured before it is kept: it lies within
    :data:`ENCODED_TOLERANCE_LU` of the loudness target and at least
    :data:`TRUE_PEAK_SAFETY_DB` under the profile's true-peak ceiling, or nothing is
    written and :class:`MasteringError` says why.

    Args:
        raw: the unmastered audio.
        out: destination; written atomically. Its suffix is not consulted.
        profile: the mastering profile, or the spec of a derived format such as
            :data:`AMR_NB_VOICE`.
        target_lufs: override the profile's integrated loudness (the chime sits 3 LU
            below speech).

    Returns:
        The file, its duration and the timestamp shift for subtitles.

    Raises:
        MasteringError: ffmpeg failed, the audio is silent, or the encoded file could not
            be brought within its loudness target and under its true-peak ceiling.
    """
    spec = profile if isinstance(profile, MasteringProfile) else PROFILES[Profile(profile)]
    target = spec.integrated_lufs if target_lufs is None else target_lufs
    analysis = _analyse(raw, spec)
    if is_silent(analysis.integrated):
        raise SilentAudioError(N_("音频没有可听见的声音（全是静音）"))
    start = analysis.speech_start
    length = analysis.speech_end - start
    # Lossy codecs lose ~0.45 LU on speech (``codec_makeup_db``) and overshoot peaks
    # (MP3 by a few tenths of a dB, Opus by up to 2–3 dB on buzzy voices): the shaped
    # audio is made that much louder, and limited that much lower, than the targets.
    level = target + spec.codec_makeup_db
    ceiling = spec.true_peak_dbtp - spec.limiter_margin_db
    gain = level - analysis.integrated
    allowed = spec.true_peak_dbtp - TRUE_PEAK_SAFETY_DB

    out.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".master-") as scratch,
        atomic_path(out) as encoded,
    ):
        shaped = Path(scratch) / "shaped.wav"
        for attempt in range(1, MAX_PASSES + 1):
            gain = _shape(raw, shaped, spec, start, length, gain, ceiling, level)
            run_ffmpeg(
                ["-y", "-i", str(shaped), "-ar", str(spec.sample_rate), "-ac", "1",
                 "-map_metadata", "-1", *spec.encoder, str(encoded)],
                what=N_("编码音频"),
            )  # fmt: skip
            final = measure_loudness(encoded)
            error = target - final.integrated
            overshoot = final.true_peak - allowed
            log.debug(
                "mastering %s pass %d: %.1f LUFS / %.2f dBTP (limiter %.2f dBTP)",
                raw.name, attempt, final.integrated, final.true_peak, ceiling,
            )  # fmt: skip
            if abs(error) <= ENCODED_TOLERANCE_LU and overshoot <= 0:
                break
            # Over the ceiling: limit lower by what the codec added, and a little more
            # (at most 1.5 dB a pass: AMR-NB's peaks jump about from one pass to the next).
            if overshoot > 0:
                ceiling -= min(overshoot + 0.1, 1.5)
            level += error
            gain += error
        else:
            raise MasteringError(
                N_(
                    "音频处理后达不到响度要求：编码后 {loudness} LUFS、真峰值 {peak} dBTP"
                    "（要求 {target} ± {tolerance} LUFS，真峰值不超过 {ceiling} dBTP）"
                ),
                loudness=f"{final.integrated:.1f}",
                peak=f"{final.true_peak:.2f}",
                target=f"{target:.1f}",
                tolerance=ENCODED_TOLERANCE_LU,
                ceiling=f"{spec.true_peak_dbtp:.1f}",
            )
        duration = _duration(encoded, spec)
    return MasteredAudio(out, duration, PRE_ROLL_S - start)


def _shape(
    raw: Path,
    shaped: Path,
    spec: MasteringProfile,
    start: float,
    length: float,
    gain: float,
    ceiling: float,
    level: float,
) -> float:
    """Trim, shape, amplify and true-peak-limit ``raw`` into ``shaped`` at ``level`` LUFS.

    The limiter is the last stage, after every gain, and runs at four times the sample
    rate so that it holds inter-sample (true) peaks under ``ceiling`` dBTP, not only
    sample peaks. It costs some loudness, so the gain is raised and the audio shaped
    again until the result measures within :data:`SHAPE_TOLERANCE_LU` of ``level``.

    Returns:
        The gain used (a good start for another pass).

    Raises:
        MasteringError: ffmpeg failed or the result is silent.
    """
    limit = 10 ** (ceiling / 20)
    previous: tuple[float, float] | None = None
    for _attempt in range(SHAPE_PASSES):
        graph = (
            f"[0:a]atrim=start={start:.3f}:duration={length:.3f},asetpts=PTS-STARTPTS,"
            f"aresample={spec.sample_rate},{spec.shaping},volume={gain:.2f}dB,"
            f"aresample={spec.sample_rate * OVERSAMPLING},"
            f"alimiter=limit={limit:.4f}:attack=5:release=80:level=false:latency=true,"
            f"aresample={spec.sample_rate},"
            f"adelay={int(PRE_ROLL_S * 1000)}:all=1,apad=pad_dur={TAIL_S},"
            "asplit[keep][probe];[probe]ebur128=framelog=quiet[sink]"
        )
        log_text = run_ffmpeg(
            ["-y", "-i", str(raw), "-filter_complex", graph,
             "-map", "[keep]", "-c:a", "pcm_f32le", "-ar", str(spec.sample_rate), "-ac", "1",
             "-f", "wav", str(shaped), "-map", "[sink]", "-f", "null", "-"],
            what=N_("处理音频"),
        )  # fmt: skip
        measured = parse_ebur128(log_text)["integrated"]
        if is_silent(measured):
            raise SilentAudioError(N_("音频没有可听见的声音（全是静音）"))
        if abs(level - measured) <= SHAPE_TOLERANCE_LU:
            break
        # Under heavy limiting a dB of gain buys only a fraction of a LU: follow the
        # secant through the last two passes (bounded), not a step of the full error.
        slope = 1.0
        if previous is not None and gain != previous[0]:
            slope = min(1.0, max(0.2, (measured - previous[1]) / (gain - previous[0])))
        previous = (gain, measured)
        gain += min(6.0, max(-6.0, (level - measured) / slope))
    return gain


def _duration(path: Path, spec: MasteringProfile) -> float:
    if spec.suffix == ".mp3":
        return round(parse_frames(path.read_bytes(), name=N_("编码结果")).duration, 3)
    if spec.suffix == ".ogg":
        return round(ogg_opus_duration(path), 3)
    return round(len(decode_pcm(path, sample_rate=spec.sample_rate)) / 2 / spec.sample_rate, 3)


def ogg_opus_duration(path: Path) -> float:
    """Playing time of an OGG/Opus file from its last page's granule position.

    Raises:
        MasteringError: the file is not OGG/Opus.
    """
    data = path.read_bytes()
    head = data.find(b"OpusHead")
    last = data.rfind(b"OggS")
    if not data.startswith(b"OggS") or head < 0 or last < 0 or len(data) < last + 14:
        raise MasteringError(N_("{file} 不是 OGG/Opus 文件"), file=path.name)
    pre_skip = int.from_bytes(data[head + 10 : head + 12], "little")
    granule = int.from_bytes(data[last + 6 : last + 14], "little")
    return max(0.0, (granule - pre_skip) / 48_000)
