"""MPEG audio frames: the house format, joining without re-encoding, and ID3 tags.

Every loudspeaker clip is encoded once into the house format: MPEG-1 Layer III,
44,100 Hz, mono, 64 kbit/s constant bitrate, with LAME's bit reservoir switched off
(so each frame decodes on its own), no Xing/Info frame and no ID3 tag. Segments in
that format join byte by byte into a program that decodes without errors and whose
duration is exactly the sum of its frames; tags go on the joined file only.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from audio.errors import N_, ProgramError, Reason

__all__ = ["HOUSE_FORMAT", "Mp3Format", "Mp3Frames", "id3v2_tag", "parse_frames"]

_BITRATES_V1_L3 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_BITRATES_V2_L3 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)
_SAMPLE_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


@dataclass(frozen=True)
class Mp3Format:
    """The parameters every frame of a stream shares."""

    sample_rate: int
    channels: int
    bitrate_kbps: int
    samples_per_frame: int

    @property
    def frame_seconds(self) -> float:
        return self.samples_per_frame / self.sample_rate


HOUSE_FORMAT = Mp3Format(sample_rate=44_100, channels=1, bitrate_kbps=64, samples_per_frame=1152)
"""The one loudspeaker format: MPEG-1 Layer III, 44.1 kHz mono, 64 kbit/s CBR.

44.1 kHz MPEG-1 plays on every IP loudspeaker terminal and mobile speaker we know of;
64 kbit/s mono is transparent for speech band-limited to 7 kHz.
"""


@dataclass(frozen=True)
class Mp3Frames:
    """The audio frames of one MP3 file, tags and Xing/Info frames removed.

    Attributes:
        data: the frames, back to back.
        count: number of frames.
        format: their common format.
    """

    data: bytes
    count: int
    format: Mp3Format

    @property
    def duration(self) -> float:
        return self.count * self.format.frame_seconds


def _id3v2_size(data: bytes, pos: int) -> int:
    if data[pos : pos + 3] != b"ID3" or len(data) < pos + 10:
        return 0
    size = 0
    for byte in data[pos + 6 : pos + 10]:
        size = (size << 7) | (byte & 0x7F)
    footer = 10 if data[pos + 5] & 0x10 else 0
    return 10 + size + footer


def _header(data: bytes, pos: int) -> tuple[Mp3Format, int, bool] | None:
    """Decode the frame header at ``pos``: (format, frame length, has CRC) or None."""
    if pos + 4 > len(data) or data[pos] != 0xFF or (data[pos + 1] & 0xE0) != 0xE0:
        return None
    version = (data[pos + 1] >> 3) & 0x03
    layer = (data[pos + 1] >> 1) & 0x03
    crc = not (data[pos + 1] & 0x01)
    bitrate_index = data[pos + 2] >> 4
    rate_index = (data[pos + 2] >> 2) & 0x03
    padding = (data[pos + 2] >> 1) & 0x01
    mode = data[pos + 3] >> 6
    if version == 1 or layer != 1 or bitrate_index in (0, 15) or rate_index == 3:
        return None
    sample_rate = _SAMPLE_RATES[version][rate_index]
    if version == 3:
        bitrate = _BITRATES_V1_L3[bitrate_index]
        samples, coefficient = 1152, 144
    else:
        bitrate = _BITRATES_V2_L3[bitrate_index]
        samples, coefficient = 576, 72
    length = coefficient * bitrate * 1000 // sample_rate + padding
    fmt = Mp3Format(sample_rate, 1 if mode == 3 else 2, bitrate, samples)
    return fmt, length, crc


def _is_info_frame(frame: bytes, fmt: Mp3Format, crc: bool) -> bool:
    if fmt.samples_per_frame == 1152:
        side = 17 if fmt.channels == 1 else 32
    else:
        side = 9 if fmt.channels == 1 else 17
    offset = 4 + (2 if crc else 0) + side
    return frame[offset : offset + 4] in (b"Xing", b"Info") or frame[36:40] == b"VBRI"


_SEGMENT = N_("片段")


def parse_frames(data: bytes, *, name: str | Reason = _SEGMENT) -> Mp3Frames:
    """Split an MP3 file into its audio frames, dropping ID3v1/v2 tags and Xing/Info frames.

    Args:
        data: the file's bytes.
        name: how to call the file in error messages: a message id (marked with ``N_``)
            or a :class:`~audio.errors.Reason`.

    Returns:
        The frames and their common format.

    Raises:
        ProgramError: not an MP3 stream, mixed formats, or variable bitrate.
    """
    what = name if isinstance(name, Reason) else Reason(name)
    pos = _id3v2_size(data, 0)
    end = len(data)
    if end >= 128 and data[end - 128 : end - 125] == b"TAG":
        end -= 128
    chunks: list[bytes] = []
    fmt: Mp3Format | None = None
    first = True
    while pos < end:
        tag = _id3v2_size(data, pos)
        if tag:
            pos += tag
            continue
        header = _header(data, pos)
        if header is None or pos + header[1] > end:
            if end - pos < 4 or data[pos:end].strip(b"\x00") == b"":
                break
            raise ProgramError(
                N_("{name} 不是有效的 MP3（偏移 {pos} 处数据损坏）"), name=what, pos=pos
            )
        frame_fmt, length, crc = header
        frame = data[pos : pos + length]
        pos += length
        if first:
            first = False
            if _is_info_frame(frame, frame_fmt, crc):
                continue
        if fmt is None:
            fmt = frame_fmt
        elif frame_fmt != fmt:
            raise ProgramError(
                N_("{name} 的格式不统一（{first} 与 {other}），不能直接拼接"),
                name=what,
                first=str(fmt),
                other=str(frame_fmt),
            )
        chunks.append(frame)
    if fmt is None:
        raise ProgramError(N_("{name} 中没有 MP3 音频帧"), name=what)
    return Mp3Frames(b"".join(chunks), len(chunks), fmt)


def main_data_begins(frames: Mp3Frames) -> Iterable[int]:
    """Each frame's ``main_data_begin`` (0 everywhere when the bit reservoir is off)."""
    data = frames.data
    pos = 0
    while pos < len(data):
        fmt, length, crc = _header(data, pos)  # type: ignore[misc]
        side = pos + 4 + (2 if crc else 0)
        if fmt.samples_per_frame == 1152:
            yield (data[side] << 1) | (data[side + 1] >> 7)
        else:
            yield data[side]
        pos += length


