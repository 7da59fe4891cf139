"""FineTunePool (`ftp`): one stream of human-verified failure samples for one model family."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from ballast.api.common import READY_COLUMNS, BaseModelRef, Conditions, Model, ModelRef, ObjectStoreSpec, StatusModel
from ballast.api.contracts import BaseEvaluation
from ballast.api.finetunerun import SampleSnapshot
from ballast.api.jobs import JobSettings
from ballast.api.params import GateThresholds, Mixing, RebaseParams, TrainingParams

KIND = "FineTunePool"
PLURAL = "finetunepools"
SHORT_NAME = "ftp"


class AnchorDataset(Model):
    """The original training data, retained forever: the ballast every fine-tune carries."""

    train_manifest: str = Field(description="Object key of the anchor train manifest (one sample key per line).")
    test_manifest: str = Field(description="Object key of the held-out test manifest used by Gate 1.")


class Triggers(Model):
    """When a fine-tune is due (seed section 5). Every trigger also needs minNewSamples waiting."""

    min_new_samples: int = Field(
        50, ge=50, description="Verified samples since the last run that make a run due (never below 50)."
    )
    schedule: str | None = Field(
        None, description="Optional cron expression (UTC); fires only when minNewSamples are waiting.", max_length=100
    )
    on_alert: bool = Field(True, description="Let Alertmanager drift alerts start a run (when enough samples wait).")
    alert_cooldown_seconds: int = Field(3600, ge=0, description="Ignore repeated alerts for this long after one acts.")


class FineTunePoolSpec(Model):
    classes: list[str] = Field(min_length=1, max_length=1000, description="Class names, in class-id order.")
    object_store: ObjectStoreSpec
    anchor: AnchorDataset
    base_model: BaseModelRef = Field(description="The current base model every fine-tune starts from.")
    triggers: Triggers = Field(default_factory=Triggers)
    mixing: Mixing = Field(default_factory=Mixing)
    training: TrainingParams = Field(default_factory=TrainingParams)
    gates: GateThresholds = Field(default_factory=GateThresholds)
    rebase: RebaseParams = Field(default_factory=RebaseParams)
    jobs: JobSettings = Field(
        default_factory=JobSettings,
        description="How the training and gate Jobs are shaped for the cluster: Kueue queue, priority class, pod "
        "labels and annotations, image pull secrets, extra volumes.",
    )
    suspend: bool = Field(False, description="Stop starting new runs (status keeps updating).")


class RejectedSample(StatusModel):
    id: str
    reason: str


class FineTunePoolStatus(StatusModel):
    observed_generation: int | None = None
    verified_samples: int = Field(0, description="Human-verified samples in the pool.")
    samples_since_last_run: int = Field(0, description="Verified samples added after the last run's snapshot.")
    samples_since_base: int = Field(0, description="Verified samples added since the current base was trained.")
    rejected_samples: int = Field(0, description="Samples found in the store but refused (see recentRejections).")
    recent_rejections: list[RejectedSample] = Field(default_factory=list)
    current_base: str | None = Field(None, description="Version of the base model fine-tunes start from.")
    current_base_model: ModelRef | None = Field(
        None, description="A base this pool adopted from a passed Rebase run (newer than spec.baseModel)."
    )
    index_cursor: str | None = Field(
        None, description="Last settled sample-index key; counting lists only the keys after it."
    )
    settled_samples: int | None = Field(
        None, description="Index keys up to and including indexCursor (absent: every counted key is settled)."
    )
    rejection_cursor: str | None = Field(None, description="Last rejection record counted.")
    active_run: str | None = Field(None, description="The FineTuneRun in progress, if any.")
    last_run: str | None = None
    last_run_sample_count: int = Field(0, description="Pool size frozen by the last run.")
    base_sample_count: int = Field(0, description="Pool size the current base was trained with.")
    base_snapshot: SampleSnapshot | None = Field(
        None,
        description="The samples the adopted base (currentBaseModel) was trained on: merged into it, they are no "
        "longer new for fine-tunes, triggers or Gate 2 (they stay in the pool).",
    )
    run_counter: int = Field(0, description="Runs created for this pool; names runs deterministically.")
    next_scheduled_trigger: datetime | None = None
    last_alert: str | None = Field(None, description="The last Alertmanager alert received for this pool.")
    last_alert_time: datetime | None = None
    pending_alert: str | None = Field(None, description="An alert waiting for the trigger policy to allow a run.")
    pending_alert_time: datetime | None = None
    last_alert_action_time: datetime | None = Field(None, description="When an alert last started a run (cooldown).")
    base_evaluations: list[BaseEvaluation] = Field(
        default_factory=list, description="Gate 1 figures of the pool's bases, measured by verified gate Jobs."
    )
    conditions: Conditions


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Verified", "type": "integer", "jsonPath": ".status.verifiedSamples"},
    {"name": "Since-Last-Run", "type": "integer", "jsonPath": ".status.samplesSinceLastRun"},
    {"name": "Base", "type": "string", "jsonPath": ".status.currentBase"},
    {"name": "Active-Run", "type": "string", "jsonPath": ".status.activeRun"},
    *READY_COLUMNS,
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
