"""Documents the operator and the trainer exchange through the object store.

The operator writes a RunPlan; the training Job writes a TrainResult; the gate Job writes a
GateReport. Samples carry a SampleRecord. Each document is JSON with camelCase keys, and each is
addressed by its content digest (`digest_of`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal

from pydantic import Field

from ballast.api.common import BaseModelRef, Digest, Model, ModelRef, Verdict
from ballast.api.params import AmpMode, GateThresholds, RebaseParams, TrainingParams
from ballast.api.samples import SampleRef


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(document: Model) -> bytes:
    """Stable bytes for a document: sorted keys, no whitespace, so equal documents share a digest."""
    return json.dumps(document.to_wire(), sort_keys=True, separators=(",", ":")).encode()


def digest_of(document: Model) -> str:
    return digest_bytes(canonical_json(document))


LabelSource = Literal["ballast-cli", "yolo-folder", "label-studio", "cvat", "generator"]


class SampleRecord(Model):
    """`pool/<pool>/samples/<id>/sample.json`: provenance of one human-verified sample."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Sample id; also its folder name.")
    document_id: str = Field(min_length=1, max_length=256)
    reported_by: str = Field(min_length=1, max_length=256)
    reported_at: datetime
    reviewed_by: str = Field(min_length=1, max_length=256, description="The human who verified the labels.")
    reviewed_at: datetime
    label_source: LabelSource
    image_file: str = Field(pattern=r"^image\.(jpg|jpeg|png|bmp|webp)$")
    image_digest: Digest
    label_digest: Digest
    boxes: int = Field(ge=0)


class BaseEvaluation(Model):
    """A base model's Gate 1 figures on a test set, as a verified gate Job measured them. The pool
    keeps them in its status (which only the operator writes) and hands them to later plans, so
    no bucket writer can change the figure a candidate is compared with."""

    base_digest: Digest
    test_manifest_digest: Digest
    imgsz: int
    map50: float
    per_class_ap50: dict[str, float] = Field(default_factory=dict)


class TerminationReport(Model):
    """What a trainer stage writes to its container's termination message: the key and digest of
    the result document it wrote. The operator reads a result only when its bytes match."""

    document: str
    digest: Digest


class RunPlan(Model):
    """A run's `plan.json`: everything the training Job needs, frozen."""

    run: str
    run_uid: str = Field(description="The run's uid: its artifacts live under runs/<run>/<uid>/.")
    pool: str
    kind: Literal["FineTune", "Rebase"]
    bucket: str
    prefix: str = ""
    classes: list[str]
    base_model: BaseModelRef | None = Field(
        None, description="The base to start from; absent only for the very first base (a Rebase from scratch)."
    )
    new_version: str = Field(description="Version name the run's model gets (ft_vN.M or base_vN+1).")
    seed: int
    new_samples: list[SampleRef] = Field(
        description="The pool samples trained on (the snapshot but the held-out ones)."
    )
    held_out_samples: list[SampleRef] = Field(
        default_factory=list, description="Pool samples kept out of training: the gate's unseen new documents."
    )
    serving_model: ModelRef | None = Field(
        None, description="The model a release of this pool serves now: the gate measures it beside the candidate."
    )
    old_samples: list[SampleRef] = Field(description="Anchor samples drawn for this run (all of them for a rebase).")
    test_manifest: str
    test_manifest_digest: Digest | None = Field(
        None, description="The test manifest as the operator read it; the gate refuses any other."
    )
    base_evaluation: BaseEvaluation | None = Field(
        None, description="The base's Gate 1 figures on this test set, when a verified gate measured them before."
    )
    mixing_rule: str
    anchor_shortfall: int = Field(
        0, ge=0, description="Old samples the table asked for that the anchor set lacked (mixing.allowSmallerAnchor)."
    )
    training: TrainingParams
    rebase: RebaseParams
    gates: GateThresholds


class StageError(Model):
    """A run's `<stage>-error.json`: why the trainer's stage failed, for the run's status."""

    stage: Literal["train", "rebase", "gate"]
    reason: Literal["Refused", "Error"] = Field(description="Refused: a seed rule forbids the plan; Error: it broke.")
    message: str


class EpochMetrics(Model):
    epoch: int
    metrics: dict[str, float]


