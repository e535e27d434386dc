"""The dispatcher's worker pool: chats in turns, each chat's posts in order, one at a time."""

from __future__ import annotations

import threading
import time

import pytest

from cms.scheduler.core import interleave


def test_every_chat_gets_its_first_post_before_any_chat_gets_a_second() -> None:
    groups = [[10, 11, 12], [20, 21], [30], [40, 41, 42, 43]]
    started: list[int] = []
    lock = threading.Lock()

    def send(delivery_id: int) -> str:
        with lock:
            started.append(delivery_id)
        time.sleep(0.005)
        return f"sent-{delivery_id}"

    results = interleave(groups, send, workers=2)

    assert results == [[f"sent-{i}" for i in group] for group in groups]
    assert set(started[:4]) == {10, 20, 30, 40}
    assert sorted(started) == sorted(i for group in groups for i in group)


def test_one_chat_never_has_two_posts_at_once_and_keeps_its_order() -> None:
    groups = [[g * 100 + n for n in range(6)] for g in range(5)]
    running: set[int] = set()
    order: dict[int, list[int]] = {g: [] for g in range(5)}
    lock = threading.Lock()
    overlaps: list[int] = []

    def send(delivery_id: int) -> str:
        group = delivery_id // 100
        with lock:
            if group in running:
                overlaps.append(delivery_id)
            running.add(group)
            order[group].append(delivery_id)
        time.sleep(0.002)
        with lock:
            running.discard(group)
        return "sent"

    interleave(groups, send, workers=4)

    assert overlaps == []
    assert all(order[g] == groups[g] for g in range(5))


def test_a_waiting_chat_holds_one_worker_for_one_post_only() -> None:
    # Chat 0's second post waits (a robot at its per-minute limit) until every other chat
    # has been served: with two workers the others must get through on the second one.
    others_done = threading.Event()
    groups = [[0, 1], [10, 11, 12], [20, 21, 22]]
    left = {i for group in groups[1:] for i in group}
    lock = threading.Lock()

    def send(delivery_id: int) -> str:
        if delivery_id == 1:
            assert others_done.wait(5), "the other chats were stuck behind the waiting one"
            return "sent"
        with lock:
            left.discard(delivery_id)
            if not left:
                others_done.set()
        return "sent"

    assert interleave(groups, send, workers=2) == [["sent"] * 2, ["sent"] * 3, ["sent"] * 3]


def test_an_error_stops_that_chat_only_and_is_raised_after_the_others() -> None:
    sent: list[int] = []
    lock = threading.Lock()

    def send(delivery_id: int) -> str:
        if delivery_id == 11:
            raise RuntimeError("database went away")
        with lock:
            sent.append(delivery_id)
        return "sent"

    with pytest.raises(RuntimeError, match="database went away"):
        interleave([[10, 11, 12], [20, 21, 22]], send, workers=2)

    assert 12 not in sent
    assert sorted(sent) == [10, 20, 21, 22]