def _text_frame(frame_id: str, text: str) -> bytes:
    body = b"\x01" + text.encode("utf-16")  # encoding 1: UTF-16 with BOM, read by ID3v2.3 players
    return frame_id.encode("ascii") + len(body).to_bytes(4, "big") + b"\x00\x00" + body


def id3v2_tag(
    *, title: str, artist: str = "", album: str = "", date: str = "", comment: str = ""
) -> bytes:
    """An ID3v2.3 tag (UTF-16 text) for the head of a joined program.

    Args:
        title: TIT2.
        artist: TPE1.
        album: TALB.
        date: ISO ``YYYY-MM-DD``; written as TYER and TDAT.
        comment: COMM (language ``zho``).

    Returns:
        The tag bytes, to be written before the first audio frame.
    """
    frames = [_text_frame("TIT2", title)]
    if artist:
        frames.append(_text_frame("TPE1", artist))
    if album:
        frames.append(_text_frame("TALB", album))
    if len(date) >= 10 and date[4] == "-" and date[7] == "-":
        frames.append(_text_frame("TYER", date[:4]))
        frames.append(_text_frame("TDAT", date[8:10] + date[5:7]))
    if comment:
        body = b"\x01zho" + "".encode("utf-16") + b"\x00\x00" + comment.encode("utf-16")
        frames.append(b"COMM" + len(body).to_bytes(4, "big") + b"\x00\x00" + body)
    payload = b"".join(frames)
    size = len(payload)
    syncsafe = bytes(((size >> shift) & 0x7F) for shift in (21, 14, 7, 0))
    return b"ID3\x03\x00\x00" + syncsafe + payload
