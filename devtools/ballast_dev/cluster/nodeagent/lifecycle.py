"""Lifecycle decisions: restart or not, how long to back off, what a pod event asks of the agent.

Pure: the worker and the agent gather the facts (an exit code, a pod's phase, whether a worker
runs it) and act on the answer.
"""

from __future__ import annotations

import enum

# The longest a crashing container waits before its next start, in seconds.
MAX_BACKOFF = 30.0
# A deleted pod's grace period when it names none (the Kubernetes default).
DEFAULT_GRACE_SECONDS = 30.0


def exit_code(returncode: int) -> int:
    """A container's exit code from its process's return code: killed by signal N reads 128 + N."""
    return returncode if returncode >= 0 else 128 - returncode


def should_restart(restart_policy: str, exit_code: int | None) -> bool:
    """Does a container that exited with `exit_code` start again under `restart_policy`?"""
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def restart_backoff(restarts: int) -> float:
    """Seconds before restart number `restarts` (1, 2, 4, ... up to MAX_BACKOFF)."""
    return float(min(MAX_BACKOFF, 2 ** min(restarts - 1, 5)))


def waiting_reason(exit_code: int | None) -> str:
    """Why a container that exited waits to restart: it crashed, or it completed (restartPolicy Always)."""
    return "CrashLoopBackOff" if exit_code else "Completed"


def backoff_message(container: str, backoff: float) -> str:
    return f"back-off {backoff:.0f}s restarting container {container}"


class InitOutcome(enum.Enum):
    DONE = "the init container succeeded: run the next one"
    FAIL_POD = "the init container failed and may not run again: the pod fails"
    RETRY = "the init container failed: run it again after a back-off"


def init_outcome(restart_policy: str, exit_code: int | None) -> InitOutcome:
    """What follows an init container's exit."""
    if exit_code == 0:
        return InitOutcome.DONE
    if restart_policy == "Never":
        return InitOutcome.FAIL_POD
    return InitOutcome.RETRY


class PodAction(enum.Enum):
    KILL = "the pod is gone: kill its processes at once"
    STOP = "the pod is being deleted: stop its processes within its grace period"
    DELETE = "the pod is being deleted and runs nowhere here: finish the deletion"
    UPDATE = "the pod runs here: hand its worker the newer object"
    IGNORE = "nothing to do"
    FAIL_ORPHAN = "the pod ran under a previous agent and may not restart: mark it Failed"
    START = "start the pod"


def pod_action(
    event_type: str,
    *,
    has_worker: bool,
    deleting: bool,
    phase: str | None,
    has_container_statuses: bool,
    restart_policy: str,
) -> PodAction:
    """What a watch event about a pod bound to this node asks of the agent."""
    if event_type == "DELETED":
        return PodAction.KILL if has_worker else PodAction.IGNORE
    if deleting:
        return PodAction.STOP if has_worker else PodAction.DELETE
    if has_worker:
        return PodAction.UPDATE
    if phase in ("Succeeded", "Failed"):
        return PodAction.IGNORE
    ran_before = phase == "Running" or has_container_statuses
    if ran_before and restart_policy != "Always":
        # A pod this agent ran before it restarted: its processes are gone, and it may not restart.
        return PodAction.FAIL_ORPHAN
    return PodAction.START


def grace_seconds(deletion_grace_period_seconds: int | None) -> float:
    """How long a deleted pod's processes get between SIGTERM and SIGKILL."""
    if deletion_grace_period_seconds is None:
        return DEFAULT_GRACE_SECONDS
    return float(deletion_grace_period_seconds)


def pod_ip(n: int) -> str:
    """The `n`-th loopback address handed to a pod (127.1.x.y; y is never 0)."""
    k = n % 65000 + 1
    return f"127.1.{k // 256}.{k % 256 or 1}"
