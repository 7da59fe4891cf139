"""FineTuneRun reconciler: observe (spec, pool, Jobs, results) -> decide
(ballast.policy.finetunerun.decide_run) -> act (freeze the samples, write the plan, create a Job
under its deterministic name) and write status."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ballast.adapters import kube
from ballast.adapters import pool as samples
from ballast.adapters.objectstore import ObjectStore, StoreUnavailable
from ballast.api import layout
from ballast.api.conditions import Reason
from ballast.api.contracts import GateReport, StageError, TrainResult, canonical_json, digest_bytes
from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import FineTuneRunSpec, FineTuneRunStatus
from ballast.api.samples import parse_manifest
from ballast.handlers.common import POOLS, Context, created_at, now, pool_runs, post, write_status
from ballast.handlers.runtime import DONE, Key, Outcome
from ballast.policy.finetunerun import (
    NO_JOB,
    JobState,
    JobView,
    RunAction,
    RunObservation,
    RunStep,
    decide_run,
    planned,
    training_stage,
)
from ballast.policy.manifests import Stage, build_job, job_name
from ballast.policy.plan import build_plan, finetune_number, plan_summary


def artifacts(body: dict[str, Any]) -> layout.RunArtifacts:
    return layout.RunArtifacts(body["metadata"]["name"], body["metadata"]["uid"])


def _stage_detail(ctx: Context, store: ObjectStore, key: Key, files: layout.RunArtifacts, stage: Stage) -> str:
    """Why a stage failed: the trainer's own error document, else what the pod's exit says."""
    if store.exists(files.error(stage)):
        return StageError.model_validate_json(store.get(files.error(stage))).message
    return kube.pod_failure(ctx.clients, key.namespace, job_name(key.name, stage))


def _job(ctx: Context, key: Key, store: ObjectStore, files: layout.RunArtifacts, stage: Stage) -> JobView:
    job = kube.read_job(ctx.clients, key.namespace, job_name(key.name, stage))
    if job.state is JobState.FAILED:
        return JobView(job.state, job.reason, _stage_detail(ctx, store, key, files, stage))
    return job


def observe(
    ctx: Context, key: Key, body: dict[str, Any], spec: FineTuneRunSpec, status: FineTuneRunStatus
) -> tuple[RunObservation, ObjectStore | None, FineTunePoolSpec | None]:
    base = {
        "name": key.name,
        "generation": body["metadata"].get("generation"),
        "now": now(),
        "spec": spec,
        "status": status,
    }
    if status.phase in ("Succeeded", "Failed"):
        return RunObservation(**base, pool_problem=None), None, None
    pool_body = ctx.body(Key(POOLS, key.namespace, spec.pool))
    if pool_body is None:
        problem = (Reason.POOL_NOT_FOUND, f"FineTunePool {spec.pool} not found in {key.namespace}")
        return RunObservation(**base, pool_problem=problem), None, None
    try:
        pool = FineTunePoolSpec.model_validate(pool_body["spec"])
        store = kube.object_store(ctx.clients, key.namespace, pool.object_store)
    except (ValidationError, kube.StoreCredentialsMissing) as error:
        problem = (Reason.POOL_UNUSABLE, f"pool {spec.pool}: {error}")
        return RunObservation(**base, pool_problem=problem), None, None
    files = artifacts(body)
    train, gate, result, report = NO_JOB, NO_JOB, None, None
    if status.plan is not None and status.model is None:
        train = _job(ctx, key, store, files, training_stage(spec))
        if train.state is JobState.SUCCEEDED and store.exists(files.train_result):
            result = TrainResult.model_validate(json.loads(store.get(files.train_result)))
    elif status.model is not None:
        gate = _job(ctx, key, store, files, "gate")
        if gate.state is JobState.SUCCEEDED and store.exists(files.gate_report):
            report = GateReport.model_validate(json.loads(store.get(files.gate_report)))
    observation = RunObservation(
        **base, pool_problem=None, train=train, train_result=result, gate=gate, gate_report=report
    )
    return observation, store, pool


@dataclass(frozen=True)
class Scope:
    """What one reconcile of one run acts on."""

    ctx: Context
    key: Key
    body: dict[str, Any]
    obs: RunObservation
    store: ObjectStore
    pool: FineTunePoolSpec


def freeze_snapshot(scope: Scope, action: RunAction) -> RunAction:
    """A hand-made run names no snapshot: the pool's samples now are its samples."""
    snapshot = samples.freeze_snapshot(scope.store, scope.obs.spec.pool)
    return replace(action, status=action.status.evolve(snapshot=snapshot))


