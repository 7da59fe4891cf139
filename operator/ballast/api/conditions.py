"""Condition types and reasons. Each type's doc says exactly when it is True.

`kubectl wait --for=condition=<Type>` works with every type here.
"""

from __future__ import annotations

from enum import StrEnum


class PoolCondition(StrEnum):
    READY = "Ready"
    """True when the pool's spec is valid and its object store was listed in the last reconcile."""
    RUN_DUE = "RunDue"
    """True when the trigger policy says a fine-tune should start (or one was just started for it)."""
    REBASE_RECOMMENDED = "RebaseRecommended"
    """True when samples since the current base reach `rebase.threshold` (seed: 2000)."""


class RunCondition(StrEnum):
    PLANNED = "Planned"
    """True when the RunPlan (sample mix and seed) is written to the object store."""
    TRAINED = "Trained"
    """True when the training Job succeeded and its TrainResult was read back."""
    GATE1_REGRESSION = "Gate1Regression"
    """True when Gate 1 (mAP50 drop on the held-out test set) passed; reason carries the verdict."""
    GATE2_NEW_SAMPLES = "Gate2NewSamples"
    """True when Gate 2 (detection rate on the new samples) passed; reason carries the verdict."""
    GATE3_AB_COMPARISON = "Gate3ABComparison"
    """True when Gate 3 (per-class A/B on the audit set) passed or is disabled."""
    APPROVED = "Approved"
    """True when the model may be released: verdict Pass, or Review with a recorded approval."""


class ReleaseCondition(StrEnum):
    AVAILABLE = "Available"
    """True when the Deployment runs the desired model and its rollout is Available."""
    BLOCKED = "Blocked"
    """True when the desired model may not be released (reason says why); the Deployment is untouched."""


class Reason(StrEnum):
    # Pool
    SPEC_VALID = "SpecValid"
    SPEC_INVALID = "SpecInvalid"
    STORE_UNREACHABLE = "ObjectStoreUnreachable"
    SAMPLES_LISTED = "SamplesListed"
    ENOUGH_NEW_SAMPLES = "EnoughNewSamples"
    SCHEDULE_DUE = "ScheduleDue"
    ALERT_RECEIVED = "AlertReceived"
    TOO_FEW_SAMPLES = "TooFewSamples"
    RUN_ACTIVE = "RunActive"
    SUSPENDED = "Suspended"
    NOT_DUE = "NotDue"
    REBASE_THRESHOLD_REACHED = "RebaseThresholdReached"
    BELOW_REBASE_THRESHOLD = "BelowRebaseThreshold"
    # Run
    PLAN_WRITTEN = "PlanWritten"
    PLAN_REFUSED = "PlanRefused"
    JOB_SUCCEEDED = "JobSucceeded"
    JOB_FAILED = "JobFailed"
    WAITING = "Waiting"
    PASS = "Pass"
    REVIEW = "Review"
    REJECT = "Reject"
    DISABLED = "Disabled"
    APPROVED = "Approved"
    AWAITING_APPROVAL = "AwaitingApproval"
    REJECTED = "Rejected"
    # Release
    ROLLED_OUT = "RolledOut"
    PROGRESSING = "Progressing"
    MODEL_NOT_FOUND = "ModelNotFound"
    RUN_NOT_APPROVED = "RunNotApproved"
    RUN_REJECTED = "RunRejected"
    RUN_NOT_FINISHED = "RunNotFinished"
    DIGEST_MISMATCH = "DigestMismatch"
    DEPLOYMENT_NOT_FOUND = "DeploymentNotFound"
    ROLLOUT_FAILED = "RolloutFailed"
