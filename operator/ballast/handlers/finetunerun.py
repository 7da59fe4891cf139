"""FineTuneRun reconciler: plan the mix, run the training Job, run the gate Job, record the verdict.

observe (spec, pool, Jobs, artifacts in the store) -> decide (ballast.policy.finetunerun.next_step)
-> act (write the plan, create a Job under its deterministic name, read results, write status).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import datetime
from typing import Any

import kopf
from pydantic import ValidationError

from ballast.adapters.kube import (
    Clients,
    StoreCredentialsMissing,
    create_or_get,
    get_custom,
    list_custom,
    object_store,
    pod_failure,
    read_job,
)
from ballast.adapters.objectstore import ObjectStore, StoreUnavailable
from ballast.api.common import GROUP, VERSION
from ballast.api.conditions import Reason, RunCondition
from ballast.api.contracts import GateReport, RunPlan, TrainResult, canonical_json, digest_bytes
from ballast.api.finetunepool import PLURAL as POOL_PLURAL
from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import (
    PLURAL,
    TERMINAL_PHASES,
    ClassGateRow,
    FineTuneRunSpec,
    FineTuneRunStatus,
    GateEvidence,
    JobNames,
    PlanSummary,
    SampleSnapshot,
)
from ballast.api.samples import parse_manifest
from ballast.handlers.common import (
    RUN_INTERVAL,
    apply_status,
    clients,
    event,
    now,
    reconciling,
    say_in_message,
    with_condition,
)
from ballast.handlers.finetunepool import freeze_snapshot, snapshot_key
from ballast.policy.finetunerun import RunObservation, Step, next_step
from ballast.policy.manifests import LABEL_POOL, build_job, job_name
from ballast.policy.mixing import draw_old_samples, old_sample_count
from ballast.policy.modelrelease import release_eligibility
from ballast.policy.versions import finetune_version, next_base_version


def run_prefix(run: str) -> str:
    return f"runs/{run}"


def plan_key(run: str) -> str:
    return f"{run_prefix(run)}/plan.json"


def recorded_seed(spec: FineTuneRunSpec, uid: str) -> int:
    """The run's seed: given in spec, or derived from its uid (stable across retries, new per run)."""
    if spec.seed is not None:
        return spec.seed
    return int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) % (2**31)


def _finetune_number(kube: Clients, namespace: str, spec: FineTuneRunSpec, name: str, created: str) -> int:
    """M in ft_v<N>.<M>: one more than this pool's earlier FineTune runs from the same base."""
    earlier = 0
    for run in list_custom(kube, namespace, PLURAL, f"{LABEL_POOL}={spec.pool}"):
        other = run.get("spec", {})
        stamp = (run["metadata"]["creationTimestamp"], run["metadata"]["name"])
        if (
            other.get("kind", "FineTune") == "FineTune"
            and other.get("baseModel", {}).get("version") == spec.base_model.version
            and stamp < (created, name)
        ):
            earlier += 1
    return earlier + 1


