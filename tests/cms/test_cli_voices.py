"""``dalaba voices`` as a township admin runs it: the real command against a loopback mirror."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.audio.neural_model import write_tiny_kokoro, write_tiny_matcha, write_tiny_vits
from tests.audio.test_install import sha, tar_folder
from tests.fakes.model_server import Fault, serving_models

NAME = "vits-icefall-zh-aishell3"


def dalaba(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cms.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DALABA_", "http_", "HTTP"))
    }
    environ["DALABA_DATA_DIR"] = str(tmp_path / "data")
    environ["DALABA_TTS_ENGINE"] = "neural"
    return environ


def test_install_from_a_mirror_check_and_speak(env: dict[str, str], tmp_path: Path) -> None:
    archive = tar_folder(write_tiny_vits(tmp_path / "src"), NAME)
    with serving_models({f"tts-models/{NAME}.tar.bz2": archive}) as server:
        env["DALABA_MODEL_MIRROR"] = server.base
        # the mirror's file is not the published one: the catalogue's checksum refuses it
        refused = dalaba(env, "voices", "install", NAME)
        assert refused.returncode == 1
        assert "SHA-256 校验失败" in refused.stderr and "未安装" in refused.stderr
        assert not (tmp_path / "data" / "models" / NAME).exists()
        # an admin who checked this file elsewhere vouches for it; the download is cut once
        server.cut_at = len(archive) // 2
        server.fail(Fault.CUT)
        cut = dalaba(env, "voices", "install", NAME, "--sha256", sha(archive))
        assert cut.returncode == 1 and "再次安装会接着下载" in cut.stderr
        done = dalaba(env, "voices", "install", NAME, "--sha256", sha(archive))
        assert done.returncode == 0, done.stderr
        assert server.requests[-1].range == f"bytes={len(archive) // 2}-"
    assert f"已安装 {NAME}（vits" in done.stdout
    listing = dalaba(env, "voices", "list")
    assert f"{NAME}  [★ 已安装]" in listing.stdout
    assert server.base + "tts-models/kokoro-multi-lang-v1_1.tar.bz2" in listing.stdout
    assert "SHA-256 未知（安装时须用 --sha256 给出）" in listing.stdout  # vits-zh-aishell3
    check = dalaba(env, "voices", "check")
    assert check.returncode == 0, check.stderr
    assert re.search(
        rf"RESULT model={NAME} ok=1 family=vits sample_rate=16000 .*rtf=", check.stdout
    )
    # no DALABA_NEURAL_MODEL_DIR: the installed model speaks
    out = tmp_path / "n.mp3"
    said = dalaba(env, "say", "各位村民请注意。", "--engine", "neural", "-o", str(out))
    assert said.returncode == 0, said.stderr
    assert "离线神经语音" in said.stdout and out.stat().st_size > 1000


def test_usb_archives_of_each_family(env: dict[str, str], tmp_path: Path) -> None:
    usb = tmp_path / "usb"
    usb.mkdir()
    for name, write in (
        ("tiny-vits", write_tiny_vits),
        ("tiny-matcha", write_tiny_matcha),
        ("tiny-kokoro", write_tiny_kokoro),
    ):
        (usb / f"{name}.tar.bz2").write_bytes(tar_folder(write(tmp_path / "src" / name), name))
        result = dalaba(env, "voices", "install", str(usb / f"{name}.tar.bz2"))
        assert result.returncode == 0, result.stderr
    check = dalaba(env, "voices", "check")
    assert check.returncode == 0, check.stderr
    results = re.findall(
        r"RESULT model=(\S+) ok=1 family=(\w+) sample_rate=(\d+) speakers=(\d+)", check.stdout
    )
    assert sorted(results) == [
        ("tiny-kokoro", "kokoro", "24000", "3"),
        ("tiny-matcha", "matcha", "22050", "1"),
        ("tiny-vits", "vits", "16000", "1"),
    ]
    listing = dalaba(env, "voices", "list")
    assert "tiny-kokoro  [★ 已安装，不在目录中]" in listing.stdout


def test_unsafe_usb_archive_is_refused(env: dict[str, str], tmp_path: Path) -> None:
    import io
    import tarfile

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:bz2") as archive:
        info = tarfile.TarInfo("../../outside.txt")
        info.size = 4
        archive.addfile(info, io.BytesIO(b"evil"))
    path = tmp_path / "evil.tar.bz2"
    path.write_bytes(buffer.getvalue())
    result = dalaba(env, "voices", "install", str(path))
    assert result.returncode == 1 and "越出目标文件夹" in result.stderr
    assert not (tmp_path / "outside.txt").exists()
    missing = dalaba(env, "voices", "install", "no-such-model")
    assert missing.returncode == 1 and "既不是目录中的模型" in missing.stderr
