"""A run's plan, built from what was read: the seed's mix (section 1), the seed, the new version."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime

from ballast.api.common import ModelRef
from ballast.api.conditions import Reason
from ballast.api.contracts import BaseEvaluation, RunPlan
from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import FineTuneRunSpec, PlanSummary
from ballast.api.modelrelease import ModelReleaseStatus
from ballast.api.params import Mixing
from ballast.api.samples import SampleRef
from ballast.policy.finetunerun import MIN_FINETUNE_SAMPLES, RunSummary
from ballast.policy.mixing import draw_old_samples, old_sample_count
from ballast.policy.recipe import effective_recipe
from ballast.policy.versions import finetune_version, next_base_version


def recorded_seed(spec: FineTuneRunSpec, uid: str) -> int:
    """The run's seed: given in spec, or derived from its uid (stable across retries, new per run)."""
    if spec.seed is not None:
        return spec.seed
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) % (2**31)


class PlanRefused(ValueError):
    """The run may not be planned: a seed rule forbids it (the reason names which)."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def ordinal_among_kind(runs: Sequence[RunSummary], spec: FineTuneRunSpec, name: str, created: datetime) -> int:
    """One more than this pool's earlier runs of the same kind from the same base: M in
    ft_v<N>.<M> for a fine-tune, the attempt in base_v<N+attempt> for a Rebase."""
    earlier = [
        r
        for r in runs
        if r.kind == spec.kind and r.base_version == spec.base_model.version and (r.created, r.name) < (created, name)
    ]
    return len(earlier) + 1


def since_base(refs: list[SampleRef], merged: Sequence[SampleRef]) -> list[SampleRef]:
    """The samples the base was not trained on: after a Rebase is adopted, the samples it learned are
    merged into it and no longer new (they stay in the pool)."""
    learned = {ref.image for ref in merged}
    return [ref for ref in refs if ref.image not in learned]


def anchor_draw_size(new_samples: int, anchor_samples: int, mixing: Mixing) -> tuple[int, int, str]:
    """(old samples to draw, shortfall, rule): the table's count, or every anchor sample when the
    pool allows a smaller anchor. Never zero: a fine-tune on new data alone is always refused."""
    mix = old_sample_count(new_samples, mixing)
    if anchor_samples == 0:
        raise PlanRefused(
            Reason.NO_OLD_SAMPLES,
            f"the anchor set is empty: a fine-tune never trains on new data only (the table asks for "
            f"{mix.old_samples} old samples for {new_samples} new, seed section 1)",
        )
    if mix.old_samples <= anchor_samples:
        return mix.old_samples, 0, mix.rule
    shortfall = mix.old_samples - anchor_samples
    if not mixing.allow_smaller_anchor:
        raise PlanRefused(
            Reason.ANCHOR_TOO_SMALL,
            f"the anchor set holds {anchor_samples} samples; the table asks for {mix.old_samples} old samples for "
            f"{new_samples} new (seed section 1). Add original data to the anchor manifest, or set "
            "mixing.allowSmallerAnchor: true on the pool to train with all of them",
        )
    return anchor_samples, shortfall, f"{mix.rule}; {shortfall} short: all {anchor_samples} anchor samples drawn"


def known_base_figure(
    evaluations: Sequence[BaseEvaluation], base_digest: str, test_manifest_digest: str, imgsz: int
) -> BaseEvaluation | None:
    """A verified gate's figures for this base on this test set at this size, if one measured them."""
    for evaluation in reversed(evaluations):
        if (evaluation.base_digest, evaluation.test_manifest_digest, evaluation.imgsz) == (
            base_digest,
            test_manifest_digest,
            imgsz,
        ):
            return evaluation
    return None


def holdout_position(image_digest: str) -> float:
    """A sample's fixed place in [0, 1), from its image's content digest."""
    return int(hashlib.sha256(image_digest.encode()).hexdigest()[:16], 16) / 2**64


