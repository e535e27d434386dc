"""Background audio work yields the CPU to people: renders and builds run at a lower priority.

A township PC (or a county server) has few cores. While the scheduler renders clips and
builds the day's programs, ffmpeg and the speech engines would otherwise take the same
share of the CPU as the web process that an officer is waiting on, and every page slows
down for as long as the build runs. The threads that run renders and builds are given the
``nice`` value ``DALABA_WORK_NICE`` (10 by default, 0 to keep them as they are); the
programs they start (ffmpeg, eSpeak NG) inherit it. Nothing is slower when the machine is
otherwise idle: a lower priority only decides who waits when both want the CPU.

Linux sets the priority of one thread (a thread id given to ``setpriority``); elsewhere the
whole process would be lowered, so :func:`lower_this_thread` does nothing there and only a
batch command (:func:`lower_this_process`, e.g. ``dalaba build-day``) is lowered.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)


def lower_this_thread(nice: int) -> bool:
    """Give the calling thread (and what it starts from now on) at least ``nice``; Linux only."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return False
    return _lower(threading.get_native_id(), nice)


def lower_this_process(nice: int) -> bool:
    """Give the whole process at least ``nice`` (a batch command that only does such work).

    On Linux the nice value belongs to each thread, so every thread running now is lowered
    (those started later inherit it from the thread that starts them).
    """
    if nice <= 0 or not hasattr(os, "setpriority"):
        return False
    if not sys.platform.startswith("linux"):
        return _lower(0, nice)
    lowered = [_lower(int(tid), nice) for tid in os.listdir("/proc/self/task")]
    return bool(lowered) and all(lowered)


def current_nice() -> int:
    """The calling thread's nice value (0 where the platform cannot tell)."""
    if not hasattr(os, "getpriority"):
        return 0
    who = threading.get_native_id() if sys.platform.startswith("linux") else 0
    return os.getpriority(os.PRIO_PROCESS, who)


def _lower(who: int, nice: int) -> bool:
    try:
        now = os.getpriority(os.PRIO_PROCESS, who)
        if now < nice:  # never raise a priority someone else lowered further
            os.setpriority(os.PRIO_PROCESS, who, nice)
        return True
    except OSError as exc:  # a sandbox may refuse; the work runs all the same
        log.warning("could not lower the priority of background work: %s", exc)
        return False
