"""Release eligibility (seed: never auto-deploy; a model must pass the gates): the one rule the
run's Approved condition, the pool's adoption of a new base and every release apply."""

from __future__ import annotations

from dataclasses import dataclass

from ballast.api.common import Verdict
from ballast.api.conditions import Reason


@dataclass(frozen=True)
class Eligibility:
    allowed: bool
    reason: Reason
    message: str


def release_eligibility(
    model: str, run: str | None, phase: str | None, verdict: Verdict | None, approved_by: str | None
) -> Eligibility:
    """May `model` (produced by `run`) go to the serving Deployment?

    Pass: yes. Review: only with an approval the operator verified (`approved_by`: the approver
    it checked). Reject: never. A run that has not finished its gates, or no run, blocks it.
    """
    if run is None:
        return Eligibility(False, Reason.MODEL_NOT_FOUND, f"no FineTuneRun produced {model}")
    if phase != "Succeeded" or verdict is None:
        return Eligibility(False, Reason.RUN_NOT_FINISHED, f"run {run} is {phase or 'Pending'}, not gated yet")
    if verdict == "Reject":
        return Eligibility(False, Reason.RUN_REJECTED, f"run {run} was rejected by its gates; {model} never deploys")
    if verdict == "Review" and approved_by is None:
        return Eligibility(
            False,
            Reason.RUN_NOT_APPROVED,
            f"run {run} needs review: a user with the `approve` verb runs `ballast runs approve {run} --reason TEXT`",
        )
    if verdict == "Review":
        return Eligibility(True, Reason.APPROVED, f"run {run} reviewed and approved by {approved_by}")
    return Eligibility(True, Reason.PASS, f"run {run} passed its gates")
