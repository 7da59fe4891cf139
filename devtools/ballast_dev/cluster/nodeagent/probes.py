"""Readiness and liveness probes: when to run one, and what its result means.

Pure: the worker runs the probe (`containers.probe_passes`) and hands the result in, with the
monotonic time `now`. Startup probes are not run by this agent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class HttpGet:
    port: int | str
    path: str = "/"
    host: str | None = None
    scheme: str = "HTTP"


@dataclass(frozen=True)
class TcpSocket:
    port: int | str
    host: str | None = None


@dataclass(frozen=True)
class ExecAction:
    command: tuple[str, ...]


@dataclass(frozen=True)
class Probe:
    """A probe with the Kubernetes defaults filled in. Without an action it always passes."""

    action: HttpGet | TcpSocket | ExecAction | None = None
    initial_delay_seconds: int = 0
    period_seconds: int = 10
    timeout_seconds: int = 1
    success_threshold: int = 1
    failure_threshold: int = 3


@dataclass(frozen=True)
class ProbeState:
    """A container's probe counters since it (re)started, and when each probe is next due."""

    ready: bool = False
    successes: int = 0
    failures: int = 0
    liveness_failures: int = 0
    next_readiness: float = 0.0
    next_liveness: float = 0.0


def started(readiness: Probe | None, liveness: Probe | None, now: float) -> ProbeState:
    """The state of a container that started at `now`: not ready, each probe after its initial delay."""
    return ProbeState(
        next_readiness=now + (readiness.initial_delay_seconds if readiness else 0),
        next_liveness=now + (liveness.initial_delay_seconds if liveness else 0),
    )


def is_due(next_at: float, now: float, running: bool) -> bool:
    """Probes run only while the container runs, once their time has come."""
    return running and now >= next_at


def after_readiness(probe: Probe, state: ProbeState, passed: bool, now: float) -> ProbeState:
    """The state after a readiness probe ran at `now`.

    Ready after `success_threshold` passes in a row, unready after `failure_threshold` failures in a
    row; in between, readiness stays as it was.
    """
    if passed:
        successes = state.successes + 1
        ready = state.ready or successes >= probe.success_threshold
        return replace(state, successes=successes, failures=0, ready=ready, next_readiness=now + probe.period_seconds)
    failures = state.failures + 1
    ready = state.ready and failures < probe.failure_threshold
    return replace(state, successes=0, failures=failures, ready=ready, next_readiness=now + probe.period_seconds)


def after_liveness(probe: Probe, state: ProbeState, passed: bool, now: float) -> ProbeState:
    """The state after a liveness probe ran at `now`: a pass forgets earlier failures."""
    failures = 0 if passed else state.liveness_failures + 1
    return replace(state, liveness_failures=failures, next_liveness=now + probe.period_seconds)


def liveness_kills(probe: Probe, state: ProbeState) -> bool:
    """Has the liveness probe failed `failure_threshold` times in a row (kill and restart the container)?"""
    return state.liveness_failures >= probe.failure_threshold


def resolve_port(port: int | str, declared: Mapping[str, int]) -> int:
    """A probe's port: a number, or the name of one of the container's ports (ValueError if none)."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    if port in declared:
        return declared[port]
    raise ValueError(f"no port named {port}")


def probe_url(get: HttpGet, pod_ip: str, port: int) -> str:
    """The URL an httpGet probe asks, on the pod's IP unless it names a host."""
    return f"{get.scheme.lower()}://{get.host or pod_ip}:{port}{get.path}"
