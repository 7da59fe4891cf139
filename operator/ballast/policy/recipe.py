"""What a run is trained and judged with: its pool's recipe, or its own where it is no looser.

A run may differ from its pool in how it trains (an experiment is judged by the same gates), but
never in how it is judged or in how little old data it mixes in: a hand-made run that asks for
looser gates, a smaller anchor draw, or another audit set is refused before any Job exists.
"""

from __future__ import annotations

from dataclasses import dataclass

from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import FineTuneRunSpec
from ballast.api.params import GateThresholds, Mixing, RebaseParams, TrainingParams
from ballast.policy.mixing import old_sample_count


@dataclass(frozen=True)
class Recipe:
    training: TrainingParams
    mixing: Mixing
    gates: GateThresholds
    rebase: RebaseParams


def effective_recipe(run: FineTuneRunSpec, pool: FineTunePoolSpec) -> Recipe:
    """The run's own sections where it has them, the pool's elsewhere."""
    return Recipe(
        training=run.training or pool.training,
        mixing=run.mixing or pool.mixing,
        gates=run.gates or pool.gates,
        rebase=run.rebase or pool.rebase,
    )


def looser_gates(run: GateThresholds, pool: GateThresholds) -> list[str]:
    """Every gate setting of the run that would let through what the pool's would not."""
    found = []
    regression, base = run.regression, pool.regression
    if regression.unit != base.unit:
        found.append(f"gates.regression.unit {regression.unit} (the pool judges in {base.unit})")
    if regression.pass_below > base.pass_below:
        found.append(f"gates.regression.passBelow {regression.pass_below:g} > the pool's {base.pass_below:g}")
    if regression.reject_above > base.reject_above:
        found.append(f"gates.regression.rejectAbove {regression.reject_above:g} > the pool's {base.reject_above:g}")
    new, pool_new = run.new_samples, pool.new_samples
    if new.min_detection_rate < pool_new.min_detection_rate:
        found.append(
            f"gates.newSamples.minDetectionRate {new.min_detection_rate:g} < the pool's {pool_new.min_detection_rate:g}"
        )
    if new.confidence < pool_new.confidence:
        found.append(f"gates.newSamples.confidence {new.confidence:g} < the pool's {pool_new.confidence:g}")
    if new.iou < pool_new.iou:
        found.append(f"gates.newSamples.iou {new.iou:g} < the pool's {pool_new.iou:g}")
    if new.holdout_share < pool_new.holdout_share:
        found.append(f"gates.newSamples.holdoutShare {new.holdout_share:g} < the pool's {pool_new.holdout_share:g}")
    if pool_new.judge_on == "heldOut" and new.judge_on != "heldOut":
        found.append(f"gates.newSamples.judgeOn {new.judge_on} (the pool judges the held-out documents)")
    ab, pool_ab = run.ab_comparison, pool.ab_comparison
    if pool_ab.enabled and not ab.enabled:
        found.append("gates.abComparison.enabled false (the pool runs Gate 3)")
    if pool_ab.enabled and ab.audit_manifest != pool_ab.audit_manifest:
        found.append("gates.abComparison.auditManifest differs from the pool's audit set")
    if ab.per_class_tolerance > pool_ab.per_class_tolerance:
        found.append(
            f"gates.abComparison.perClassTolerance {ab.per_class_tolerance:g} > the pool's "
            f"{pool_ab.per_class_tolerance:g}"
        )
    return found


def smaller_mix(run: Mixing, pool: Mixing, new_samples: int) -> list[str]:
    """The run's mix, when it would draw fewer old samples for `new_samples` than the pool's."""
    ours, theirs = old_sample_count(new_samples, run), old_sample_count(new_samples, pool)
    found = []
    if ours.old_samples < theirs.old_samples:
        found.append(
            f"mixing draws {ours.old_samples} old samples for {new_samples} new; the pool's draws {theirs.old_samples}"
        )
    if run.allow_smaller_anchor and not pool.allow_smaller_anchor:
        found.append("mixing.allowSmallerAnchor true (the pool refuses a short anchor draw)")
    return found


def looser_than_pool(run: FineTuneRunSpec, pool: FineTunePoolSpec, new_samples: int) -> list[str]:
    """Why a run may not be judged as it asks (empty: it may)."""
    found = looser_gates(run.gates, pool.gates) if run.gates else []
    if run.kind == "FineTune" and run.mixing:
        found += smaller_mix(run.mixing, pool.mixing, new_samples)
    return found