def write_plan(
    kube: Clients,
    store: ObjectStore,
    namespace: str,
    name: str,
    uid: str,
    created: str,
    spec: FineTuneRunSpec,
    pool: FineTunePoolSpec,
    snapshot: SampleSnapshot,
) -> tuple[RunPlan, str]:
    """The RunPlan, written once: a retry reads back the same plan (same draw, same seed)."""
    key = plan_key(name)
    if store.exists(key):
        raw = store.get(key)
        return RunPlan.model_validate(json.loads(raw)), digest_bytes(raw)
    manifest = store.get(snapshot_key(name), snapshot.manifest_digest).decode()
    new = parse_manifest(manifest, snapshot_key(name))
    anchor = parse_manifest(store.get(pool.anchor.train_manifest).decode(), pool.anchor.train_manifest)
    seed = recorded_seed(spec, uid)
    if spec.kind == "Rebase":
        old, rule = anchor, f"{len(new)} new + all {len(anchor)} anchor samples (rebase from scratch)"
        version = next_base_version(spec.base_model.version)
    else:
        mix = old_sample_count(len(new), spec.mixing)
        count, rule = mix.old_samples, mix.rule
        if count > len(anchor):
            count, rule = len(anchor), f"{rule}; limited to the {len(anchor)} anchor samples there are"
        drawn = set(draw_old_samples([r.image for r in anchor], count, seed))
        old = [r for r in anchor if r.image in drawn]
        version = finetune_version(spec.base_model.version, _finetune_number(kube, namespace, spec, name, created))
    plan = RunPlan(
        run=name,
        pool=spec.pool,
        kind=spec.kind,
        bucket=pool.object_store.bucket,
        prefix=pool.object_store.prefix,
        classes=pool.classes,
        base_model=spec.base_model,
        new_version=version,
        seed=seed,
        new_samples=new,
        old_samples=old,
        test_manifest=pool.anchor.test_manifest,
        mixing_rule=rule,
        training=spec.training,
        rebase=spec.rebase,
        gates=spec.gates,
    )
    raw = canonical_json(plan)
    store.put(key, raw, "application/json")
    return plan, digest_bytes(raw)


def _stage_error(store: ObjectStore, run: str, stage: str) -> str:
    key = f"{run_prefix(run)}/{stage}-error.json"
    if not store.exists(key):
        return ""
    return str(json.loads(store.get(key)).get("message", ""))


def approval_condition(status: FineTuneRunStatus, spec: FineTuneRunSpec, name: str) -> tuple[bool, Reason, str]:
    if status.verdict is None:
        return False, Reason.WAITING, "no verdict yet"
    decision = release_eligibility(
        status.model.version if status.model else "?", name, status.phase, status.verdict, spec.approval
    )
    return decision.allowed, decision.reason, decision.message


def _gate_evidence(report: GateReport, report_uri: str) -> GateEvidence:
    verdicts = {g.name: g.verdict for g in report.gates}
    moved = sorted(
        report.per_class_detection,
        key=lambda c: c.detection_rate if c.detection_rate is not None else 1.0,
    )[:3]
    return GateEvidence(
        base_map50=report.base_map50,
        candidate_map50=report.candidate_map50,
        map50_drop=report.map50_drop,
        drop_unit=report.drop_unit,
        detection_rate=report.detection_rate,
        gate1=verdicts.get("Gate1Regression"),
        gate2=verdicts.get("Gate2NewSamples"),
        gate3=verdicts.get("Gate3ABComparison"),
        worst_classes=[
            ClassGateRow(
                name=c.name, base_ap50=c.base_ap50, candidate_ap50=c.candidate_ap50, detection_rate=c.detection_rate
            )
            for c in moved
        ],
        report_uri=report_uri,
    )


GATE_CONDITIONS = {
    "Gate1Regression": RunCondition.GATE1_REGRESSION,
    "Gate2NewSamples": RunCondition.GATE2_NEW_SAMPLES,
    "Gate3ABComparison": RunCondition.GATE3_AB_COMPARISON,
}


