"""Benchmark: installing a model archive through a loopback mirror, against a plain copy.

Builds a model archive of ``--mb`` megabytes (a ``.tar`` holding one incompressible
``model.onnx``-sized file plus tokens), serves it from the tests' loopback release server
(GitHub's 302 redirect and byte ranges included), and in the same run

1. downloads it with plain ``urllib`` into a file (the baseline: no hashing, no checks);
2. downloads it with :func:`audio.install.download` (streamed SHA-256, size cap, resumable
   ``.part`` file);
3. installs it with :func:`audio.install.install_archive` (checksum again, safe unpacking
   into a staging folder, atomic move).

Each step runs ``--rounds`` times; the best time counts. The last line is

    RESULT mb=<size> baseline_mb_s=<1> download_mb_s=<2> install_mb_s=<3>
           download_vs_baseline=<2/1> target=<met|missed>

(on one line). The streamed SHA-256 costs about as much as the copy itself on loopback, so
the ratio sits near 0.5 on a busy machine; what matters is that download and install stay
far above a township line's 1–10 MB/s. Target: both at least 50 MB/s.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audio.install import download, install_archive, sha256_of  # noqa: E402
from tests.fakes.model_server import serving_models  # noqa: E402


def build_archive(megabytes: int) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in (
            ("bench-model/model.onnx", os.urandom(megabytes << 20)),
            ("bench-model/tokens.txt", b"a 0\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def best(rounds: int, work: object) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    archive = build_archive(args.mb)
    size_mb = len(archive) / (1 << 20)
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving_models({"tts-models/bench-model.tar": archive}) as server,
    ):
        work = Path(tmp)
        url = server.base + "tts-models/bench-model.tar"
        expected = hashlib.sha256(archive).hexdigest()

        def baseline() -> None:
            with urllib.request.urlopen(url) as response, (work / "plain").open("wb") as out:
                shutil.copyfileobj(response, out, 1 << 16)

        def ours() -> None:
            (work / "dl" / "bench-model.tar").unlink(missing_ok=True)
            download(url, work / "dl" / "bench-model.tar", expected)

        def install() -> None:
            install_archive(work / "dl" / "bench-model.tar", work / "models", sha256=expected)

        plain_s = best(args.rounds, baseline)
        download_s = best(args.rounds, ours)
        install_s = best(args.rounds, install)
        assert sha256_of(work / "models" / "bench-model" / "model.onnx") is not None
    print(
        f"archive {size_mb:.1f} MB through http://127.0.0.1 (302 + ranges), best of {args.rounds}"
    )
    print(f"plain urllib copy   {plain_s:7.3f} s  {size_mb / plain_s:8.1f} MB/s")
    print(f"download (verified) {download_s:7.3f} s  {size_mb / download_s:8.1f} MB/s")
    print(f"install (unpack)    {install_s:7.3f} s  {size_mb / install_s:8.1f} MB/s")
    print(
        f"RESULT mb={size_mb:.1f} baseline_mb_s={size_mb / plain_s:.1f}"
        f" download_mb_s={size_mb / download_s:.1f} install_mb_s={size_mb / install_s:.1f}"
        f" download_vs_baseline={plain_s / download_s:.2f}"
        f" target={'met' if min(size_mb / download_s, size_mb / install_s) >= 50 else 'missed'}"
    )


if __name__ == "__main__":
    main()
