"""Release eligibility (seed: never auto-deploy; a model must pass the gates): the one rule the
run's Approved condition, the pool's adoption of a new base and every release apply."""

from __future__ import annotations

from dataclasses import dataclass

from ballast.api.common import Approval, Verdict
from ballast.api.conditions import Reason


@dataclass(frozen=True)
class Eligibility:
    allowed: bool
    reason: Reason
    message: str


def release_eligibility(
    model: str, run: str | None, phase: str | None, verdict: Verdict | None, approval: Approval | None
) -> Eligibility:
    """May `model` (produced by `run`) go to the serving Deployment?

    Pass: yes. Review: only with a recorded approval. Reject: never. A run that has not finished
    its gates, or no run at all, blocks the release.
    """
    if run is None:
        return Eligibility(False, Reason.MODEL_NOT_FOUND, f"no FineTuneRun produced {model}")
    if phase != "Succeeded" or verdict is None:
        return Eligibility(False, Reason.RUN_NOT_FINISHED, f"run {run} is {phase or 'Pending'}, not gated yet")
    if verdict == "Reject":
        return Eligibility(False, Reason.RUN_REJECTED, f"run {run} was rejected by its gates; {model} never deploys")
    if verdict == "Review" and approval is None:
        return Eligibility(
            False,
            Reason.RUN_NOT_APPROVED,
            f"run {run} needs review: approve with `ballast runs approve {run} --by NAME --reason TEXT`",
        )
    if verdict == "Review" and approval is not None:
        return Eligibility(True, Reason.APPROVED, f"run {run} reviewed and approved by {approval.by}")
    return Eligibility(True, Reason.PASS, f"run {run} passed its gates")