def reconcile(name: str, namespace: str, uid: str, body: Any, patch: kopf.Patch, memo: Any) -> None:
    raw_status = dict(body.get("status") or {})
    status = FineTuneRunStatus.model_validate(raw_status)
    generation = body["metadata"].get("generation")
    spec = FineTuneRunSpec.model_validate(dict(body["spec"]))
    conditions = list(status.conditions)

    def set_(type_: str, ok: bool | str, reason: str, message: str) -> None:
        nonlocal conditions
        conditions = with_condition(conditions, type_, ok, reason, message, generation)

    def finish(update: dict[str, Any]) -> None:
        approved = approval_condition(status.model_copy(update=update), spec, name)
        set_(RunCondition.APPROVED, approved[0], approved[1], approved[2])
        apply_status(
            patch,
            raw_status,
            status.model_copy(update={**update, "conditions": conditions, "observed_generation": generation}),
        )

    if status.phase in TERMINAL_PHASES:
        finish({})  # only the Approved condition can still change (spec.approval)
        return

    kube = clients(memo)
    pool_body = get_custom(kube, namespace, POOL_PLURAL, spec.pool)
    if pool_body is None:
        message = f"FineTunePool {spec.pool} not found in {namespace}"
        event(body, "Failed", message, warning=True)
        finish({"phase": "Failed", "message": message, "finished_at": now()})
        return
    try:
        pool = FineTunePoolSpec.model_validate(pool_body["spec"])
        store = object_store(kube, namespace, pool.object_store)
        snapshot = spec.snapshot or status.snapshot
        if snapshot is None and not store.exists(plan_key(name)):
            snapshot = freeze_snapshot(store, spec.pool, name)  # a hand-made run: freeze the pool now
        train = read_job(kube, namespace, job_name(name, "train"))
        gate = read_job(kube, namespace, job_name(name, "gate"))
        observation = RunObservation(
            phase=status.phase,
            kind=spec.kind,
            sample_count=snapshot.sample_count if snapshot else None,
            plan_written=store.exists(plan_key(name)),
            train_job=train.state,
            train_result_written=store.exists(f"{run_prefix(name)}/train-result.json"),
            gate_job=gate.state,
            gate_report_written=store.exists(f"{run_prefix(name)}/gate-report.json"),
            terminal=False,
        )
    except (ValidationError, StoreCredentialsMissing) as error:
        message = f"pool {spec.pool}: {error}"[:1000]
        event(body, "Failed", message, warning=True)
        finish({"phase": "Failed", "message": message, "finished_at": now()})
        return
    except StoreUnavailable:
        raise  # said in status.message by the timer; retried soon
    except Exception as error:  # the API is down: retry, losing nothing
        raise kopf.TemporaryError(f"observing run {name}: {error}", delay=5) from None

    update: dict[str, Any] = {"snapshot": snapshot, "started_at": status.started_at or now()}
    step = next_step(observation)
    if step.step is Step.PLAN:
        plan, digest = write_plan(
            kube, store, namespace, name, uid, body["metadata"]["creationTimestamp"], spec, pool, snapshot
        )  # type: ignore[arg-type]
        summary = PlanSummary(
            new_samples=len(plan.new_samples),
            old_samples=len(plan.old_samples),
            rule=plan.mixing_rule,
            seed=plan.seed,
            digest=digest,
            uri=store.uri(plan_key(name)),
        )
        set_(
            RunCondition.PLANNED,
            True,
            Reason.PLAN_WRITTEN,
            f"{summary.new_samples} new + {summary.old_samples} old samples, seed {summary.seed} -> {plan.new_version}",
        )
        event(body, "Planned", f"{plan.kind} {plan.new_version} from {spec.base_model.version}: {plan.mixing_rule}")
        update |= {"phase": "Planning", "plan": summary, "message": "plan written"}
        # Go straight on to the training Job: no need to wait a tick between two steps we own.
        step = next_step(replace(observation, plan_written=True))
    if step.step is Step.REFUSE:
        set_(RunCondition.PLANNED, False, Reason.PLAN_REFUSED, step.message)
        event(body, step.reason, step.message, warning=True)
        update |= {"phase": "Failed", "message": step.message, "finished_at": now()}
    elif step.step in (Step.CREATE_TRAIN_JOB, Step.CREATE_GATE_JOB):
        stage = ("rebase" if spec.kind == "Rebase" else "train") if step.step is Step.CREATE_TRAIN_JOB else "gate"
        job = build_job(
            run=name,
            run_uid=uid,
            pool=spec.pool,
            stage=stage,
            spec=spec,
            store=pool.object_store,
            plan_uri=store.uri(plan_key(name)),
        )
        _, created = create_or_get(kube.batch.create_namespaced_job, kube.batch.read_namespaced_job, namespace, job)
        if created:
            event(body, "CreatedJob", f"Created Job {job['metadata']['name']}")
        jobs = status.jobs.model_copy(update={"train" if stage != "gate" else "gate": job["metadata"]["name"]})
        update |= {
            "phase": "Training" if stage != "gate" else "Gating",
            "jobs": jobs,
            "message": f"Job {job['metadata']['name']} running",
        }
    elif step.step is Step.READ_TRAIN_RESULT:
        result = TrainResult.model_validate(json.loads(store.get(f"{run_prefix(name)}/train-result.json")))
        set_(
            RunCondition.TRAINED,
            True,
            Reason.JOB_SUCCEEDED,
            f"{result.model.version} trained in {result.seconds:.0f} s",
        )
        event(body, "Trained", f"Trained {result.model.version} ({result.model.digest[:19]}...)")
        update |= {
            "phase": "Gating",
            "model": result.model,
            "lineage_uri": result.lineage_uri,
            "trained_at": now(),
            "message": "trained; gating",
        }
    elif step.step is Step.READ_GATE_REPORT:
        report_key = f"{run_prefix(name)}/gate-report.json"
        report = GateReport.model_validate(json.loads(store.get(report_key)))
        for gate_result in report.gates:
            set_(
                GATE_CONDITIONS[gate_result.name],
                gate_result.verdict == "Pass",
                gate_result.verdict,
                gate_result.reason,
            )
            event(
                body,
                gate_result.name,
                f"{gate_result.name} {gate_result.verdict}: {gate_result.reason}",
                warning=gate_result.verdict != "Pass",
            )
        if not spec.gates.ab_comparison.enabled:
            set_(RunCondition.GATE3_AB_COMPARISON, True, Reason.DISABLED, "gates.abComparison.enabled is false")
        update |= {
            "phase": "Succeeded",
            "verdict": report.verdict,
            "gates": _gate_evidence(report, store.uri(report_key)),
            "finished_at": now(),
            "message": f"verdict {report.verdict}",
        }
    elif step.step is Step.FAIL:
        stage, job_status = ("gate", gate) if step.reason.startswith("Gat") else ("train", train)
        detail = (
            _stage_error(store, name, "rebase" if spec.kind == "Rebase" and stage == "train" else stage)
            or step.message
            or pod_failure(kube, namespace, job_name(name, stage))
        )
        message = f"{step.reason}: Job {job_name(name, stage)} {job_status.reason or 'failed'}"
        if detail:
            message += f": {detail}"
        if stage == "train":
            set_(RunCondition.TRAINED, False, Reason.JOB_FAILED, message[:1000])
        event(body, step.reason, message[:1000], warning=True)
        update |= {"phase": "Failed", "message": message[:1000], "finished_at": now()}
    else:  # waiting on a Job
        update |= {
            "phase": "Training" if step.step is Step.WAIT_TRAINING else "Gating",
            "jobs": status.jobs if status.jobs != JobNames() else JobNames(train=job_name(name, "train")),
        }
    finish(update)


