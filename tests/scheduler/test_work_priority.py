"""Renders and builds yield the CPU to people: under `dalaba serve` the scheduler's render and
build threads run at DALABA_WORK_NICE, the web at the normal priority, and what those threads
start (ffmpeg, eSpeak NG) inherits the lower priority."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cms.scheduler import priority
from cms.settings import ConfigError, Settings
from tests.scheduler.test_processes import Server

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice")


def _nice_of(stat: str) -> int:
    """The nice value in a /proc/…/stat line (field 19; the command name may hold spaces)."""
    return int(stat.rsplit(")", 1)[1].split()[16])


def _thread_nices(pid: int) -> dict[int, int]:
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found[int(task.name)] = _nice_of((task / "stat").read_text())
        except (FileNotFoundError, ProcessLookupError):
            continue  # a thread that ended meanwhile
    return found


@pytest.mark.parametrize("nice", ["10", "0"])
def test_serve_runs_renders_and_builds_below_the_web(
    settings: Settings, engine: object, tmp_path: Path, nice: str
) -> None:
    server = Server(settings, tmp_path, f"serve-{nice}", env={"DALABA_WORK_NICE": nice})
    proc = server.proc
    try:
        server.wait_ready()
        # The render and build jobs run at start-up and then every tick (0.3 s): their
        # threads exist within a few ticks.
        lowered: list[int] = []
        for _ in range(100):
            nices = _thread_nices(proc.pid)
            lowered = [tid for tid, value in nices.items() if value > 0]
            if len(lowered) >= 2 or nice == "0" and len(nices) > 10:
                break
            time.sleep(0.1)
        nices = _thread_nices(proc.pid)
        assert nices[proc.pid] == 0  # the main thread; the web's workers are like it
        if nice == "0":
            assert all(value == 0 for value in nices.values())
        else:
            assert {nices[tid] for tid in lowered} == {10}
            # Only the render and build threads: the web's 8 workers and the rest are not.
            assert 2 <= len(lowered) <= 3
            assert sum(value == 0 for value in nices.values()) >= 8
    finally:
        server.stop()


def test_what_a_lowered_thread_starts_runs_at_its_priority() -> None:
    def stat_of_a_child() -> str:
        return subprocess.run(
            ["cat", "/proc/self/stat"], capture_output=True, text=True, check=True
        ).stdout

    seen: dict[str, int] = {}

    def work() -> None:
        assert priority.lower_this_thread(7)
        seen["thread"] = priority.current_nice()
        seen["child"] = _nice_of(stat_of_a_child())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(10)
    assert seen == {"thread": 7, "child": 7}
    # The thread that started it (this one) kept its priority, and so do its children.
    assert priority.current_nice() == 0
    assert _nice_of(stat_of_a_child()) == 0


def test_work_nice_is_validated(tmp_path: Path) -> None:
    env = {"DALABA_DATA_DIR": str(tmp_path), "DALABA_SECRET_KEY": "x" * 32}
    assert Settings.from_env({**env}).work_nice == 10
    assert Settings.from_env({**env, "DALABA_WORK_NICE": "0"}).work_nice == 0
    for bad in ("-1", "20", "low"):
        with pytest.raises(ConfigError, match="DALABA_WORK_NICE"):
            Settings.from_env({**env, "DALABA_WORK_NICE": bad})
