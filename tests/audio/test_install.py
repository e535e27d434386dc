"""Installing models: real downloads from a loopback server, real archives, every refusal."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from audio.catalogue import CATALOGUE, Download, ModelEntry, SpeakerEntry, find
from audio.errors import InstallError
from audio.install import default_model, download, install_archive, install_entry, installed
from audio.neural import locate_model
from tests.audio.neural_model import write_tiny_kokoro, write_tiny_matcha, write_tiny_vits
from tests.fakes.model_server import Fault, serving_models


def tar_folder(folder: Path, name: str) -> bytes:
    """``folder`` as ``name/…`` in a .tar.bz2, as sherpa-onnx publishes its models."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as archive:
        archive.add(folder, arcname=name)
    return buffer.getvalue()


def hostile_tar(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as archive:
        archive.addfile(member, io.BytesIO(data) if data else None)
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_for(name: str, family: str, archive: bytes, vocoder: bytes | None = None) -> ModelEntry:
    return ModelEntry(
        name=name,
        family=family,  # type: ignore[arg-type]
        speakers_total=3,
        speakers=(SpeakerEntry("zf_001", "zf_001（女声）", "female"),),
        sample_rate=None,
        archive=Download(f"tts-models/{name}.tar.bz2", len(archive), sha(archive)),
        vocoder=Download("vocoder-models/vocoder.onnx", len(vocoder), sha(vocoder))
        if vocoder
        else None,
        licence="test",
        sounds_for="test",
    )


def test_catalogue_is_complete_and_honest() -> None:
    names = {entry.name for entry in CATALOGUE}
    assert {"matcha-icefall-zh-baker", "matcha-icefall-zh-en", "kokoro-multi-lang-v1_1"} <= names
    assert {"vits-icefall-zh-aishell3", "vits-melo-tts-zh_en"} <= names
    for entry in CATALOGUE:
        assert entry.archive.url().startswith(
            "https://github.com/k2-fsa/sherpa-onnx/releases/download/tts-models/"
        )
        assert entry.archive.sha256 is None or len(entry.archive.sha256) == 64
        assert entry.licence and entry.sounds_for and entry.speakers
        assert (entry.vocoder is not None) == (entry.family == "matcha")
    assert find("matcha-icefall-zh-baker").vocoder.filename == "vocos-22khz-univ.onnx"  # type: ignore[union-attr]
    # a mirror replaces the base only
    assert CATALOGUE[0].archive.url("https://mirror.example/gh/") == (
        "https://mirror.example/gh/tts-models/matcha-icefall-zh-baker.tar.bz2"
    )


def test_install_a_kokoro_model_from_the_server(tmp_path: Path) -> None:
    archive = tar_folder(write_tiny_kokoro(tmp_path / "src"), "tiny-kokoro")
    entry = entry_for("tiny-kokoro", "kokoro", archive)
    root = tmp_path / "models"
    seen: list[tuple[int, int | None]] = []
    with serving_models({entry.archive.path: archive}) as server:
        result = install_entry(
            entry, root, base=server.base, progress=lambda name: lambda d, t: seen.append((d, t))
        )
    assert result.folder == root / "tiny-kokoro" and default_model(root) == result.folder
    assert seen[-1] == (len(archive), len(archive))
    model = locate_model(result.folder)
    assert model.family == "kokoro" and model.name == "tiny-kokoro"
    assert [s.label for s in model.speakers] == ["zf_001（女声）"]
    described = json.loads((result.folder / "dalaba-model.json").read_text(encoding="utf-8"))
    assert described["sha256"] == sha(archive)
    assert [i.name for i in installed(root)] == ["tiny-kokoro"]
    assert not list((root / ".downloads").iterdir())  # the archive went once unpacked


def test_matcha_gets_its_vocoder(tmp_path: Path) -> None:
    source = write_tiny_matcha(tmp_path / "src")
    vocoder = (source / "vocoder.onnx").read_bytes()
    (source / "vocoder.onnx").unlink()  # published separately, as vocos-22khz-univ.onnx is
    archive = tar_folder(source, "tiny-matcha")
    entry = entry_for("tiny-matcha", "matcha", archive, vocoder)
    with serving_models(
        {entry.archive.path: archive, "vocoder-models/vocoder.onnx": vocoder}
    ) as server:
        result = install_entry(entry, tmp_path / "models", base=server.base)
    assert locate_model(result.folder).vocoder == result.folder / "vocoder.onnx"


def test_wrong_checksum_is_refused_and_nothing_installed(tmp_path: Path) -> None:
    archive = tar_folder(write_tiny_vits(tmp_path / "src"), "tiny-vits")
    entry = entry_for("tiny-vits", "vits", archive)
    root = tmp_path / "models"
    served = {entry.archive.path: archive[:-1] + bytes([archive[-1] ^ 0xFF])}
    with serving_models(served) as server, pytest.raises(InstallError, match="SHA-256 校验失败"):
        install_entry(entry, root, base=server.base)
    assert installed(root) == [] and default_model(root) is None
    assert not list((root / ".downloads").iterdir())  # the bad file is gone: a retry starts over


def test_unknown_checksum_needs_one_given(tmp_path: Path) -> None:
    entry = find("vits-zh-aishell3")
    assert entry is not None and entry.archive.sha256 is None
    with pytest.raises(InstallError, match="SHA-256 未知.*--sha256"):
        install_entry(entry, tmp_path / "models", base="http://127.0.0.1:9/")


def test_truncated_download_resumes_with_a_range_request(tmp_path: Path) -> None:
    archive = tar_folder(write_tiny_vits(tmp_path / "src"), "tiny-vits")
    entry = entry_for("tiny-vits", "vits", archive)
    root = tmp_path / "models"
    with serving_models({entry.archive.path: archive}) as server:
        server.cut_at = len(archive) // 3
        server.fail(Fault.CUT)
        with pytest.raises(InstallError, match="中断.*再次安装会接着下载"):
            install_entry(entry, root, base=server.base)
        part = root / ".downloads" / "tiny-vits.tar.bz2.part"
        assert part.stat().st_size == len(archive) // 3
        result = install_entry(entry, root, base=server.base)
        ranges = [r.range for r in server.requests if r.path.startswith("storage/")]
    assert ranges == [None, f"bytes={len(archive) // 3}-"]
    assert locate_model(result.folder).family == "vits"


def test_a_server_ignoring_range_starts_over(tmp_path: Path) -> None:
    archive = tar_folder(write_tiny_vits(tmp_path / "src"), "tiny-vits")
    dest = tmp_path / "dl" / "x.tar.bz2"
    dest.parent.mkdir()
    (dest.parent / "x.tar.bz2.part").write_bytes(archive[:100])
    with serving_models({"tts-models/x.tar.bz2": archive}) as server:
        server.fail(Fault.NO_RANGE)
        download(server.base + "tts-models/x.tar.bz2", dest, sha(archive))
    assert dest.read_bytes() == archive


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with serving_models({}) as server, pytest.raises(InstallError, match="HTTP 404"):
        download(server.base + "tts-models/nope.tar.bz2", tmp_path / "x", "0" * 64)


def test_too_large_download_is_refused(tmp_path: Path) -> None:
    data = b"x" * 5000
    with (
        serving_models({"tts-models/big.tar.bz2": data}) as server,
        pytest.raises(InstallError, match="超过上限 4096 字节"),
    ):
        download(server.base + "tts-models/big.tar.bz2", tmp_path / "b", sha(data), max_bytes=4096)


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        ("../escape.txt", "越出目标文件夹"),
        ("/etc/evil", "越出目标文件夹"),
        ("model/../../escape.txt", "越出目标文件夹"),
        ("symlink", "指向目标文件夹之外的链接"),
        ("hardlink", "指向目标文件夹之外的链接"),
        ("fifo", "特殊文件"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path: Path, member: str, expected: str) -> None:
    if member == "symlink":
        info = tarfile.TarInfo("model/tokens.txt")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
    elif member == "hardlink":
        info = tarfile.TarInfo("model/tokens.txt")
        info.type, info.linkname = tarfile.LNKTYPE, "/etc/passwd"
    elif member == "fifo":
        info = tarfile.TarInfo("model/pipe")
        info.type = tarfile.FIFOTYPE
    else:
        info = tarfile.TarInfo(member)
        info.size = 4
    path = tmp_path / "hostile.tar.bz2"
    path.write_bytes(hostile_tar(info, b"evil" if info.isfile() else b""))
    root = tmp_path / "models"
    with pytest.raises(InstallError, match=expected):
        install_archive(path, root)
    assert not (tmp_path / "escape.txt").exists()
    assert [p.name for p in root.iterdir()] == []  # no staging folder left behind


def test_archive_unpacking_too_large_is_refused(tmp_path: Path) -> None:
    # 20 MB of zeros compress to a few kB: the cap is on what it unpacks to.
    info = tarfile.TarInfo("bomb/model.onnx")
    info.size = 20 << 20
    path = tmp_path / "bomb.tar.bz2"
    path.write_bytes(hostile_tar(info, b"\0" * info.size))
    assert path.stat().st_size < 100_000
    with pytest.raises(InstallError, match="解开后超过"):
        install_archive(path, tmp_path / "models", max_unpacked=10 << 20)


def test_usb_archive_installs_and_a_catalogued_name_is_checked(tmp_path: Path) -> None:
    archive = tar_folder(write_tiny_vits(tmp_path / "src"), "village-voice")
    usb = tmp_path / "usb" / "village-voice.tar.bz2"
    usb.parent.mkdir()
    usb.write_bytes(archive)
    root = tmp_path / "models"
    result = install_archive(usb, root)
    assert result.entry is None and locate_model(result.folder).family == "vits"
    # an archive named like a catalogued model must have the catalogue's checksum
    fake = tmp_path / "usb" / "kokoro-multi-lang-v1_1.tar.bz2"
    fake.write_bytes(archive)
    with pytest.raises(InstallError, match="SHA-256 校验失败"):
        install_archive(fake, root)
    # reinstalling replaces the folder in one step
    again = install_archive(usb, root)
    assert again.folder == result.folder and [i.name for i in installed(root)] == ["village-voice"]