def record_run_metrics(
    memo: Any, namespace: str, spec: FineTuneRunSpec, name: str, status: FineTuneRunStatus, created: str
) -> None:
    metrics = memo.get("metrics")
    if metrics is None:
        return
    gates = status.gates
    if gates.base_map50 is not None and gates.candidate_map50 is not None:
        metrics.run_map50.labels(namespace, spec.pool, name, "base").set(gates.base_map50)
        metrics.run_map50.labels(namespace, spec.pool, name, "candidate").set(gates.candidate_map50)
    if gates.map50_drop is not None:
        metrics.run_drop.labels(namespace, spec.pool, name).set(gates.map50_drop)
    if gates.detection_rate is not None:
        metrics.run_detection.labels(namespace, spec.pool, name).set(gates.detection_rate)
    started = datetime.fromisoformat(created.replace("Z", "+00:00"))
    metrics.run_duration.labels(namespace, spec.pool, spec.kind).observe((now() - started).total_seconds())


@kopf.timer(GROUP, VERSION, PLURAL, interval=RUN_INTERVAL)
def run_timer(name: str, namespace: str, uid: str, body: Any, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    with reconciling(memo, "FineTuneRun", patch, say_in_message(patch)):
        reconcile(name, namespace, uid, body, patch, memo)
