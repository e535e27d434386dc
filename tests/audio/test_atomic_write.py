"""Atomic writes: a process killed between writing and renaming leaves a temporary file;
the next write of the same file removes it, never one a live process is still writing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from audio import ffmpeg


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_dead_writers_leftover_is_swept_a_live_ones_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "outlet-1-2131.json"
    host = ffmpeg._HOST
    dead = tmp_path / f".{target.name}.{host}-{_dead_pid()}.ab12cd.tmp"
    live = tmp_path / f".{target.name}.{host}-{os.getppid()}.ef34gh.tmp"
    elsewhere = tmp_path / f".{target.name}.other-machine-{_dead_pid()}.ij56kl.tmp"
    other_file = tmp_path / f".outlet-1-2121.json.{host}-{_dead_pid()}.mn78op.tmp"
    for path in (dead, live, elsewhere, other_file):
        path.write_text("half")
    ffmpeg.write_atomic(target, "{}")
    assert target.read_text() == "{}"
    assert not dead.exists()  # its writer died: swept
    assert live.exists()  # a live process may still rename it
    assert elsewhere.exists()  # another machine's process: its pid means nothing here
    assert other_file.exists()  # only the file being written is swept
    # The write itself leaves nothing behind.
    assert sorted(
        p.name for p in tmp_path.iterdir() if p.name.startswith(f".{target.name}.")
    ) == sorted([live.name, elsewhere.name])


def test_the_temporary_name_says_who_writes(tmp_path: Path) -> None:
    with ffmpeg.atomic_path(tmp_path / "x.mp3") as tmp:
        assert tmp.name.startswith(f".x.mp3.{ffmpeg._HOST}-{os.getpid()}.")
        assert tmp.suffix == ".tmp"
        tmp.write_bytes(b"data")
    assert (tmp_path / "x.mp3").read_bytes() == b"data"
