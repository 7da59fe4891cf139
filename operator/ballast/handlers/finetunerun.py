"""FineTuneRun reconciler: observe (spec, pool, Jobs, results) -> decide
(ballast.policy.finetunerun.decide_run) -> act (freeze the samples, write the plan, create a Job
under its deterministic name) and write status."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ballast.adapters import kube
from ballast.adapters import pool as samples
from ballast.adapters.objectstore import STORE_PROBLEMS, DigestMismatch, ObjectStore
from ballast.api import layout
from ballast.api.conditions import Reason, RunCondition
from ballast.api.contracts import GateReport, RunPlan, StageError, TrainResult, canonical_json, digest_bytes
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunSpec, FineTuneRunStatus
from ballast.api.samples import SampleRef, parse_manifest
from ballast.handlers.common import (
    POOLS,
    RUNS,
    Context,
    created_at,
    find,
    now,
    pool_releases,
    pool_runs,
    post,
    write_status,
)
from ballast.handlers.runtime import DONE, Key, Outcome
from ballast.policy.finetunerun import (
    JobState,
    JobView,
    RunAction,
    RunObservation,
    RunStep,
    decide_run,
    job_refused,
    plan_refused,
    planned,
    training_stage,
)
from ballast.policy.manifests import Stage, build_job, job_name
from ballast.policy.plan import PlanRefused, build_plan, ordinal_among_kind, plan_summary, serving_model


def artifacts(body: dict[str, Any]) -> layout.RunArtifacts:
    return layout.RunArtifacts(body["metadata"]["name"], body["metadata"]["uid"])


def _stage_detail(ctx: Context, store: ObjectStore, key: Key, files: layout.RunArtifacts, stage: Stage) -> str:
    """Why a stage failed: the trainer's own error document, else what the pod's exit says."""
    if store.exists(files.error(stage)):
        return StageError.model_validate_json(store.get(files.error(stage))).message[:500]
    return kube.pod_failure(ctx.clients, key.namespace, job_name(key.name, stage))


def expected_job(
    ctx: Context, body: dict[str, Any], plan: RunPlan, pool: FineTunePoolSpec, stage: Stage
) -> dict[str, Any]:
    """The Job this run's stage must be, built the same way every time from what the run records:
    its plan (digest-checked), and the trainer image its first Job ran (an operator upgrade does
    not disown Jobs already running). The pool's `jobs` settings shape it (queue, priority, volumes)
    without changing what it runs, so a pool edited meanwhile does not disown it either."""
    status = FineTuneRunStatus.model_validate(body.get("status") or {})
    assert status.plan is not None
    return build_job(
        run=body["metadata"]["name"],
        run_uid=body["metadata"]["uid"],
        pool=plan.pool,
        stage=stage,
        training=plan.training,
        image=status.jobs.image or ctx.settings.trainer_image,
        store=pool.object_store,
        plan_uri=status.plan.uri,
        plan_digest=status.plan.digest,
        jobs=pool.jobs,
    )


def _job(
    ctx: Context, key: Key, body: dict[str, Any], scope: tuple[FineTunePoolSpec, ObjectStore, RunPlan], stage: Stage
) -> JobView:
    pool, store, plan = scope
    job = kube.read_job(ctx.clients, key.namespace, expected_job(ctx, body, plan, pool, stage))
    if job.state is JobState.FAILED:
        return replace(job, detail=_stage_detail(ctx, store, key, artifacts(body), stage))
    return job


def _reported(store: ObjectStore, job: JobView, expected_key: str) -> tuple[bytes | None, str]:
    """The result document a succeeded Job reported, read back; or why it cannot be trusted."""
    report = job.reported
    if report is None:
        return None, "its pod reported no result digest in its termination message"
    if report.document != expected_key:
        return None, f"its pod reported {report.document}, not {expected_key}"
    if not store.exists(expected_key):
        return None, f"{expected_key} is missing"
    data = store.get(expected_key)
    if digest_bytes(data) != report.digest:
        return (
            None,
            f"{expected_key} is not what the Job wrote (its digest differs from the reported {report.digest[:19]}...)",
        )
    return data, ""


def _plan(store: ObjectStore, status: FineTuneRunStatus) -> RunPlan | None:
    """The run's plan as the operator wrote it: its bytes must match the digest in status."""
    if status.plan is None:
        return None
    return RunPlan.model_validate_json(store.get(store.relative(status.plan.uri), status.plan.digest))


