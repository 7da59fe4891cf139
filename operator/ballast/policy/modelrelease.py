"""A ModelRelease's reconcile, decided (seed: never auto-deploy; a model must pass the gates).

`ReleaseObservation -> decide_release -> ReleaseAction`. The Deployment moves only to a model whose
run passed, or needs review and carries an approval; otherwise the release is Blocked and nothing
is touched. A rollout is watched until Available, recorded in history, or undone when it fails;
once Released, the pods are checked to run it (ModelDrift). The model reaches the pods through the
release's own ConfigMap (ballast.policy.servingconfig), so Git's Deployment never drifts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from ballast.api import layout
from ballast.api.common import Condition, ModelRef
from ballast.api.conditions import Reason, ReleaseCondition
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.api.modelrelease import ModelReleaseSpec, ModelReleaseStatus, ReleaseRecord
from ballast.policy.conditions import Event, set_condition
from ballast.policy.eligibility import Eligibility, release_eligibility
from ballast.policy.finetunerun import RunSummary
from ballast.policy.manifests import LABEL_RELEASE
from ballast.policy.servingconfig import (
    ModelConfigView,
    ModelSource,
    PodView,
    config_map_name,
    drifted_pods,
    how_to_read,
)
from ballast.policy.summary import summarize_release

Rollout = Literal["Available", "Progressing", "Failed"]


@dataclass(frozen=True)
class DeploymentView:
    name: str
    release: str | None  # the ModelRelease its `ballast.dev/model-release` label names (its opt-in)
    containers: tuple[str, ...]
    rollout: Rollout
    detail: str
    sources: Mapping[str, ModelSource] = field(default_factory=dict)  # per container: where its model comes from
    checksum: str | None = None  # the pod template's `ballast.dev/model-checksum`: the model its pods roll for


@dataclass(frozen=True)
class ReleaseObservation:
    name: str
    generation: int | None
    now: datetime
    spec: ModelReleaseSpec
    status: ModelReleaseStatus
    deployment: DeploymentView | None
    pool: FineTunePoolSpec | None
    pool_status: FineTunePoolStatus | None
    runs: tuple[RunSummary, ...]  # the pool's runs
    last_editor: str | None = None  # who last changed the release's spec
    model_config: ModelConfigView | None = None  # the release's ConfigMap, if it exists
    pods: tuple[PodView, ...] = ()  # the Deployment's pods, as the kubelet runs them


class ReleaseStep(StrEnum):
    NOTHING = "Nothing"
    UPDATE_STATUS = "UpdateStatus"
    BLOCK = "Block"
    ROLL_OUT = "RollOut"
    ROLL_BACK = "RollBack"


@dataclass(frozen=True)
class ReleaseAction:
    step: ReleaseStep
    status: ModelReleaseStatus
    events: tuple[Event, ...] = ()
    model: ModelRef | None = None  # ROLL_OUT: the run's model (published before the Deployment moves)
    target: ModelRef | None = None  # ROLL_OUT / ROLL_BACK: what the Deployment is pointed at
    container: str | None = None
    rollback: bool = False  # ROLL_OUT back to a model released before (counted as a rollback)
    wake_at: datetime | None = None  # the rollout deadline


def find_model(obs: ReleaseObservation) -> tuple[ModelRef | None, RunSummary | None]:
    """The model named by spec.model and the run that produced it (None for one of the pool's bases)."""
    version = obs.spec.model
    for run in obs.runs:
        if run.model is not None and run.model.version == version:
            return run.model, run
    if obs.pool is not None and obs.pool.base_model.version == version:
        return ModelRef.model_validate(obs.pool.base_model.to_wire()), None
    adopted = obs.pool_status.current_base_model if obs.pool_status else None
    if adopted is not None and adopted.version == version:
        return adopted, None
    return None, None


def ambiguous_producers(obs: ReleaseObservation) -> list[str]:
    """The runs that produced different models under the desired version (empty when unambiguous)."""
    producers = [r for r in obs.runs if r.model is not None and r.model.version == obs.spec.model]
    if len({r.model.digest for r in producers if r.model}) < 2:
        return []
    return [r.name for r in producers]


def eligibility(version: str, run: RunSummary | None) -> Eligibility:
    if run is None:
        return Eligibility(True, Reason.PASS, f"{version} is the pool's base model")
    return release_eligibility(version, run.name, run.phase, run.verdict, run.approved_by)


class _Builder:
    def __init__(self, obs: ReleaseObservation) -> None:
        self.obs = obs
        self.conditions: list[Condition] = list(obs.status.conditions)

    def no_drift_check(self) -> None:
        """Pods are checked only while Released: a ModelDrift from before does not hold any more."""
        self.conditions = [c for c in self.conditions if c.type != ReleaseCondition.MODEL_DRIFT]

    def condition(self, type_: str, ok: bool, reason: Reason, message: str) -> None:
        self.conditions = set_condition(self.conditions, type_, ok, reason, message, self.obs.now, self.obs.generation)

    def status(self, **changes: object) -> ModelReleaseStatus:
        """The new status: `changes`, these conditions and the kstatus summary (Ready, Reconciling, Stalled)."""
        obs = self.obs
        new = obs.status.evolve(
            **changes, conditions=self.conditions, observed_generation=obs.generation, desired_model=obs.spec.model
        )
        return summarize_release(new, obs.now)


def unchanged(obs: ReleaseObservation) -> ReleaseAction:
    """Nothing to do, unless the status lags: a spec change that moves nothing (historyLimit) still
    records the generation it saw (kstatus waits until it does), and a status written before the
    summary conditions existed gets them."""
    current = _Builder(obs).status()
    if current == obs.status:
        return ReleaseAction(ReleaseStep.NOTHING, obs.status)
    return ReleaseAction(ReleaseStep.UPDATE_STATUS, current)


def blocked(obs: ReleaseObservation, reason: Reason, message: str) -> ReleaseAction:
    """Blocked with the reason; the Deployment is untouched. An event only when the message changes."""
    builder = _Builder(obs)
    builder.no_drift_check()
    builder.condition(ReleaseCondition.BLOCKED, True, reason, message)
    repeated = obs.status.phase == "Blocked" and obs.status.message == message
    events = () if repeated else (Event(Reason.BLOCKED, message, warning=True),)
    return ReleaseAction(ReleaseStep.BLOCK, builder.status(phase="Blocked", message=message), events)


def _deadline(obs: ReleaseObservation) -> datetime | None:
    started = obs.status.rollout_started_at
    return started + timedelta(seconds=obs.spec.progress_deadline_seconds) if started else None


def _serving_desired(obs: ReleaseObservation, deployment: DeploymentView) -> ReleaseAction:
    spec, status = obs.spec, obs.status
    builder = _Builder(obs)
    if status.current_model == spec.model and status.phase == "Released":
        # Released already: a rollout now is the Deployment's own (Git changed its template), not
        # ours to time out or undo. What its pods run is checked once it settles.
        return _check_drift(obs) if deployment.rollout == "Available" else unchanged(obs)
    if deployment.rollout == "Available":
        first = status.history[0] if status.history and status.history[0].model.version == spec.model else None
        record = first or status.pending
        history = ([record] if record else []) + [h for h in status.history if h.model.version != spec.model]
        builder.condition(ReleaseCondition.AVAILABLE, True, Reason.ROLLED_OUT, deployment.detail)
        builder.condition(ReleaseCondition.BLOCKED, False, Reason.ROLLED_OUT, "")
        released = builder.status(
            phase="Released",
            current_model=spec.model,
            message=deployment.detail,
            history=history[: spec.history_limit],
            pending=None,
        )
        event = Event(Reason.RELEASED, f"Deployment {deployment.name} runs {spec.model} ({deployment.detail})")
        return ReleaseAction(ReleaseStep.UPDATE_STATUS, released, (event,))
    deadline = _deadline(obs)
    if deployment.rollout == "Failed" or (deadline is not None and obs.now > deadline):
        return _roll_back(obs, deployment)
    builder.condition(ReleaseCondition.AVAILABLE, False, Reason.PROGRESSING, deployment.detail)
    progressing = builder.status(phase="Progressing", message=deployment.detail)
    return ReleaseAction(ReleaseStep.UPDATE_STATUS, progressing, wake_at=deadline)


def _check_drift(obs: ReleaseObservation) -> ReleaseAction:
    """Released: do the ready pods run it? ModelDrift says which do not (and when that ends)."""
    status, config = obs.status, obs.model_config
    drifted = drifted_pods(config_map_name(obs.name), config, obs.pods) if config else []
    was = next((c for c in status.conditions if c.type == ReleaseCondition.MODEL_DRIFT), None)
    drifting = was is not None and was.status == "True"
    if drifted:
        message = f"{len(drifted)} pod(s) do not run {obs.spec.model}: " + "; ".join(drifted[:5])
        if drifting and was is not None and was.message == message:
            return unchanged(obs)
        builder = _Builder(obs)
        builder.condition(ReleaseCondition.MODEL_DRIFT, True, Reason.MODEL_DRIFT, message)
        event = Event(Reason.MODEL_DRIFT, message, warning=True)
        return ReleaseAction(ReleaseStep.UPDATE_STATUS, builder.status(message=message), (event,))
    if not drifting:
        return unchanged(obs)
    builder = _Builder(obs)
    message = f"every ready pod runs {obs.spec.model}"
    builder.condition(ReleaseCondition.MODEL_DRIFT, False, Reason.NO_DRIFT, message)
    event = Event(Reason.NO_DRIFT, message)
    return ReleaseAction(ReleaseStep.UPDATE_STATUS, builder.status(message=message), (event,))


def _roll_back(obs: ReleaseObservation, deployment: DeploymentView) -> ReleaseAction:
    """The rollout failed: put the previous model back (if there was one) and remember the failure."""
    spec, status = obs.spec, obs.status
    previous = next((h for h in status.history if h.model.version != spec.model), None)
    message = f"rollout of {spec.model} failed ({deployment.detail})"
    if previous is not None:
        message += f"; rolled back to {previous.model.version}"
    builder = _Builder(obs)
    builder.no_drift_check()
    builder.condition(ReleaseCondition.AVAILABLE, False, Reason.ROLLOUT_FAILED, message)
    rolled_back = builder.status(
        phase="RolledBack",
        message=message,
        failed_model=spec.model,
        rollbacks=status.rollbacks + 1,
        current_model=previous.model.version if previous else None,
        pending=None,
        rollout_started_at=None,
    )
    return ReleaseAction(
        ReleaseStep.ROLL_BACK,
        rolled_back,
        (Event(Reason.ROLLED_BACK, message, warning=True),),
        target=previous.model if previous else None,
        container=_container(spec, deployment),
    )


def _container(spec: ModelReleaseSpec, deployment: DeploymentView) -> str | None:
    wanted = spec.deployment.container
    if wanted is None:
        return deployment.containers[0] if deployment.containers else None
    return wanted if wanted in deployment.containers else None


def decide_release(obs: ReleaseObservation) -> ReleaseAction:
    spec, status = obs.spec, obs.status
    deployment = obs.deployment
    if deployment is None:
        return blocked(obs, Reason.DEPLOYMENT_NOT_FOUND, f"Deployment {spec.deployment.name} not found")
    if deployment.release != obs.name:
        return blocked(
            obs,
            Reason.DEPLOYMENT_NOT_OPTED_IN,
            f"Deployment {deployment.name} has not opted in: its owner sets the label {LABEL_RELEASE}={obs.name}",
        )
    config_map = config_map_name(obs.name)
    config = obs.model_config
    if config is not None and config.release != obs.name:
        return blocked(
            obs,
            Reason.CONFIG_MAP_NOT_OWNED,
            f"ConfigMap {config_map} exists and is not this release's (its label {LABEL_RELEASE} does not name "
            f"{obs.name}): the operator will not overwrite it (delete it, or name the release differently)",
        )
    if status.failed_model == spec.model:  # before anything else: a failed model is not retried
        if status.phase == "RolledBack":
            return unchanged(obs)
        return blocked(
            obs,
            Reason.ROLLOUT_FAILED,
            f"{spec.model} failed to roll out and was rolled back; set spec.model to another version",
        )
    # Serving means both halves are in place: the model in the ConfigMap, and the pods rolled for it
    # (the template's checksum). Either one missing (a write that failed halfway) is written again.
    serving = config.version if config is not None and deployment.checksum == config.checksum() else None
    if serving is not None and serving == spec.model:
        return _serving_desired(obs, deployment)
    if obs.pool is None:
        return blocked(obs, Reason.MODEL_NOT_FOUND, f"FineTunePool {spec.pool} not found")
    producers = ambiguous_producers(obs)
    if producers:
        return blocked(
            obs,
            Reason.MODEL_AMBIGUOUS,
            f"runs {', '.join(producers)} each produced a different {spec.model}: none is released "
            "(rebase attempts made before versions were unique)",
        )
    model, run = find_model(obs)
    if model is None:
        return blocked(obs, Reason.MODEL_NOT_FOUND, f"no run of pool {spec.pool} produced {spec.model}")
    decision = eligibility(spec.model, run)
    if not decision.allowed:
        return blocked(obs, decision.reason, decision.message)
    container = _container(spec, deployment)
    if container is None:
        return blocked(
            obs,
            Reason.DEPLOYMENT_NOT_FOUND,
            f"spec.deployment.container: {spec.deployment.container} is not a container of {deployment.name}",
        )
    source = deployment.sources.get(container, ModelSource())
    if not source.reads(config_map):
        return blocked(
            obs,
            Reason.DEPLOYMENT_NOT_READING_MODEL,
            f"{deployment.name} does not take its model from this release: "
            + how_to_read(deployment.name, container, config_map, source),
        )
    store = obs.pool.object_store
    target = model.evolve(
        uri=layout.s3_uri(store.bucket, store.prefix, layout.released_model(spec.pool, model.version))
    )
    record = ReleaseRecord(
        model=target,
        run=run.name if run else None,
        verdict=run.verdict if run else None,
        approved_by=run.approved_by if run else None,
        released_at=obs.now,
        released_by=obs.last_editor,
        evidence=run.report_uri if run else None,
    )
    # Back to a model released before, not the same one written again (a ConfigMap deleted by hand).
    rollback = status.current_model != spec.model and any(h.model.version == spec.model for h in status.history)
    builder = _Builder(obs)
    builder.no_drift_check()
    builder.condition(ReleaseCondition.BLOCKED, False, decision.reason, decision.message)
    builder.condition(ReleaseCondition.AVAILABLE, False, Reason.PROGRESSING, f"rolling out {spec.model}")
    rolling = builder.status(
        phase="Progressing",
        message=f"rolling out {spec.model}",
        rollout_started_at=obs.now,
        pending=record,
        previous_model=config.version if config is not None else None,
        failed_model=None,
        rollbacks=status.rollbacks + (1 if rollback else 0),
    )
    event = Event(
        Reason.ROLLING_BACK if rollback else Reason.ROLLOUT,
        f"ConfigMap {config_map} and Deployment {deployment.name}: {status.current_model or 'nothing'} -> {spec.model} "
        f"({decision.message})",
    )
    deadline = obs.now + timedelta(seconds=spec.progress_deadline_seconds)
    return ReleaseAction(
        ReleaseStep.ROLL_OUT,
        rolling,
        (event,),
        model=model,
        target=target,
        container=container,
        rollback=rollback,
        wake_at=deadline,
    )


def last_spec_editor(managed_fields: Sequence[dict]) -> str | None:
    """The field manager that last wrote the spec: a tool's name (kubectl, argocd), which the
    client chooses. Recorded as a hint; who approved a Review comes from the verified approval."""
    for entry in reversed(managed_fields):
        if "f:spec" in str(entry.get("fieldsV1", {})):
            return str(entry.get("manager"))
    return None