def hold_out(refs: list[SampleRef], share: float, keep: int) -> tuple[list[SampleRef], list[SampleRef]]:
    """(trained, held out). A sample is held out when its image's position is below `share`, so a
    sample stays on the same side in every run of the pool as the pool grows: a document one run
    calls unseen was not trained on by an earlier run either (copies of an image go together).
    Never fewer than `keep` are left to train on: in a small pool the held-out samples with the
    highest positions are trained on instead (only then can a side change between runs)."""
    groups: dict[str, list[SampleRef]] = {}
    for ref in refs:
        groups.setdefault(ref.image_digest, []).append(ref)
    room = len(refs) - keep
    held: set[str] = set()
    for digest in sorted(groups, key=holdout_position):
        if holdout_position(digest) >= share:
            break
        if len(groups[digest]) <= room:
            held.add(digest)
            room -= len(groups[digest])
    return [r for r in refs if r.image_digest not in held], [r for r in refs if r.image_digest in held]


def serving_model(releases: Sequence[ModelReleaseStatus]) -> ModelRef | None:
    """The model the pool's releases serve now, whatever their phase (a Blocked or RolledBack
    release still serves its current model); the most recently released one when several do."""
    serving = [
        record
        for status in releases
        if status.current_model
        for record in status.history
        if record.model.version == status.current_model
    ]
    latest = max(serving, key=lambda r: r.released_at, default=None)
    return latest.model if latest else None


def build_plan(
    *,
    run: str,
    uid: str,
    spec: FineTuneRunSpec,
    pool: FineTunePoolSpec,
    new: list[SampleRef],
    anchor: list[SampleRef],
    number: int,
    test_manifest_digest: str,
    evaluations: Sequence[BaseEvaluation] = (),
    serving: ModelRef | None = None,
    merged: Sequence[SampleRef] = (),
) -> RunPlan:
    """Everything the training Job needs, frozen: the same inputs (samples, anchor, releases,
    figures) always give the same plan.

    The run's own training, mixing and gates where it has them (decide_run refused any looser
    than the pool's), the pool's elsewhere; the trainer image is not part of it. `merged` are the
    samples the run's base was trained on (a fine-tune of an adopted base leaves them out).

    Raises PlanRefused when a seed rule forbids the plan."""
    seed = recorded_seed(spec, uid)
    recipe = effective_recipe(spec, pool)
    held_out: list[SampleRef] = []
    shortfall = 0
    if spec.kind == "Rebase":
        old, rule = anchor, f"{len(new)} new + all {len(anchor)} anchor samples (rebase from scratch)"
        version = next_base_version(spec.base_model.version, number)
    else:
        new = since_base(new, merged)
        if len(new) < MIN_FINETUNE_SAMPLES:
            raise PlanRefused(
                Reason.TOO_FEW_SAMPLES,
                f"{len(new)} samples since {spec.base_model.version} ({len(merged)} are merged into it); never "
                f"fine-tune on fewer than {MIN_FINETUNE_SAMPLES} (seed section 5)",
            )
        new, held_out = hold_out(new, recipe.gates.new_samples.holdout_share, MIN_FINETUNE_SAMPLES)
        count, shortfall, rule = anchor_draw_size(len(new), len(anchor), recipe.mixing)
        drawn = set(draw_old_samples([r.image for r in anchor], count, seed))
        old = [r for r in anchor if r.image in drawn]
        version = finetune_version(spec.base_model.version, number)
        if held_out:
            rule = f"{rule}; {len(held_out)} more new held out of training for Gate 2"
    return RunPlan(
        run=run,
        run_uid=uid,
        pool=spec.pool,
        kind=spec.kind,
        bucket=pool.object_store.bucket,
        prefix=pool.object_store.prefix,
        classes=pool.classes,
        base_model=spec.base_model,
        new_version=version,
        seed=seed,
        new_samples=new,
        held_out_samples=held_out,
        serving_model=serving,
        old_samples=old,
        test_manifest=pool.anchor.test_manifest,
        test_manifest_digest=test_manifest_digest,
        base_evaluation=known_base_figure(
            evaluations, spec.base_model.digest, test_manifest_digest, recipe.training.imgsz
        ),
        mixing_rule=rule,
        anchor_shortfall=shortfall,
        training=recipe.training,
        rebase=recipe.rebase,
        gates=recipe.gates,
    )


def plan_summary(plan: RunPlan, digest: str, uri: str, merged: int = 0) -> PlanSummary:
    return PlanSummary(
        anchor_shortfall=plan.anchor_shortfall,
        merged_samples=merged,
        new_samples=len(plan.new_samples),
        held_out_samples=len(plan.held_out_samples),
        old_samples=len(plan.old_samples),
        rule=plan.mixing_rule,
        seed=plan.seed,
        digest=digest,
        uri=uri,
    )