def _approval_authorized(ctx: Context, key: Key, spec: FineTuneRunSpec) -> bool | None:
    """Ask the apiserver whether the approver may approve (admission asked too; this holds even
    when the admission policy is missing or was changed)."""
    approval = spec.approval
    if approval is None:
        return None
    return kube.may(ctx.clients, key.namespace, approval.by, approval.groups, "approve", RUNS, key.name)


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
        authorized = _approval_authorized(ctx, key, spec) if status.verdict == "Review" else None
        return RunObservation(**base, pool_problem=None, approval_authorized=authorized), None, None
    pool_body = find(ctx, Key(POOLS, key.namespace, spec.pool))
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
    try:
        plan = _plan(store, status)
    except DigestMismatch:
        problem = (Reason.RESULT_UNVERIFIED, "the plan in the store is not the one the operator wrote")
        return RunObservation(**base, pool_problem=problem), None, None
    fields: dict[str, Any] = {"pool_problem": None, "pool": pool, "plan": plan}
    if plan is not None and status.model is None:
        train = fields["train"] = _job(ctx, key, body, (pool, store, plan), training_stage(spec))
        if train.state is JobState.SUCCEEDED and not train.foreign:
            data, fields["result_problem"] = _reported(store, train, files.train_result)
            fields["train_result"] = TrainResult.model_validate_json(data) if data else None
    elif plan is not None and status.model is not None:
        gate = fields["gate"] = _job(ctx, key, body, (pool, store, plan), "gate")
        if gate.state is JobState.SUCCEEDED and not gate.foreign:
            data, fields["result_problem"] = _reported(store, gate, files.gate_report)
            fields["gate_report"] = GateReport.model_validate_json(data) if data else None
    return RunObservation(**base, **fields), store, pool


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


def merged_into_base(store: ObjectStore, spec: FineTuneRunSpec, pool_status: FineTunePoolStatus) -> list[SampleRef]:
    """The samples the run's base was trained on, when that base is one the pool adopted from a Rebase."""
    adopted, snapshot = pool_status.current_base_model, pool_status.base_snapshot
    if spec.kind != "FineTune" or adopted is None or snapshot is None or adopted.digest != spec.base_model.digest:
        return []
    return samples.read_snapshot(store, spec.pool, snapshot)


def write_plan(scope: Scope, action: RunAction) -> RunAction:
    """Write the plan (the same inputs always give the same plan) and record its digest; or refuse
    the run when a seed rule forbids its plan."""
    obs, store, pool, files = scope.obs, scope.store, scope.pool, artifacts(scope.body)
    assert obs.snapshot is not None
    runs = pool_runs(scope.ctx, scope.key.namespace, obs.spec.pool)
    pool_body = scope.ctx.body(Key(POOLS, scope.key.namespace, obs.spec.pool)) or {}
    pool_status = FineTunePoolStatus.model_validate(pool_body.get("status") or {})
    test_manifest = store.get(pool.anchor.test_manifest)
    merged = merged_into_base(store, obs.spec, pool_status)
    try:
        plan = build_plan(
            run=scope.key.name,
            uid=scope.body["metadata"]["uid"],
            spec=obs.spec,
            pool=pool,
            new=samples.read_snapshot(store, obs.spec.pool, obs.snapshot),
            anchor=parse_manifest(store.get(pool.anchor.train_manifest).decode(), pool.anchor.train_manifest),
            number=ordinal_among_kind(runs, obs.spec, scope.key.name, created_at(scope.body)),
            test_manifest_digest=digest_bytes(test_manifest),
            evaluations=pool_status.base_evaluations,
            serving=serving_model(pool_releases(scope.ctx, scope.key.namespace, obs.spec.pool)),
            merged=merged,
        )
    except PlanRefused as refusal:
        return plan_refused(obs, refusal.reason, str(refusal))
    raw = canonical_json(plan)
    store.put(files.plan, raw, "application/json")
    summary = plan_summary(plan, digest_bytes(raw), store.uri(files.plan), merged=len(merged))
    return planned(obs, summary, plan.new_version)


def create_job(scope: Scope, action: RunAction) -> RunAction:
    assert action.stage is not None and scope.obs.plan is not None
    job = expected_job(scope.ctx, scope.body, scope.obs.plan, scope.pool, action.stage)
    try:
        created = kube.create_job(scope.ctx.clients, scope.key.namespace, job)
    except kube.JobInvalid as refusal:
        return job_refused(scope.obs, action.stage, str(refusal))
    image = job["spec"]["template"]["spec"]["containers"][0]["image"]
    status = action.status.evolve(jobs=action.status.jobs.evolve(image=image))
    return replace(action, status=status, events=action.events if created else ())  # a retried step says nothing twice


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
        if ctx.metrics is not None:
            ctx.metrics.review_waiting(key.namespace, "", key.name, None)
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
    except STORE_PROBLEMS as error:
        retry = ctx.settings.store_retry_seconds
        write_status(ctx, key, body, status.evolve(message=f"{error}; retrying every {retry:.0f} s"))
        return Outcome(requeue_after=retry)
    updated = write_status(ctx, key, body, action.status, acted=action.step in ACT)
    post(ctx, updated, action.events)
    if action.status.phase in ("Succeeded", "Failed") and status.phase not in ("Succeeded", "Failed"):
        record_metrics(ctx, key, spec, action.status, body)
    record_review_waiting(ctx, key, spec, action.status)
    return Outcome(requeue_after=0) if action.step in CONTINUE else DONE


def record_review_waiting(ctx: Context, key: Key, spec: FineTuneRunSpec, status: FineTuneRunStatus) -> None:
    """A Review verdict waits for a person from the moment it was reached until a verified approval."""
    if ctx.metrics is None:
        return
    verified = any(c.type == RunCondition.APPROVED and c.status == "True" for c in status.conditions)
    waiting = status.phase == "Succeeded" and status.verdict == "Review" and not verified
    since = status.finished_at.timestamp() if waiting and status.finished_at is not None else None
    ctx.metrics.review_waiting(key.namespace, spec.pool, key.name, since)


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
