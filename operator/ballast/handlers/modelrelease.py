"""ModelRelease reconciler: observe (spec, the pool and its runs, the Deployment, its pods and the
release's ConfigMap) -> decide (ballast.policy.modelrelease.decide_release) -> act (publish the
model, write it into the release's ConfigMap and roll the pods, or put the previous model back)
and write status. A blocked release touches nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, get_args

from pydantic import ValidationError

from ballast.adapters import kube
from ballast.adapters.models import publish_model
from ballast.adapters.objectstore import STORE_PROBLEMS, DigestMismatch
from ballast.api.common import ModelRef
from ballast.api.conditions import Reason, ReleaseCondition
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.api.modelrelease import ModelReleaseSpec, ModelReleaseStatus, ReleasePhase
from ballast.handlers.common import POOLS, Context, find, now, pool_runs, post, write_status
from ballast.handlers.runtime import DONE, Key, Outcome
from ballast.policy.manifests import LABEL_RELEASE, MANAGED_BY
from ballast.policy.modelrelease import (
    ReleaseAction,
    ReleaseObservation,
    ReleaseStep,
    blocked,
    decide_release,
    last_spec_editor,
)
from ballast.policy.servingconfig import config_map_name, deployment_roll, model_config_map


def observe(ctx: Context, key: Key, body: dict[str, Any], spec: ModelReleaseSpec) -> ReleaseObservation:
    pool_body = find(ctx, Key(POOLS, key.namespace, spec.pool))
    pool, pool_status = None, None
    if pool_body is not None:
        try:
            pool = FineTunePoolSpec.model_validate(pool_body["spec"])
            pool_status = FineTunePoolStatus.model_validate(pool_body.get("status") or {})
        except ValidationError:
            pool = None
    return ReleaseObservation(
        name=key.name,
        generation=body["metadata"].get("generation"),
        now=now(),
        spec=spec,
        status=ModelReleaseStatus.model_validate(body.get("status") or {}),
        deployment=kube.read_deployment(ctx.clients, key.namespace, spec.deployment.name),
        pool=pool,
        pool_status=pool_status,
        runs=pool_runs(ctx, key.namespace, spec.pool),
        last_editor=last_spec_editor(body["metadata"].get("managedFields") or []),
        model_config=kube.read_model_config(ctx.clients, key.namespace, config_map_name(key.name)),
        pods=kube.serving_pods(ctx.clients, key.namespace, spec.deployment.name, spec.deployment.container),
    )


def roll_out(ctx: Context, key: Key, obs: ReleaseObservation, action: ReleaseAction) -> ReleaseAction:
    """Publish the model (digests checked), then point the Deployment at the published copy."""
    assert obs.pool is not None and action.model is not None and action.target is not None
    assert action.container is not None
    try:
        store = kube.object_store(ctx.clients, key.namespace, obs.pool.object_store)
        publish_model(store, obs.spec.pool, action.model)
    except DigestMismatch as error:
        return blocked(obs, Reason.DIGEST_MISMATCH, f"{obs.spec.model}: {error}")
    except kube.StoreCredentialsMissing as error:
        return blocked(obs, Reason.MODEL_NOT_FOUND, str(error))
    point_at(ctx, key, obs, action.target)
    if action.rollback and ctx.metrics is not None:
        ctx.metrics.release_rollbacks.labels(key.namespace, key.name).inc()
    return action


def roll_back(ctx: Context, key: Key, obs: ReleaseObservation, action: ReleaseAction) -> ReleaseAction:
    if action.target is not None:
        point_at(ctx, key, obs, action.target)
    if ctx.metrics is not None:
        ctx.metrics.release_rollbacks.labels(key.namespace, key.name).inc()
    return action


def point_at(ctx: Context, key: Key, obs: ReleaseObservation, model: ModelRef) -> None:
    """The model into the release's ConfigMap, then the pods rolled (one pod-template annotation)."""
    labels = {LABEL_RELEASE: key.name, **MANAGED_BY}
    kube.apply(ctx.clients, key.namespace, model_config_map(key.name, model, now(), labels))
    kube.apply(ctx.clients, key.namespace, deployment_roll(obs.spec.deployment.name, model))


ACT = {ReleaseStep.ROLL_OUT: roll_out, ReleaseStep.ROLL_BACK: roll_back}


def reconcile(ctx: Context, key: Key) -> Outcome:
    body = ctx.body(key)
    if body is None:
        forget_metrics(ctx, key)
        return DONE
    spec = ModelReleaseSpec.model_validate(body["spec"])
    try:
        obs = observe(ctx, key, body, spec)
        action = decide_release(obs)
        act = ACT.get(action.step)
        if act is not None:
            action = act(ctx, key, obs, action)
    except STORE_PROBLEMS as error:
        retry = ctx.settings.store_retry_seconds
        status = ModelReleaseStatus.model_validate(body.get("status") or {})
        write_status(ctx, key, body, status.evolve(message=f"{error}; retrying every {retry:.0f} s"))
        return Outcome(requeue_after=retry)
    if action.step is ReleaseStep.NOTHING:
        record_metrics(ctx, key, ModelReleaseStatus.model_validate(body.get("status") or {}))
        return DONE
    updated = write_status(ctx, key, body, action.status, acted=action.step in ACT)
    post(ctx, updated, action.events)
    record_metrics(ctx, key, action.status)
    if action.wake_at is None:
        return DONE
    # Wake just after the rollout deadline, if no Deployment event comes first.
    return Outcome(requeue_after=max(0.0, (action.wake_at + timedelta(seconds=1) - now()).total_seconds()))


def record_metrics(ctx: Context, key: Key, status: ModelReleaseStatus) -> None:
    metrics = ctx.metrics
    if metrics is None:
        return
    for phase in get_args(ReleasePhase):
        metrics.release_phase.labels(key.namespace, key.name, phase).set(1 if phase == status.phase else 0)
    metrics.release_rollbacks.labels(key.namespace, key.name)  # at 0 until the first: increase() sees that one
    drifting = status.phase == "Released" and any(
        c.type == ReleaseCondition.MODEL_DRIFT and c.status == "True" for c in status.conditions
    )
    metrics.release_drift.labels(key.namespace, key.name).set(1 if drifting else 0)
    if status.phase != "Released" or status.current_model is None:
        return
    for record in status.history[1:]:
        metrics.release_model.labels(key.namespace, key.name, record.model.version).set(0)
    metrics.release_model.labels(key.namespace, key.name, status.current_model).set(1)


def forget_metrics(ctx: Context, key: Key) -> None:
    """A deleted release is in no phase: its Blocked or RolledBack alert resolves."""
    if ctx.metrics is not None:
        ctx.metrics.release_phase.remove_by_labels({"namespace": key.namespace, "release": key.name})
        ctx.metrics.release_model.remove_by_labels({"namespace": key.namespace, "release": key.name})
        ctx.metrics.release_rollbacks.remove_by_labels({"namespace": key.namespace, "release": key.name})
        ctx.metrics.release_drift.remove_by_labels({"namespace": key.namespace, "release": key.name})
