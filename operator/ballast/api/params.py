"""Training, mixing and gate parameters, with the seed's values as defaults.

A FineTunePool holds these as a template; each FineTuneRun copies them into its immutable spec so
the run records exactly what it was trained and judged with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ballast.api.common import Model


class MixingRow(Model):
    """One row of the seed's data-mixing table: at `newSamples` new samples, draw `multiplier` x old."""

    new_samples: int = Field(gt=0, description="Number of new (pool) samples this row applies at.")
    multiplier: int = Field(gt=0, description="Old (anchor) samples drawn per new sample at this row.")


SEED_MIXING_TABLE = (
    MixingRow(new_samples=10, multiplier=50),
    MixingRow(new_samples=50, multiplier=20),
    MixingRow(new_samples=200, multiplier=10),
    MixingRow(new_samples=500, multiplier=5),
)


class Mixing(Model):
    """How many anchor samples join the pool samples in a fine-tune (seed section 1).

    Between rows the old-sample count is interpolated linearly; below the first row it is
    `new x first multiplier`; above the last it is `new x last multiplier`; always capped.
    """

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.table.map(r, r.newSamples).isSorted() && "
                    "self.table.map(r, r.newSamples * r.multiplier).isSorted()",
                    "message": "mixing.table must be ordered by newSamples and its old-sample counts must not decrease",
                }
            ]
        }
    }

    table: list[MixingRow] = Field(
        default_factory=lambda: list(SEED_MIXING_TABLE),
        min_length=1,
        max_length=32,
        description="Rows ordered by newSamples; defaults to the seed's table (10:50x, 50:20x, 200:10x, 500:5x).",
    )
    old_sample_cap: int = Field(3000, gt=0, description="Never draw more than this many anchor samples.")
    allow_smaller_anchor: bool = Field(
        False,
        description="When the anchor set holds fewer samples than the table asks for, draw all of them instead of "
        "refusing the run (the shortfall is recorded in the plan, the run's Planned condition and an event). A "
        "fine-tune with no old samples is refused regardless.",
    )

    @model_validator(mode="after")
    def _table_is_monotonic(self) -> Mixing:
        news = [r.new_samples for r in self.table]
        olds = [r.new_samples * r.multiplier for r in self.table]
        if news != sorted(news) or len(set(news)) != len(news):
            raise ValueError("mixing.table: rows must be ordered by strictly increasing newSamples")
        if olds != sorted(olds):
            raise ValueError("mixing.table: old-sample counts (newSamples x multiplier) must not decrease")
        return self


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(Model):
    requests: dict[str, str] = Field(default_factory=dict, description="Container resource requests.")
    limits: dict[str, str] = Field(default_factory=dict, description="Container resource limits.")


AmpSetting = Literal["auto", "bf16", "fp16", "off"]
AmpMode = Literal["bf16", "fp16", "off"]  # what `auto` becomes on a device, and what a lineage records


