"""Pod status from process state: container statuses, the pod's phase, its conditions.

Pure: the worker snapshots each container (`ContainerState`) and passes the time in. What it
builds is the `status` the kubelet would patch, so the real Job, ReplicaSet and Deployment
controllers can act on it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


def iso(moment: dt.datetime | None) -> str | None:
    """A Kubernetes timestamp (seconds, UTC), or None."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


@dataclass(frozen=True)
class ContainerState:
    """One container as the worker sees it at a moment.

    `pid` is None until its process first started. `restart_pending` is True while it waits out its
    restart back-off, with `waiting_reason` saying why. `last_exit` is the status of its previous run.
    `message` is the termination message of its latest exit (see `termination`), None for none.
    """

    name: str
    image: str = "local"
    pid: int | None = None
    running: bool = False
    exit_code: int | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    restarts: int = 0
    ready: bool = False
    restart_pending: bool = False
    waiting_reason: str | None = "ContainerCreating"
    waiting_message: str | None = None
    last_exit: Mapping[str, Any] | None = None
    message: str | None = None


def container_id(state: ContainerState) -> str | None:
    return f"ballast://{state.pid}" if state.pid is not None else None


def terminated(state: ContainerState) -> dict[str, Any]:
    """The `terminated` state of a container that exited: Completed on 0, else Error, with its
    termination message when it has one."""
    ended: dict[str, Any] = {
        "exitCode": state.exit_code,
        "reason": "Completed" if state.exit_code == 0 else "Error",
        "startedAt": iso(state.started_at),
        "finishedAt": iso(state.finished_at),
        "containerID": container_id(state),
    }
    if state.message:
        ended["message"] = state.message
    return ended


def runs(state: ContainerState) -> bool:
    """Running as the pod reports it: started, and its exit not collected yet. The agent collects
    exits and then reports; a process that ends in between is reported on the next tick, once its
    exit code is known, never as a pod that failed without one."""
    return state.running or (state.pid is not None and state.exit_code is None and not state.restart_pending)


def container_status(state: ContainerState) -> dict[str, Any]:
    """A `containerStatuses` entry: running, terminated (and not about to restart), or waiting."""
    current: dict[str, Any]
    if runs(state):
        current = {"running": {"startedAt": iso(state.started_at)}}
    elif state.exit_code is not None and not state.restart_pending:
        current = {"terminated": terminated(state)}
    else:
        current = {"waiting": {"reason": state.waiting_reason or "ContainerCreating"}}
        if state.waiting_message:
            current["waiting"]["message"] = state.waiting_message
    status: dict[str, Any] = {
        "name": state.name,
        "image": state.image,
        "imageID": "",
        "containerID": container_id(state),
        "ready": state.ready,
        "restartCount": state.restarts,
        "started": runs(state),
        "state": current,
    }
    if state.last_exit:
        status["lastState"] = {"terminated": dict(state.last_exit)}
    return status


def pod_phase(init: Sequence[ContainerState], containers: Sequence[ContainerState], failed: bool) -> str:
    """The pod's phase.

    Failed when the agent failed it; Pending until every init container succeeded and every
    container started; Running while any container runs or waits to restart; then Succeeded when
    every container exited 0, else Failed.
    """
    if failed:
        return "Failed"
    if any(c.exit_code is None or c.restart_pending for c in init):
        return "Pending"
    if not containers or any(c.pid is None and not c.restart_pending for c in containers):
        return "Pending"
    if any(runs(c) or c.restart_pending for c in containers):
        return "Running"
    if all(c.exit_code == 0 for c in containers):
        return "Succeeded"
    return "Failed"


def is_terminal(phase: str | None) -> bool:
    return phase in ("Succeeded", "Failed")


def pod_status(
    init: Sequence[ContainerState],
    containers: Sequence[ContainerState],
    *,
    pod_ip: str,
    started_at: dt.datetime,
    failure: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The pod's `status`. Its conditions carry the pod's start as transition time: see
    `keep_transition_times` for the times a report actually sends.

    Ready (and ContainersReady) when the pod runs and every container is ready; Initialized when
    every init container exited 0. A `failure` (reason, message) fails the pod and says why.
    """
    phase = pod_phase(init, containers, failure is not None)
    ready = phase == "Running" and all(c.ready for c in containers)
    initialized = all(c.exit_code == 0 for c in init)
    stamp = iso(started_at)
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": stamp},
            {"type": "Initialized", "status": str(initialized), "lastTransitionTime": stamp},
            {"type": "ContainersReady", "status": str(ready), "lastTransitionTime": stamp},
            {"type": "Ready", "status": str(ready), "lastTransitionTime": stamp},
        ],
        "hostIP": "127.0.0.1",
        "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": stamp,
        "containerStatuses": [container_status(c) for c in containers],
    }
    if init:
        status["initContainerStatuses"] = [container_status(c) for c in init]
    if failure:
        status["reason"], status["message"] = failure
    return status


def keep_transition_times(
    conditions: Sequence[Mapping[str, Any]], previous: Sequence[Mapping[str, Any]], now: dt.datetime
) -> list[dict[str, Any]]:
    """Conditions whose `lastTransitionTime` moves only when their status changes.

    A condition as previously sent keeps its time; one whose status changed since moves to `now`;
    one never sent keeps the time it has.
    """
    before = {c["type"]: c for c in previous}
    kept = []
    for condition in conditions:
        old = before.get(condition["type"])
        moment = condition["lastTransitionTime"]
        if old:
            moment = old["lastTransitionTime"] if old["status"] == condition["status"] else iso(now)
        kept.append({**condition, "lastTransitionTime": moment})
    return kept


def orphan_status(containers: Sequence[tuple[str, str]], now: dt.datetime) -> dict[str, Any]:
    """The status that fails a pod whose processes died with a previous agent: each (name, image)
    container terminated with 137, the way a kill would leave it."""
    stamp = iso(now)
    return {
        "phase": "Failed",
        "reason": "NodeAgentRestarted",
        "message": "the node agent restarted and the pod's processes were lost",
        "containerStatuses": [
            {
                "name": name,
                "image": image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {
                    "terminated": {
                        "exitCode": 137,
                        "reason": "NodeAgentRestarted",
                        "finishedAt": stamp,
                        "startedAt": stamp,
                    }
                },
            }
            for name, image in containers
        ],
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": stamp}],
    }
