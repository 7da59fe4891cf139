"""FineTuneRun (`ftr`): one immutable attempt to fine-tune (or rebase) a pool's model."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ballast.api.common import (
    READY_COLUMNS,
    Approval,
    BaseModelRef,
    Conditions,
    Digest,
    Model,
    ModelRef,
    ObjectName,
    StatusModel,
    Verdict,
)
from ballast.api.contracts import BaseEvaluation
from ballast.api.params import GateThresholds, Mixing, RebaseParams, TrainingParams

KIND = "FineTuneRun"
PLURAL = "finetuneruns"
SHORT_NAME = "ftr"

RunKind = Literal["FineTune", "Rebase"]
Trigger = Literal["Volume", "Schedule", "Alert", "Manual", "RebaseDue", "Retry"]
Phase = Literal["Pending", "Planning", "Training", "Gating", "Succeeded", "Failed"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})


class SampleSnapshot(Model):
    """A frozen pool snapshot: the run uses exactly these samples, whatever arrives later."""

    sample_count: int = Field(ge=0, description="Verified samples in the snapshot.")
    manifest_digest: Digest = Field(description="Digest of the sorted sample-id list.")


class FineTuneRunSpec(Model):
    """Immutable once created, except `approval` (CEL enforces it at admission)."""

    pool: ObjectName = Field(description="The FineTunePool this run belongs to.")
    kind: RunKind = Field("FineTune", description="FineTune from the base, or Rebase: a new base from scratch.")
    trigger: Trigger = Field("Manual", description="What started the run.")
    base_model: BaseModelRef = Field(
        description="The base model the fine-tune starts from; must be a base (fine-tunes are never chained)."
    )
    snapshot: SampleSnapshot | None = Field(
        None, description="Frozen sample set; when absent the operator freezes the pool at planning time."
    )
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="Seed for the anchor draw and training.")
    training: TrainingParams | None = Field(None, description="The recipe; absent: the pool's.")
    mixing: Mixing | None = Field(
        None, description="The mix; absent: the pool's. A run may not draw fewer old samples than the pool would."
    )
    gates: GateThresholds | None = Field(
        None, description="How the run is judged; absent: the pool's. A run may not ask for looser gates."
    )
    rebase: RebaseParams | None = Field(None, description="Base-training parameters; absent: the pool's.")
    approval: Approval | None = Field(
        None, description="Human sign-off of a Review verdict (`ballast runs approve`); the only mutable field."
    )
    retry_of: ObjectName | None = Field(
        None, description="The failed or rejected run this one retries on the same samples (`ballast runs retry`)."
    )


class PlanSummary(StatusModel):
    new_samples: int = Field(description="New samples trained on.")
    held_out_samples: int = Field(0, description="New samples kept out of training, for Gate 2's unseen evidence.")
    old_samples: int
    rule: str = Field(description="The mixing rule applied, e.g. `50 new: 20x (table row 50)`.")
    anchor_shortfall: int = Field(0, description="Old samples the table asked for that the anchor set lacked.")
    merged_samples: int = Field(0, description="Snapshot samples left out because the run's base was trained on them.")
    seed: int
    digest: Digest = Field(description="Digest of the RunPlan document.")
    uri: str


class JobNames(StatusModel):
    train: str | None = None
    gate: str | None = None
    image: str | None = Field(None, description="The trainer image the run's Jobs run (the operator's setting then).")


class ClassGateRow(StatusModel):
    name: str
    base_ap50: float | None = None
    candidate_ap50: float | None = None
    detection_rate: float | None = None


class GateEvidence(StatusModel):
    base_map50: float | None = None
    candidate_map50: float | None = None
    map50_drop: float | None = Field(None, description="Drop in the regression gate's unit (points or percent).")
    drop_unit: str | None = None
    detection_rate: float | None = Field(None, description="Gate 2's figure: on the new documents it judges.")
    trained_detection_rate: float | None = Field(None, description="On the new documents trained on.")
    held_out_detection_rate: float | None = Field(None, description="On the held-out new documents.")
    serving_detection_rate: float | None = Field(None, description="The serving model's rate on the same documents.")
    serving_held_out_detection_rate: float | None = Field(
        None, description="The serving model's rate on the held-out new documents."
    )
    serving_model: str | None = Field(None, description="The model serving when the run was planned.")
    gate1: Verdict | None = None
    gate2: Verdict | None = None
    gate3: Verdict | None = None
    worst_classes: list[ClassGateRow] = Field(default_factory=list, description="The classes that moved most.")
    report_uri: str | None = None
    base_evaluation: BaseEvaluation | None = Field(
        None, description="The base's figures this run's gate measured (the pool keeps them for later runs)."
    )


class FineTuneRunStatus(StatusModel):
    observed_generation: int | None = None
    phase: Phase = "Pending"
    verdict: Verdict | None = None
    message: str = ""
    queued: str | None = Field(
        None,
        description="The Kueue queue the run's current Job waits in, suspended (absent while it runs): the Job "
        "was created in `jobs.queueName` and Kueue has not admitted it yet.",
    )
    plan: PlanSummary | None = None
    snapshot: SampleSnapshot | None = None
    jobs: JobNames = Field(default_factory=JobNames)
    model: ModelRef | None = Field(None, description="The model this run produced.")
    lineage_uri: str | None = None
    gates: GateEvidence = Field(default_factory=GateEvidence)
    started_at: datetime | None = None
    trained_at: datetime | None = None
    finished_at: datetime | None = None
    conditions: Conditions


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Pool", "type": "string", "jsonPath": ".spec.pool"},
    {"name": "Kind", "type": "string", "jsonPath": ".spec.kind"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Queued", "type": "string", "jsonPath": ".status.queued"},
    {"name": "Verdict", "type": "string", "jsonPath": ".status.verdict"},
    {"name": "mAP50-Drop", "type": "number", "jsonPath": ".status.gates.map50Drop"},
    {"name": "Det-Rate", "type": "number", "jsonPath": ".status.gates.detectionRate"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model.version"},
    *READY_COLUMNS,
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
