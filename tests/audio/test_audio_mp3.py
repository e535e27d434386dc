"""MP3 frames: tags and Xing/Info frames stripped, formats checked, ID3 written."""

from __future__ import annotations

from pathlib import Path

import pytest

from audio import ProgramError
from audio.mp3 import HOUSE_FORMAT, id3v2_tag, parse_frames
from tests.audio.helpers import decoded_seconds, make_tone

HOUSE = ["-ar", "44100", "-c:a", "libmp3lame", "-b:a", "64k"]


def test_tags_and_info_frame_are_stripped(tmp_path: Path) -> None:
    # ffmpeg's defaults: an ID3v2 tag, a Xing/Info frame, an ID3v1 tag at the end
    path = make_tone(
        tmp_path / "tagged.mp3", 2.0,
        codec=[*HOUSE, "-metadata", "title=标题", "-write_id3v1", "1"],
    )  # fmt: skip
    data = path.read_bytes()
    assert data.startswith(b"ID3") and data[-128:-125] == b"TAG"
    frames = parse_frames(data)
    assert frames.format == HOUSE_FORMAT
    assert not frames.data.startswith(b"ID3") and b"TAG" not in frames.data[-128:-125]
    assert b"Info" not in frames.data[:200] and b"Xing" not in frames.data[:200]
    assert frames.duration == pytest.approx(decoded_seconds(path), abs=0.05)


def test_other_formats_are_reported(tmp_path: Path) -> None:
    low = parse_frames(make_tone(tmp_path / "low.mp3", 1.0, codec=["-ar", "22050"]).read_bytes())
    assert low.format.sample_rate == 22050 and low.format != HOUSE_FORMAT
    with pytest.raises(ProgramError, match="没有 MP3 音频帧"):
        parse_frames(b"\x00" * 1000)
    with pytest.raises(ProgramError, match="不是有效的 MP3"):
        parse_frames(make_tone(tmp_path / "x.wav", 0.5).read_bytes())


def test_mixed_formats_in_one_stream_are_refused(tmp_path: Path) -> None:
    a = parse_frames(make_tone(tmp_path / "a.mp3", 1.0, codec=HOUSE).read_bytes())
    b = parse_frames(make_tone(tmp_path / "b.mp3", 1.0, codec=["-b:a", "128k"]).read_bytes())
    with pytest.raises(ProgramError, match="格式不统一"):
        parse_frames(a.data + b.data)


def test_id3_tag_is_well_formed() -> None:
    tag = id3v2_tag(title="新村广播", artist="大喇叭", album="新村", date="2024-03-05", comment="c")
    assert tag[:5] == b"ID3\x03\x00"
    size = 0
    for byte in tag[6:10]:
        assert byte < 0x80  # syncsafe
        size = (size << 7) | byte
    assert size == len(tag) - 10
    for frame_id in (b"TIT2", b"TPE1", b"TALB", b"TYER", b"TDAT", b"COMM"):
        assert frame_id in tag
    assert "0503".encode("utf-16") in tag  # TDAT is DDMM