class TrainingParams(Model):
    """Fine-tuning recipe (seed section 3) and the Job it runs in. The trainer image is not here:
    it is the operator's setting (`--trainer-image`, chart value `trainer.image`), so no resource
    chooses the code that judges it.

    `freeze` is passed to Ultralytics as given: it freezes modules 0..freeze-1. On yolo11 the
    backbone ends at module 10 (C2PSA), so `freeze: 10` leaves that last backbone block trainable;
    use 11 to freeze the whole yolo11 backbone.

    Two Ultralytics defaults would change the seed's recipe without a trace, so Ballast sets them:
    `warmupBiasLr` (Ultralytics: 0.1, 100x the seed's lr0) follows lr0 unless set, and `nbs`
    (Ultralytics: 64, so batch 16 steps the optimizer every 4 batches) equals `batch` unless set:
    one optimizer step per batch, as the seed's "batch 16" reads. `gpus: N` trains on N GPUs of
    one pod (Ultralytics DDP); `batch` is the total over them, so it must divide evenly.
    """

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.gpus) || !has(self.batch) || self.gpus <= 1 || self.batch % self.gpus == 0",
                    "message": "training.batch must be a multiple of training.gpus (the batch is split over the GPUs)",
                }
            ]
        }
    }

    epochs: int = Field(10, ge=1, le=1000, description="Fine-tune epochs; few are enough and prevent overfitting.")
    lr0: float = Field(0.001, gt=0, le=1, description="Initial learning rate; 1/10 of base training.")
    lrf: float = Field(0.01, gt=0, le=1, description="Final learning rate as a fraction of lr0.")
    optimizer: Literal["SGD", "AdamW", "Adam"] = Field(
        "SGD", description="Named explicitly: Ultralytics' `auto` optimizer ignores lr0."
    )
    momentum: float = Field(0.937, ge=0, le=1, description="SGD momentum / Adam beta1.")
    freeze: int = Field(10, ge=0, le=50, description="Freeze modules 0..freeze-1 (the backbone).")
    warmup_epochs: float = Field(1, ge=0, le=10, description="Warm-up epochs.")
    cos_lr: bool = Field(True, description="Cosine learning-rate decay.")
    imgsz: int = Field(640, ge=32, le=4096, description="Training and evaluation image size.")
    batch: int = Field(16, ge=1, le=1024, description="Batch size (in total, over all GPUs).")
    nbs: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Nominal batch: the optimizer steps every round(nbs/batch) batches. Absent: equals batch "
        "(one step per batch; Ultralytics' own default 64 would accumulate 4 batches of 16).",
    )
    warmup_bias_lr: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Learning rate bias parameters start warm-up at (they fall to lr0). Absent: lr0 "
        "(Ultralytics' own default 0.1 is 100x the seed's lr0).",
    )
    amp: AmpSetting = Field(
        "auto",
        description="Mixed precision: auto (bf16 where every GPU supports it, fp16 on other GPUs, off on CPU), "
        "bf16, fp16 or off. AMP is always off on CPU.",
    )
    gpus: int = Field(
        1,
        ge=0,
        le=16,
        description="GPUs of the training Job (nvidia.com/gpu); it trains on all of them in one pod (DDP). "
        "0 runs on CPU.",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Node selector for training and gate pods.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    resources: Resources = Field(default_factory=Resources)
    backoff_limit: int = Field(1, ge=0, le=10, description="Retries of a failed training pod.")
    active_deadline_seconds: int = Field(6 * 3600, ge=60, description="Kill the training Job after this long.")

    @model_validator(mode="after")
    def _batch_splits_over_the_gpus(self) -> TrainingParams:
        if self.gpus > 1 and self.batch % self.gpus:
            raise ValueError(
                f"training.batch {self.batch} must be a multiple of training.gpus {self.gpus} "
                "(the batch is split over the GPUs)"
            )
        return self

    def nominal_batch(self) -> int:
        """The nbs Ultralytics is given: `nbs`, or the batch itself."""
        return self.nbs if self.nbs is not None else self.batch

    def bias_warmup_lr(self, lr0: float) -> float:
        """The warmup_bias_lr Ultralytics is given: `warmupBiasLr`, or the lr0 the run trains with."""
        return self.warmup_bias_lr if self.warmup_bias_lr is not None else lr0


class RebaseParams(Model):
    """Retraining a new base from scratch on anchor + all pool samples (seed section 2).

    A rebase trains with the pool's `training` settings except those below, freeze (none),
    warm-up (3 epochs) and `warmupBiasLr`: its bias warm-up starts at the rebase's own lr0, never
    at a fine-tune's value; `nbs` is the training's (absent: the batch).
    """

    threshold: int = Field(2000, ge=1, description="Pool samples since the current base that make a rebase due.")
    architecture: str = Field(
        "yolo11n.yaml", description="Ultralytics architecture file the new base is built from (no download)."
    )
    epochs: int = Field(100, ge=1, le=10000, description="Base-training epochs.")
    lr0: float = Field(0.01, gt=0, le=1, description="Base-training initial learning rate.")
    auto_start: bool = Field(True, description="Start the Rebase run when due, without waiting for a person.")


class RegressionGate(Model):
    """Gate 1: mAP50 on the original held-out test set, base vs candidate (seed section 4)."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {"rule": "self.passBelow < self.rejectAbove", "message": "passBelow must be below rejectAbove"}
            ]
        }
    }

    unit: Literal["points", "percent"] = Field(
        "points",
        description="`points`: absolute mAP50 drop x 100 (0.80 -> 0.79 is 1 point); "
        "`percent`: drop relative to the base's mAP50.",
    )
    pass_below: float = Field(1.0, ge=0, description="A drop below this passes.")
    reject_above: float = Field(3.0, ge=0, description="A drop above this rejects; in between needs review.")

    @model_validator(mode="after")
    def _ordered(self) -> RegressionGate:
        if not self.pass_below < self.reject_above:
            raise ValueError("gates.regression: passBelow must be below rejectAbove")
        return self


class NewSampleGate(Model):
    """Gate 2: detection rate on the new failure samples.

    A share of the new samples is held out from training (by each image's digest, so a sample is
    on the same side in every run of the pool), never so many that fewer than 50 are trained on:
    the gate then reports detection on documents the model learned from and on documents it
    never saw. `judgeOn` says which Gate 2 judges: `all` (the seed's "the new failure documents":
    both) or `heldOut` (only the unseen ones; the trained ones when none could be held out). A
    candidate that finds less than the model serving now is never better than Review; the two
    are compared on the held-out documents when there are some (neither trained on them).
    """

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.judgeOn) || self.judgeOn != 'heldOut' || !has(self.holdoutShare)"
                    " || self.holdoutShare > 0.0",
                    "message": "judgeOn: heldOut needs holdoutShare > 0",
                }
            ]
        }
    }

    min_detection_rate: float = Field(0.80, ge=0, le=1, description="A rate above this passes; otherwise review.")
    confidence: float = Field(0.25, gt=0, lt=1, description="A prediction counts only at or above this confidence.")
    iou: float = Field(0.5, gt=0, lt=1, description="A ground-truth box is found at this IoU with the right class.")
    holdout_share: float = Field(
        0.2, ge=0, le=0.5, description="Share of the new samples kept out of training, as unseen evidence (0: none)."
    )
    judge_on: Literal["all", "heldOut"] = Field("all", description="The new documents Gate 2 judges: all, or held out.")

    @model_validator(mode="after")
    def _held_out_needs_a_share(self) -> NewSampleGate:
        if self.judge_on == "heldOut" and self.holdout_share == 0:
            raise ValueError("judgeOn: heldOut needs holdoutShare > 0 (none would be held out to judge)")
        return self


class ABGate(Model):
    """Gate 3 (optional): per-class AP50 of both models on a labelled audit set of production documents
    (the seed's 100; `ballast samples sample-audit` builds one)."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.enabled) || !self.enabled || "
                    "(has(self.auditManifest) && self.auditManifest != '')",
                    "message": "gates.abComparison.enabled needs auditManifest "
                    "(build one with `ballast samples sample-audit`)",
                }
            ]
        }
    }

    enabled: bool = False
    audit_manifest: str | None = Field(None, description="Object key of the audit set's manifest.")
    per_class_tolerance: float = Field(
        0.0, ge=0, description="Allowed per-class AP50 drop in points before the class counts as worse."
    )

    @model_validator(mode="after")
    def _enabled_needs_an_audit_set(self) -> ABGate:
        if self.enabled and not self.audit_manifest:
            raise ValueError(
                "gates.abComparison.enabled needs auditManifest (build one with `ballast samples sample-audit`)"
            )
        return self


class GateThresholds(Model):
    regression: RegressionGate = Field(default_factory=RegressionGate)
    new_samples: NewSampleGate = Field(default_factory=NewSampleGate)
    ab_comparison: ABGate = Field(default_factory=ABGate)