class TrainingRan(Model):
    """What Ultralytics' trainer ran, measured by callbacks inside it (per process under DDP)."""

    batch: int = Field(description="Images per iteration, over all devices.")
    nbs: int = Field(description="The nominal batch Ultralytics was given.")
    accumulate: int = Field(description="Batches whose gradients are accumulated per optimizer step, after warm-up.")
    effective_batch: int = Field(description="Images per optimizer step after warm-up: batch x accumulate.")
    warmup_bias_lr: float = Field(description="Learning rate the bias parameters started warm-up at.")
    batches_per_epoch: int
    warmup_iterations: int = Field(description="Iterations of warm-up (LR, momentum and accumulation ramp up).")
    iterations: int = Field(description="Batches run.")
    optimizer_steps: int = Field(description="Optimizer steps taken (counted on the optimizer itself).")
    amp: AmpMode = Field(description="Mixed precision that ran, after Ultralytics' own AMP check.")
    devices: list[str] = Field(description="Devices trained on: `cpu`, or `cuda:<index>` for each GPU (DDP).")
    validation_passes: int = Field(
        description="Passes over the data's val split; with val=False Ultralytics still validates the last epoch "
        "and best.pt."
    )
    validation_seconds: float = Field(0.0, description="Time those passes took.")


class Lineage(Model):
    """A model's `lineage.json`: how it was made, enough to reproduce it."""

    model_version: str
    base_version: str | None = Field(
        None, description="For a fine-tune, the base it started from; for a base, the base it replaces."
    )
    base_digest: Digest | None = Field(
        None, description="Digest of the weights training started from; absent for a base trained from scratch."
    )
    plan_digest: Digest | None = Field(None, description="The plan it was trained from; absent for an imported base.")
    params: dict[str, str | int | float | bool | None] = Field(description="The train() arguments actually used.")
    seed: int
    libraries: dict[str, str]
    started_at: datetime
    finished_at: datetime
    seconds: dict[str, float] = Field(description="Wall time per stage: download, train, upload.")
    ran: TrainingRan | None = Field(
        None, description="What the trainer measured while training; absent for an imported base."
    )


class TrainResult(Model):
    """A run's `train-result.json`, written by the training Job."""

    run: str
    model: ModelRef
    lineage_uri: str
    lineage_digest: Digest
    epochs: list[EpochMetrics]
    seconds: float


class ClassResult(Model):
    name: str
    base_ap50: float | None = None
    candidate_ap50: float | None = None
    detection_rate: float | None = Field(None, description="On the new documents Gate 2 judges.")
    held_out_detection_rate: float | None = Field(None, description="On the held-out new documents only.")
    instances: int = 0
    verdict: Verdict | None = None


class ServingComparison(Model):
    """The model serving now, measured by the same gate on the same documents as the candidate."""

    model: ModelRef
    map50: float
    detection_rate: float = Field(description="On the new documents Gate 2 judges.")
    held_out_detection_rate: float | None = Field(None, description="On the held-out new documents, when any.")


class GateResult(Model):
    name: Literal["Gate1Regression", "Gate2NewSamples", "Gate3ABComparison"]
    verdict: Verdict
    reason: str


class GateReport(Model):
    """A run's `gate-report.json`, written by the gate Job."""

    run: str
    candidate: ModelRef
    base: BaseModelRef
    base_map50: float
    base_measured: bool = Field(True, description="False when the base figure came from the plan (not re-measured).")
    candidate_map50: float
    map50_drop: float
    drop_unit: Literal["points", "percent"]
    detection_rate: float = Field(description="On the new documents Gate 2 judges (gates.newSamples.judgeOn).")
    trained_detection_rate: float | None = Field(None, description="On the new documents the candidate trained on.")
    held_out_detection_rate: float | None = Field(None, description="On the held-out new documents (None: none).")
    base_detection_rate: float | None = Field(None, description="The base model's rate on the judged documents.")
    serving: ServingComparison | None = None
    per_class_detection: list[ClassResult]
    per_class_ab: list[ClassResult] = Field(default_factory=list)
    gates: list[GateResult] = Field(description="The trainer's own reading, for its log; the operator ignores it.")
    verdict: Verdict = Field(description="The trainer's own reading; the run's verdict is recomputed by the operator.")
    seconds: float = 0.0
