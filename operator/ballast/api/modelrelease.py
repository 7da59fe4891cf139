"""ModelRelease (`mrel`): which model one serving Deployment should run. GitOps edits `spec.model`."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ballast.api.common import (
    READY_COLUMNS,
    Conditions,
    Model,
    ModelRef,
    ModelVersion,
    ObjectName,
    StatusModel,
    Verdict,
)

KIND = "ModelRelease"
PLURAL = "modelreleases"
SHORT_NAME = "mrel"

# The serving container receives its model through these variables, from the release's ConfigMap
# (`<release>-model`, ballast.policy.servingconfig); the annotations mirror them.
ENV_MODEL_URI = "BALLAST_MODEL_URI"
ENV_MODEL_DIGEST = "BALLAST_MODEL_DIGEST"
ENV_MODEL_VERSION = "BALLAST_MODEL_VERSION"
ANNOTATION_MODEL = "ballast.dev/model"
ANNOTATION_MODEL_CHECKSUM = "ballast.dev/model-checksum"  # on the pod template: changing it rolls the pods
ANNOTATION_WRITTEN_AT = "ballast.dev/written-at"  # on the ConfigMap: when it got its current model

ReleasePhase = Literal["Pending", "Progressing", "Released", "Blocked", "RolledBack", "Failed"]


class DeploymentTarget(Model):
    name: ObjectName = Field(description="Deployment in the release's namespace.")
    container: str | None = Field(None, description="Container to update; defaults to the first one.")


class ModelReleaseSpec(Model):
    pool: ObjectName = Field(description="The FineTunePool whose runs produce the models.")
    deployment: DeploymentTarget
    model: ModelVersion = Field(description="Desired model version; set it to an earlier one to roll back.")
    history_limit: int = Field(5, ge=1, le=100, description="Released models kept in history for rollback.")
    progress_deadline_seconds: int = Field(600, ge=10, description="Roll back if the rollout is not Available by then.")


class ReleaseRecord(StatusModel):
    model: ModelRef
    run: str | None = None
    verdict: Verdict | None = None
    approved_by: str | None = None
    released_at: datetime
    released_by: str | None = Field(
        None, description="The field manager (tool) that last changed the release's spec; chosen by the client."
    )
    evidence: str | None = Field(None, description="Gate report URI of the run that produced the model.")


class ModelReleaseStatus(StatusModel):
    observed_generation: int | None = None
    phase: ReleasePhase = "Pending"
    message: str = ""
    current_model: str | None = Field(None, description="Model version the Deployment runs now.")
    desired_model: str | None = None
    previous_model: str | None = Field(None, description="What the Deployment ran before the current rollout.")
    history: list[ReleaseRecord] = Field(default_factory=list, description="Newest first; at most historyLimit.")
    pending: ReleaseRecord | None = Field(None, description="The release being rolled out, recorded once Available.")
    rollout_started_at: datetime | None = None
    failed_model: str | None = Field(
        None, description="A version whose rollout failed; not retried until spec changes."
    )
    rollbacks: int = 0
    conditions: Conditions


PRINTER_COLUMNS: list[dict[str, Any]] = [
    {"name": "Deployment", "type": "string", "jsonPath": ".spec.deployment.name"},
    {"name": "Model", "type": "string", "jsonPath": ".status.currentModel"},
    {"name": "Desired", "type": "string", "jsonPath": ".spec.model", "priority": 1},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    *READY_COLUMNS,
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]
