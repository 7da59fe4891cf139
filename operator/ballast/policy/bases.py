"""A pool's base and its Rebase attempts (seed section 2): which base fine-tunes start from, when a
due Rebase must wait, and how many samples are already taken into account. No I/O."""

from __future__ import annotations

from ballast.api.common import BaseModelRef
from ballast.api.conditions import Reason
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.policy.finetunerun import RunSummary
from ballast.policy.versions import parse_version


def effective_base(spec: FineTunePoolSpec, status: FineTunePoolStatus) -> BaseModelRef:
    """The newer of the spec's base and a base this pool adopted from a Rebase run."""
    adopted = status.current_base_model
    if adopted and parse_version(adopted.version).base > parse_version(spec.base_model.version).base:
        return BaseModelRef.model_validate(adopted.to_wire())
    return spec.base_model


def rebase_hold(runs: tuple[RunSummary, ...], base: str, verified: int, min_new: int) -> tuple[Reason, str] | None:
    """Why a due Rebase may not start now, or None: exactly one Rebase per crossing of the threshold.

    The last finished Rebase from the current base decides: one in Review waits for its approval
    (approved, it is adopted and the base moves on); one rejected or failed is tried again only after
    `min_new` more samples. A person may always start one by hand."""
    attempts = [r for r in runs if r.kind == "Rebase" and r.base_version == base and r.terminal]
    if not attempts:
        return None
    last = attempts[-1]
    if last.phase == "Succeeded" and last.verdict == "Review" and last.approved_by is None:
        version = last.model.version if last.model else "its model"
        return (
            Reason.REBASE_AWAITING_APPROVAL,
            f"Rebase {last.name} ({version}) ended in Review; approve it (`ballast runs approve {last.name}`) to "
            "adopt it as the base: no other Rebase starts meanwhile",
        )
    if last.phase == "Failed" or last.verdict == "Reject":
        arrived = verified - last.sample_count
        if arrived < min_new:
            outcome = "failed" if last.phase == "Failed" else "was rejected"
            return (
                Reason.REBASE_RETRY_WAITING,
                f"Rebase {last.name} {outcome}; the next waits for {min_new} samples more than it had "
                f"({arrived} so far), or a Rebase started by hand",
            )
    return None


def consumed_samples(runs: tuple[RunSummary, ...], base_sample_count: int) -> int:
    """Pool size already taken into account: the last fine-tune's snapshot, or the adopted base's
    when newer. A Rebase that was not adopted consumed nothing: its samples still wait for a fine-tune."""
    finetunes = [r.sample_count for r in runs if r.kind == "FineTune"]
    return max(finetunes[-1] if finetunes else 0, base_sample_count)
