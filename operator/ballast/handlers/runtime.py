"""The reconcile loop every kind shares, controller-runtime style, on top of kopf's watches.

Watch events only record the object in a cache and put a key (kind, namespace, name) in a work
queue; a few worker threads reconcile one key at a time. A reconcile that changed nothing costs
nothing more; one that waits on time asks for a wake-up (`Outcome.requeue_after`); one that fails
is retried with a per-key exponential backoff. Nothing is polled: an idle operator sleeps.

Queue semantics (as client-go's workqueue): a key is queued at most once; a key is never
reconciled by two workers at once; a key that changes while it is reconciled is reconciled again
right after; a delayed add keeps the earliest due time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("ballast.reconcile")


@dataclass(frozen=True, order=True)
class Key:
    kind: str  # the plural: finetunepools, finetuneruns, modelreleases
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Outcome:
    """What a reconcile asks of the loop: nothing (wait for the next change), or a wake-up."""

    requeue_after: float | None = None


DONE = Outcome()


class Cache:
    """The latest body the watch delivered for every object of our kinds (an informer's store)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bodies: dict[Key, dict[str, Any]] = {}

    def put(self, key: Key, body: dict[str, Any]) -> None:
        with self._lock:
            current = self._bodies.get(key)
            # A patch response may overtake the watch event: never go back to an older version.
            if current is not None and _newer(current, body):
                return
            self._bodies[key] = body

    def delete(self, key: Key) -> None:
        with self._lock:
            self._bodies.pop(key, None)

    def get(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            return self._bodies.get(key)

    def list(
        self, kind: str, namespace: str, where: Callable[[dict[str, Any]], bool] = lambda _b: True
    ) -> list[dict[str, Any]]:
        with self._lock:
            bodies = [b for k, b in self._bodies.items() if k.kind == kind and k.namespace == namespace]
        return [b for b in bodies if where(b)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._bodies)


def _newer(current: dict[str, Any], candidate: dict[str, Any]) -> bool:
    """True when `current` is a later version than `candidate` (resourceVersions are opaque, but
    etcd's are increasing integers; anything else is taken as newer)."""
    a = current.get("metadata", {}).get("resourceVersion", "")
    b = candidate.get("metadata", {}).get("resourceVersion", "")
    return a.isdigit() and b.isdigit() and int(a) > int(b)


class WorkQueue:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: deque[Key] = deque()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._due: dict[Key, float] = {}
        self._delayed: list[tuple[float, int, Key]] = []
        self._sequence = itertools.count()
        self._cond = threading.Condition()
        self._closed = False

    def add(self, key: Key) -> None:
        with self._cond:
            self._add(key)

    def _add(self, key: Key) -> None:
        self._due.pop(key, None)  # reconciled now: a pending wake-up is covered
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._cond.notify()

    def add_after(self, key: Key, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            due = self._clock() + delay
            if key in self._queued or self._due.get(key, float("inf")) <= due:
                return
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._sequence), key))
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Key | None:
        """The next key to reconcile (the caller must call `done`), or None when closed or timed out."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                self._promote_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                waits = [self._delayed[0][0] - self._clock()] if self._delayed else []
                if deadline is not None:
                    waits.append(deadline - self._clock())
                    if waits[-1] <= 0:
                        return None
                self._cond.wait(max(0.0, min(waits)) if waits else None)
            return None

    def _promote_due(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self._add(key)

    def done(self, key: Key) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add(key)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def pending(self) -> int:
        """Keys ready or waiting on time."""
        with self._cond:
            return len(self._ready) + len(self._due)


class Backoff:
    """Per-key exponential backoff for failed reconciles: base, 2x base, ... up to a ceiling."""

    def __init__(self, base: float = 1.0, ceiling: float = 60.0) -> None:
        self.base, self.ceiling = base, ceiling
        self._failures: dict[Key, int] = {}
        self._lock = threading.Lock()

    def failed(self, key: Key) -> float:
        with self._lock:
            count = self._failures[key] = self._failures.get(key, 0) + 1
        return float(min(self.ceiling, self.base * 2 ** (count - 1)))

    def forget(self, key: Key) -> None:
        with self._lock:
            self._failures.pop(key, None)


Reconciler = Callable[[Key], Outcome]


class Controller:
    """Workers that drain the queue through one reconciler per kind."""

    def __init__(
        self,
        reconcilers: dict[str, Reconciler],
        workers: int,
        backoff: Backoff,
        observe: Callable[[Key, float, bool], None] = lambda _key, _seconds, _failed: None,
        retry_soon: tuple[type[Exception], ...] = (),
        retry_soon_seconds: float = 0.5,
    ) -> None:
        self.cache = Cache()
        self.queue = WorkQueue()
        self.reconcilers = reconcilers
        self.backoff = backoff
        self.observe = observe  # metrics: (key, seconds, failed)
        # Exceptions that mean "read again and retry" (a write refused as stale), not a failure.
        self.retry_soon, self.retry_soon_seconds = retry_soon, retry_soon_seconds
        self._threads = [
            threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True) for i in range(max(1, workers))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.queue.close()
        for thread in self._threads:
            thread.join(timeout)

    def enqueue(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.queue.add(key)

    def reconcile_now(self, key: Key) -> None:
        """Run one reconcile on the caller's thread, with the loop's error handling (tests, tools)."""
        self._reconcile(key)

    def _work(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self._reconcile(key)
            finally:
                self.queue.done(key)

    def _reconcile(self, key: Key) -> None:
        started = time.monotonic()
        try:
            outcome = self.reconcilers[key.kind](key)
        except self.retry_soon:
            self.queue.add_after(key, self.retry_soon_seconds)
            return
        except Exception as error:
            delay = self.backoff.failed(key)
            log.warning("reconcile %s failed (%s: %s); retrying in %.0f s", key, type(error).__name__, error, delay)
            self.observe(key, time.monotonic() - started, True)
            self.queue.add_after(key, delay)
            return
        self.backoff.forget(key)
        self.observe(key, time.monotonic() - started, False)
        if outcome.requeue_after is not None:
            self.queue.add_after(key, outcome.requeue_after)