def write_plan(scope: Scope, action: RunAction) -> RunAction:
    """Write the plan (the same inputs always give the same plan) and record its digest."""
    obs, store, pool, files = scope.obs, scope.store, scope.pool, artifacts(scope.body)
    assert obs.snapshot is not None
    runs = pool_runs(scope.ctx, scope.key.namespace, obs.spec.pool)
    plan = build_plan(
        run=scope.key.name,
        uid=scope.body["metadata"]["uid"],
        spec=obs.spec,
        pool=pool,
        new=samples.read_snapshot(store, obs.spec.pool, obs.snapshot),
        anchor=parse_manifest(store.get(pool.anchor.train_manifest).decode(), pool.anchor.train_manifest),
        number=finetune_number(runs, obs.spec, scope.key.name, created_at(scope.body)),
    )
    raw = canonical_json(plan)
    store.put(files.plan, raw, "application/json")
    return planned(obs, plan_summary(plan, digest_bytes(raw), store.uri(files.plan)), plan.new_version)


def create_job(scope: Scope, action: RunAction) -> RunAction:
    plan = scope.obs.status.plan
    assert action.stage is not None and plan is not None
    job = build_job(
        run=scope.key.name,
        run_uid=scope.body["metadata"]["uid"],
        pool=scope.obs.spec.pool,
        stage=action.stage,
        spec=scope.obs.spec,
        store=scope.pool.object_store,
        plan_uri=plan.uri,
    )
    created = kube.create_job(scope.ctx.clients, scope.key.namespace, job)
    return action if created else replace(action, events=())  # a retried step says nothing twice


def record_verdict(scope: Scope, action: RunAction) -> RunAction:
    """The report's URI is where the operator read it; the evidence in status points there."""
    gates = action.status.gates.evolve(report_uri=scope.store.uri(artifacts(scope.body).gate_report))
    return replace(action, status=action.status.evolve(gates=gates))


# Steps whose only effect is the status they carry are not listed.
ACT: dict[RunStep, Callable[[Scope, RunAction], RunAction]] = {
    RunStep.FREEZE_SNAPSHOT: freeze_snapshot,
    RunStep.PLAN: write_plan,
    RunStep.CREATE_JOB: create_job,
    RunStep.RECORD_VERDICT: record_verdict,
}
# Steps after which the next step is ours to take at once (no Job or person to wait for).
CONTINUE = {RunStep.FREEZE_SNAPSHOT, RunStep.PLAN, RunStep.RECORD_TRAINED}


def reconcile(ctx: Context, key: Key) -> Outcome:
    body = ctx.body(key)
    if body is None:
        return DONE
    spec = FineTuneRunSpec.model_validate(body["spec"])
    status = FineTuneRunStatus.model_validate(body.get("status") or {})
    try:
        obs, store, pool = observe(ctx, key, body, spec, status)
        action = decide_run(obs)
        act = ACT.get(action.step)
        if act is not None:
            assert store is not None and pool is not None  # decide_run acts only on a usable pool
            action = act(Scope(ctx, key, body, obs, store, pool), action)
    except StoreUnavailable as error:
        retry = ctx.settings.store_retry_seconds
        write_status(ctx, key, body, status.evolve(message=f"{error}; retrying every {retry:.0f} s"))
        return Outcome(requeue_after=retry)
    updated = write_status(ctx, key, body, action.status)
    post(ctx, updated, action.events)
    if action.status.phase in ("Succeeded", "Failed") and status.phase not in ("Succeeded", "Failed"):
        record_metrics(ctx, key, spec, action.status, body)
    return Outcome(requeue_after=0) if action.step in CONTINUE else DONE


def record_metrics(
    ctx: Context, key: Key, spec: FineTuneRunSpec, status: FineTuneRunStatus, body: dict[str, Any]
) -> None:
    metrics = ctx.metrics
    if metrics is None:
        return
    gates, ns = status.gates, key.namespace
    if gates.base_map50 is not None and gates.candidate_map50 is not None:
        metrics.run_map50.labels(ns, spec.pool, key.name, "base").set(gates.base_map50)
        metrics.run_map50.labels(ns, spec.pool, key.name, "candidate").set(gates.candidate_map50)
    if gates.map50_drop is not None:
        metrics.run_drop.labels(ns, spec.pool, key.name).set(gates.map50_drop)
    if gates.detection_rate is not None:
        metrics.run_detection.labels(ns, spec.pool, key.name).set(gates.detection_rate)
    metrics.run_duration.labels(ns, spec.pool, spec.kind).observe((now() - created_at(body)).total_seconds())
