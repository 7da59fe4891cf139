"""The reconcile loop's queue, cache and backoff: change-driven, never two reconciles of one key at once."""

from __future__ import annotations

import threading
import time

import pytest

from ballast.api.finetunepool import FineTunePoolStatus
from ballast.handlers.runtime import Backoff, Cache, Controller, Key, Outcome, WorkQueue

A, B = Key("finetunepools", "ns", "a"), Key("finetunepools", "ns", "b")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drain(queue: WorkQueue) -> list[Key]:
    keys = []
    while (key := queue.get(timeout=0)) is not None:
        keys.append(key)
        queue.done(key)
    return keys


def test_a_key_added_twice_is_reconciled_once() -> None:
    queue = WorkQueue(Clock())
    queue.add(A)
    queue.add(B)
    queue.add(A)
    assert drain(queue) == [A, B]


def test_a_key_that_changes_while_it_is_reconciled_is_reconciled_again_after_and_never_twice_at_once() -> None:
    queue = WorkQueue(Clock())
    queue.add(A)
    taken = queue.get(timeout=0)
    queue.add(A)  # an event arrives mid-reconcile
    assert queue.get(timeout=0) is None  # no second worker gets it meanwhile
    queue.done(taken)  # type: ignore[arg-type]
    assert drain(queue) == [A]


@pytest.mark.parametrize(
    ("delays", "advance", "ready"),
    [
        pytest.param([5.0], 4.9, [], id="a delayed key waits for its time"),
        pytest.param([5.0], 5.0, [A], id="a delayed key is ready at its time"),
        pytest.param([5.0, 60.0], 5.0, [A], id="the earlier of two wake-ups wins"),
        pytest.param([60.0, 5.0], 5.0, [A], id="a later request cannot postpone an earlier wake-up"),
    ],
)
def test_wake_ups(delays: list[float], advance: float, ready: list[Key]) -> None:
    clock = Clock()
    queue = WorkQueue(clock)
    for delay in delays:
        queue.add_after(A, delay)
    clock.now += advance
    assert drain(queue) == ready


def test_a_change_makes_a_pending_wake_up_redundant() -> None:
    clock = Clock()
    queue = WorkQueue(clock)
    queue.add_after(A, 5)
    queue.add(A)
    assert drain(queue) == [A]
    clock.now += 10
    assert drain(queue) == []  # the reconcile that ran asks again if it still waits on time


def test_a_blocked_worker_wakes_for_a_key_added_from_another_thread() -> None:
    queue = WorkQueue()
    threading.Timer(0.1, queue.add, args=(A,)).start()
    started = time.monotonic()
    assert queue.get(timeout=5) == A
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("failures", "delay"),
    [
        pytest.param(1, 1.0, id="the first failure retries after the base delay"),
        pytest.param(3, 4.0, id="each further failure doubles it"),
        pytest.param(10, 60.0, id="never beyond the ceiling"),
    ],
)
def test_backoff(failures: int, delay: float) -> None:
    backoff = Backoff(base=1.0, ceiling=60.0)
    delays = [backoff.failed(A) for _ in range(failures)]
    assert delays[-1] == delay
    backoff.forget(A)
    assert backoff.failed(A) == 1.0


def test_the_cache_never_goes_back_to_an_older_version() -> None:
    cache = Cache()
    cache.put(A, {"metadata": {"resourceVersion": "12"}, "spec": "patched"})
    cache.put(A, {"metadata": {"resourceVersion": "11"}, "spec": "stale watch event"})
    assert cache.get(A) == {"metadata": {"resourceVersion": "12"}, "spec": "patched"}
    cache.delete(A)
    assert cache.get(A) is None


def test_a_failed_reconcile_is_retried_with_backoff_and_a_success_asks_for_its_wake_up() -> None:
    calls: list[Key] = []

    def reconcile(key: Key) -> Outcome:
        calls.append(key)
        if key == A:
            raise RuntimeError("store down")
        return Outcome(requeue_after=30)

    seen: list[tuple[Key, bool]] = []
    controller = Controller(
        {"finetunepools": reconcile}, 1, Backoff(2.0, 60.0), lambda key, _s, failed: seen.append((key, failed))
    )
    controller.reconcile_now(A)
    controller.reconcile_now(B)
    assert calls == [A, B] and seen == [(A, True), (B, False)]
    assert controller.queue.pending() == 2  # A after its backoff, B at its wake-up


def test_a_status_update_with_a_misspelled_field_fails() -> None:
    with pytest.raises(TypeError, match="verifed_samples"):
        FineTunePoolStatus().evolve(verifed_samples=3)


def test_a_status_update_is_validated() -> None:
    with pytest.raises(ValueError):
        FineTunePoolStatus().evolve(verified_samples="many")
