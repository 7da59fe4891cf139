"""ModelRelease reconciler: move a serving Deployment to a model only when its run allows it.

observe (spec, the run that produced the model, the Deployment) -> decide (release eligibility,
digest check, rollout state) -> act (patch the Deployment, wait for Available, record history, or
roll back). A blocked release touches nothing.
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from ballast.adapters.kube import Clients, StoreCredentialsMissing, get_custom, list_custom, object_store, rollout_state
from ballast.adapters.objectstore import DigestMismatch, ObjectStore
from ballast.api.common import GROUP, VERSION, ModelRef
from ballast.api.conditions import Reason, ReleaseCondition
from ballast.api.finetunepool import PLURAL as POOL_PLURAL
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.api.finetunerun import PLURAL as RUN_PLURAL
from ballast.api.finetunerun import FineTuneRunSpec
from ballast.api.modelrelease import (
    ANNOTATION_MODEL,
    PLURAL,
    ModelReleaseSpec,
    ModelReleaseStatus,
    ReleaseRecord,
)
from ballast.handlers.common import (
    RELEASE_INTERVAL,
    apply_status,
    clients,
    event,
    now,
    reconciling,
    say_in_message,
    with_condition,
)
from ballast.policy.manifests import LABEL_POOL, deployment_patch
from ballast.policy.modelrelease import Eligibility, release_eligibility


def find_model(
    kube: Clients, namespace: str, pool_name: str, version: str
) -> tuple[ModelRef | None, dict[str, Any] | None, FineTunePoolSpec | None]:
    """The model named `version` and the run that produced it (None for the pool's original base)."""
    pool_body = get_custom(kube, namespace, POOL_PLURAL, pool_name)
    if pool_body is None:
        return None, None, None
    pool = FineTunePoolSpec.model_validate(pool_body["spec"])
    for run in list_custom(kube, namespace, RUN_PLURAL, f"{LABEL_POOL}={pool_name}"):
        model = run.get("status", {}).get("model")
        if model and model["version"] == version:
            return ModelRef.model_validate(model), run, pool
    if pool.base_model.version == version:
        return ModelRef.model_validate(pool.base_model.to_wire()), None, pool
    adopted = FineTunePoolStatus.model_validate(pool_body.get("status") or {}).current_base_model
    if adopted and adopted.version == version:
        return adopted, None, pool
    return None, None, pool


def eligibility(version: str, run: dict[str, Any] | None, is_base: bool) -> Eligibility:
    if run is None:
        if is_base:
            return Eligibility(True, Reason.PASS, f"{version} is the pool's base model")
        return release_eligibility(version, None, None, None, None)
    status = run.get("status", {})
    approval = FineTuneRunSpec.model_validate(run["spec"]).approval
    return release_eligibility(version, run["metadata"]["name"], status.get("phase"), status.get("verdict"), approval)


def publish(store: ObjectStore, model: ModelRef) -> str:
    """Verify the artifact's digest, keep a copy under models/<version>/ (retained for rollback)."""
    source = store.relative(model.uri)
    target = f"models/{model.version}/model.pt"
    if source != target and not store.exists(target):
        store.get(source, model.digest)
        store.copy(source, target)
        for sidecar in ("lineage.json", "baseline.json"):
            key = source.rsplit("/", 1)[0] + "/" + sidecar
            if store.exists(key):
                store.copy(key, f"models/{model.version}/{sidecar}")
    store.get(target, model.digest)  # the copy that serves must match too
    return store.uri(target)


def _container(deployment: Any, wanted: str | None) -> str:
    names = [c.name for c in deployment.spec.template.spec.containers]
    if wanted is None:
        return str(names[0])
    if wanted not in names:
        raise ValueError(f"spec.deployment.container: {wanted} is not a container of {deployment.metadata.name}")
    return wanted


def serving_version(deployment: Any) -> str | None:
    annotations = deployment.spec.template.metadata.annotations or {}
    return annotations.get(ANNOTATION_MODEL)


def reconcile(name: str, namespace: str, body: Any, patch: kopf.Patch, memo: Any) -> None:
    raw_status = dict(body.get("status") or {})
    status = ModelReleaseStatus.model_validate(raw_status)
    spec = ModelReleaseSpec.model_validate(dict(body["spec"]))
    generation = body["metadata"].get("generation")
    kube = clients(memo)
    conditions = list(status.conditions)

    def write(update: dict[str, Any]) -> None:
        apply_status(
            patch,
            raw_status,
            status.model_copy(
                update={
                    **update,
                    "conditions": conditions,
                    "observed_generation": generation,
                    "desired_model": spec.model,
                }
            ),
        )

    def block(reason: Reason, message: str) -> None:
        nonlocal conditions
        conditions = with_condition(conditions, ReleaseCondition.BLOCKED, True, reason, message, generation)
        if status.phase != "Blocked" or status.message != message:
            event(body, "Blocked", message, warning=True)
        write({"phase": "Blocked", "message": message})

    try:
        deployment = kube.apps.read_namespaced_deployment(spec.deployment.name, namespace)
    except ApiException as error:
        if error.status == 404:
            return block(Reason.DEPLOYMENT_NOT_FOUND, f"Deployment {spec.deployment.name} not found")
        raise
    serving = serving_version(deployment)

    if serving == spec.model:
        state, detail = rollout_state(deployment)
        if state == "Available":
            if status.current_model != spec.model or status.phase != "Released":
                record = status.history[0] if status.history and status.history[0].model.version == spec.model else None
                if record is None:
                    record = status.pending
                history = ([record] if record else []) + [h for h in status.history if h.model.version != spec.model]
                event(body, "Released", f"Deployment {spec.deployment.name} runs {spec.model} ({detail})")
                conditions = with_condition(
                    conditions, ReleaseCondition.AVAILABLE, True, Reason.ROLLED_OUT, detail, generation
                )
                conditions = with_condition(
                    conditions, ReleaseCondition.BLOCKED, False, Reason.ROLLED_OUT, "", generation
                )
                write(
                    {
                        "phase": "Released",
                        "current_model": spec.model,
                        "message": detail,
                        "history": history[: spec.history_limit],
                        "pending": None,
                    }
                )
            return
        started = status.rollout_started_at
        overdue = started is not None and (now() - started).total_seconds() > spec.progress_deadline_seconds
        if state == "Failed" or overdue:
            return roll_back(kube, namespace, body, spec, status, deployment, write, detail, generation, conditions)
        conditions = with_condition(
            conditions, ReleaseCondition.AVAILABLE, False, Reason.PROGRESSING, detail, generation
        )
        write({"phase": "Progressing", "message": detail})
        return

    if status.failed_model == spec.model:
        if status.phase == "RolledBack":
            return None
        return block(
            Reason.ROLLOUT_FAILED,
            f"{spec.model} failed to roll out and was rolled back; set spec.model to another version",
        )
    model, run, pool = find_model(kube, namespace, spec.pool, spec.model)
    if pool is None:
        return block(Reason.MODEL_NOT_FOUND, f"FineTunePool {spec.pool} not found")
    if model is None:
        return block(Reason.MODEL_NOT_FOUND, f"no run of pool {spec.pool} produced {spec.model}")
    decision = eligibility(spec.model, run, run is None)
    if not decision.allowed:
        return block(decision.reason, decision.message)
    try:
        store = object_store(kube, namespace, pool.object_store)
        released_uri = publish(store, model)
        container = _container(deployment, spec.deployment.container)
    except DigestMismatch as error:
        return block(Reason.DIGEST_MISMATCH, f"{spec.model}: {error}")
    except (StoreCredentialsMissing, ValueError) as error:
        return block(Reason.MODEL_NOT_FOUND, str(error))
    kube.apps.patch_namespaced_deployment(
        spec.deployment.name, namespace, deployment_patch(container, model, released_uri)
    )
    run_spec = FineTuneRunSpec.model_validate(run["spec"]) if run else None
    record = ReleaseRecord(
        model=model.model_copy(update={"uri": released_uri}),
        run=run["metadata"]["name"] if run else None,
        verdict=run.get("status", {}).get("verdict") if run else None,
        approved_by=run_spec.approval.by if run_spec and run_spec.approval else None,
        released_at=now(),
        released_by=_last_editor(body),
        evidence=run.get("status", {}).get("gates", {}).get("reportUri") if run else None,
    )
    rollback = any(h.model.version == spec.model for h in status.history)
    if rollback and memo.get("metrics") is not None:
        memo["metrics"].release_rollbacks.labels(namespace, name).inc()
    event(
        body,
        "RollingBack" if rollback else "Rollout",
        f"Patched Deployment {spec.deployment.name}: {serving or 'nothing'} -> {spec.model} ({decision.message})",
    )
    conditions = with_condition(
        conditions, ReleaseCondition.BLOCKED, False, decision.reason, decision.message, generation
    )
    conditions = with_condition(
        conditions, ReleaseCondition.AVAILABLE, False, Reason.PROGRESSING, f"rolling out {spec.model}", generation
    )
    write(
        {
            "phase": "Progressing",
            "message": f"rolling out {spec.model}",
            "rollout_started_at": now(),
            "pending": record,
            "previous_model": serving,
            "failed_model": None,
            "rollbacks": status.rollbacks + (1 if rollback else 0),
        }
    )


def record_release_metrics(memo: Any, namespace: str, name: str, previous: str | None, current: str) -> None:
    metrics = memo.get("metrics")
    if metrics is None:
        return
    if previous and previous != current:
        metrics.release_model.labels(namespace, name, previous).set(0)
    metrics.release_model.labels(namespace, name, current).set(1)


def roll_back(kube, namespace, body, spec, status, deployment, write, detail, generation, conditions):  # type: ignore[no-untyped-def]
    """The rollout failed: put the previous model back (if there was one) and remember the failure."""
    previous = next((h for h in status.history if h.model.version != spec.model), None)
    message = f"rollout of {spec.model} failed ({detail})"
    if previous is not None:
        container = _container(deployment, spec.deployment.container)
        kube.apps.patch_namespaced_deployment(
            spec.deployment.name, namespace, deployment_patch(container, previous.model, previous.model.uri)
        )
        message += f"; rolled back to {previous.model.version}"
    event(body, "RolledBack", message, warning=True)
    conditions = with_condition(
        conditions, ReleaseCondition.AVAILABLE, False, Reason.ROLLOUT_FAILED, message, generation
    )
    write(
        {
            "phase": "RolledBack",
            "message": message,
            "failed_model": spec.model,
            "rollbacks": status.rollbacks + 1,
            "current_model": previous.model.version if previous else None,
            "pending": None,
            "rollout_started_at": None,
        }
    )


def _last_editor(body: Any) -> str | None:
    for entry in reversed(body["metadata"].get("managedFields") or []):
        if "f:spec" in str(entry.get("fieldsV1", {})):
            return str(entry.get("manager"))
    return None


@kopf.timer(GROUP, VERSION, PLURAL, interval=RELEASE_INTERVAL)
def release_timer(name: str, namespace: str, body: Any, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    with reconciling(memo, "ModelRelease", patch, say_in_message(patch)):
        reconcile(name, namespace, body, patch, memo)
