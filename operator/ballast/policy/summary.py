"""The kstatus summary of each kind: Ready, Reconciling and Stalled, derived from the status its
reconcile already computed (one pure function per kind, `*_health`).

Flux (kstatus), Argo CD (deploy/argocd) and `kubectl wait --for=condition=Ready` read these three
instead of learning each kind's phases. Ready is normal-true: True when the object is what its spec
asks for. Reconciling and Stalled are abnormal-true: present, and True, only while they apply, and
removed otherwise (as Flux's own objects do). Each carries `status.observedGeneration`, the
generation the status was computed for, so a reader tells a stale summary from a current one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, TypeVar

from ballast.api.common import Condition
from ballast.api.conditions import PoolCondition, Reason, ReleaseCondition, RunCondition
from ballast.api.finetunepool import FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunStatus
from ballast.api.modelrelease import ModelReleaseStatus
from ballast.policy.conditions import condition_is_true, set_condition

# kstatus' own words: Current (Ready), InProgress (Reconciling), Failed (Stalled).
State = Literal["Current", "InProgress", "Failed"]

# The three kinds spell them alike (each documents when it holds), so one writer serves all three.
READY, RECONCILING, STALLED = RunCondition.READY, RunCondition.RECONCILING, RunCondition.STALLED


@dataclass(frozen=True)
class Health:
    """One object's summary; the reason and message go on Ready and on the abnormal condition."""

    state: State
    reason: str
    message: str


def _condition(conditions: Sequence[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.type == type_), None)


def pool_health(status: FineTunePoolStatus) -> Health:
    """Current when the last reconcile listed the store; Stalled on an invalid spec (a person must
    fix it); Reconciling while the store or its Secret cannot be read (the pool retries)."""
    ready = _condition(status.conditions, PoolCondition.READY)
    if ready is None:
        return Health("InProgress", Reason.NOT_RECONCILED, "not reconciled yet")
    if ready.status == "True":
        return Health("Current", ready.reason, ready.message)
    if ready.reason == Reason.SPEC_INVALID:
        return Health("Failed", ready.reason, ready.message)
    return Health("InProgress", ready.reason, ready.message)


def run_health(status: FineTuneRunStatus) -> Health:
    """Current once the gates gave a verdict (whatever it is); Stalled when Failed; else Reconciling."""
    if status.phase == "Succeeded":
        message = f"verdict {status.verdict}"
        if status.verdict == "Review":
            approved = condition_is_true(status.conditions, RunCondition.APPROVED)
            message += ", approved" if approved else ", waiting for approval (`ballast runs approve`)"
        return Health("Current", Reason.RUN_SUCCEEDED, message)
    if status.phase == "Failed":
        return Health("Failed", Reason.RUN_FAILED, status.message or "failed")
    progress = f"{status.phase}: {status.message}" if status.message else status.phase
    return Health("InProgress", Reason.RUN_IN_PROGRESS, progress)


def release_health(status: ModelReleaseStatus) -> Health:
    """Current when the Deployment runs the desired model; Reconciling while it rolls out or waits
    for the model's run to finish; Stalled when Blocked otherwise, RolledBack or Failed, with the reason."""
    if status.phase == "Released" and status.current_model == status.desired_model:
        drift = _condition(status.conditions, ReleaseCondition.MODEL_DRIFT)
        if drift is not None and drift.status == "True":  # released, but pods run something else
            return Health("Failed", Reason.MODEL_DRIFT, drift.message)
        return Health("Current", Reason.ROLLED_OUT, status.message)
    if status.phase == "Blocked":
        blocked = _condition(status.conditions, ReleaseCondition.BLOCKED)
        reason = blocked.reason if blocked is not None and blocked.status == "True" else Reason.BLOCKED
        state: State = "InProgress" if reason == Reason.RUN_NOT_FINISHED else "Failed"
        return Health(state, reason, status.message)
    if status.phase in ("RolledBack", "Failed"):
        available = _condition(status.conditions, ReleaseCondition.AVAILABLE)
        reason = available.reason if available is not None and available.status == "False" else Reason.ROLLOUT_FAILED
        return Health("Failed", reason, status.message)
    if status.phase == "Pending":
        return Health("InProgress", Reason.NOT_RECONCILED, status.message or "not reconciled yet")
    return Health("InProgress", Reason.PROGRESSING, status.message)


Status = TypeVar("Status", FineTunePoolStatus, FineTuneRunStatus, ModelReleaseStatus)


def summarized(status: Status, health: Health, now: datetime) -> Status:
    """`status` with Ready set and Reconciling / Stalled present only while they hold."""
    generation = status.observed_generation
    conditions = set_condition(
        status.conditions, READY, health.state == "Current", health.reason, health.message, now, generation
    )
    for type_, state in ((RECONCILING, "InProgress"), (STALLED, "Failed")):
        if health.state == state:
            conditions = set_condition(conditions, type_, True, health.reason, health.message, now, generation)
        else:
            conditions = [c for c in conditions if c.type != type_]
    return status.evolve(conditions=conditions)


def summarize_pool(status: FineTunePoolStatus, now: datetime) -> FineTunePoolStatus:
    return summarized(status, pool_health(status), now)


def summarize_run(status: FineTuneRunStatus, now: datetime) -> FineTuneRunStatus:
    return summarized(status, run_health(status), now)


def summarize_release(status: ModelReleaseStatus, now: datetime) -> ModelReleaseStatus:
    return summarized(status, release_health(status), now)
