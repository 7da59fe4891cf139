"""The demo's small helpers: its settings, how it prints, times and waits."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Settings:
    quick: bool
    keep: bool
    state_dir: Path | None
    node: str = "agent"  # or "kubelet": every pod a container of the built images (plane.up)
    anchor: int = 300  # original documents the pool draws its ballast from
    test: int = 60  # held-out original documents (Gate 1)
    failures: int = 60  # the first batch of reviewed failure reports (the pool triggers at 50)
    more: int = 50  # each further batch, when a run is not released
    rounds: int = 3  # batches at most
    epochs: int = 10  # the seed's recipe
    freeze: int = 10
    imgsz: int = 256

    def __post_init__(self) -> None:
        if self.quick:  # what CI runs: one short round, small data
            self.anchor, self.test, self.epochs, self.rounds = 80, 24, 1, 1


@dataclass
class Report:
    stages: list[tuple[str, float]] = field(default_factory=list)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextmanager
def stage(report: Report, title: str) -> Iterator[None]:
    say(f"== {title}")
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    report.stages.append((title, seconds))
    say(f"   done in {seconds:.0f} s")


def wait(
    what: str,
    check: Callable[[], Any],
    timeout: float,
    every: float = 2.0,
    progress: Callable[[], str] | None = None,
) -> Any:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if progress is not None:
            line = progress()
            if line != last:
                say(f"   {line}")
                last = line
        time.sleep(every)
    raise TimeoutError(f"{what}: not done after {timeout:.0f} s")


def http(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()
