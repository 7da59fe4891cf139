"""FineTunePool reconciler: count verified samples, apply the trigger policy, start runs, adopt bases.

observe (spec, the sample index, the pool's runs) -> decide (ballast.policy.finetunepool) -> act
(freeze a snapshot, create one FineTuneRun under a deterministic name, write status).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import kopf
from pydantic import ValidationError

from ballast.adapters import pool as pool_store
from ballast.adapters.kube import create_custom, list_custom, object_store
from ballast.adapters.objectstore import ObjectStore
from ballast.api.common import GROUP, VERSION, BaseModelRef, ModelRef
from ballast.api.conditions import PoolCondition, Reason
from ballast.api.contracts import digest_bytes
from ballast.api.finetunepool import PLURAL, FineTunePoolSpec, FineTunePoolStatus, RejectedSample
from ballast.api.finetunerun import PLURAL as RUN_PLURAL
from ballast.api.finetunerun import TERMINAL_PHASES, FineTuneRunSpec, SampleSnapshot
from ballast.api.samples import render_manifest
from ballast.handlers.common import POOL_INTERVAL, apply_status, clients, event, now, reconciling, with_condition
from ballast.policy.finetunepool import PoolState, decide_trigger, run_name
from ballast.policy.manifests import LABEL_POOL, build_run
from ballast.policy.modelrelease import release_eligibility
from ballast.policy.versions import parse_version

RECENT_REJECTIONS = 5


def snapshot_key(run: str) -> str:
    return f"runs/{run}/snapshot.txt"


def freeze_snapshot(store: ObjectStore, pool: str, run: str) -> SampleSnapshot:
    """Write the run's sample manifest (every verified sample now) once; return its size and digest."""
    key = snapshot_key(run)
    if store.exists(key):
        text = store.get(key)
    else:
        refs = [pool_store.ref_from_index_key(pool, k) for k in pool_store.list_index(store, pool)]
        text = render_manifest(sorted(refs, key=lambda r: r.image)).encode()
        store.put(key, text, "text/plain")
    return SampleSnapshot(sample_count=text.count(b"\n"), manifest_digest=digest_bytes(text))


def effective_base(spec: FineTunePoolSpec, status: FineTunePoolStatus) -> BaseModelRef:
    """The newer of the spec's base and a base this pool adopted from a Rebase run."""
    adopted = status.current_base_model
    if adopted and parse_version(adopted.version).base > parse_version(spec.base_model.version).base:
        return BaseModelRef.model_validate(adopted.to_wire())
    return spec.base_model


def _run_number(pool: str, name: str) -> int:
    match = re.fullmatch(re.escape(pool[:50]) + r"-run-(\d+)", name)
    return int(match.group(1)) if match else 0


def _snapshot_count(run: dict[str, Any]) -> int:
    for source in (run.get("status", {}).get("snapshot"), run.get("spec", {}).get("snapshot")):
        if source:
            return int(source.get("sampleCount", 0))
    return 0


def _adopt_rebases(
    store: ObjectStore, runs: list[dict[str, Any]], status: FineTunePoolStatus, body: Any
) -> FineTunePoolStatus:
    """Make the newest eligible Rebase run's model this pool's base (copied to models/, digest checked)."""
    current = parse_version(status.current_base_model.version).base if status.current_base_model else 0
    for run in sorted(runs, key=lambda r: r["metadata"]["creationTimestamp"]):
        run_status, run_spec = run.get("status", {}), run.get("spec", {})
        model = run_status.get("model")
        if run_spec.get("kind") != "Rebase" or not model:
            continue
        eligible = release_eligibility(
            model["version"],
            run["metadata"]["name"],
            run_status.get("phase"),
            run_status.get("verdict"),
            FineTuneRunSpec.model_validate(run_spec).approval,
        )
        version = parse_version(model["version"]).base
        if not eligible.allowed or version <= current:
            continue
        source = store.relative(model["uri"])
        target = f"models/{model['version']}/model.pt"
        store.get(source, model["digest"])  # verify before adopting
        store.copy(source, target)
        store.copy(source.rsplit("/", 1)[0] + "/lineage.json", f"models/{model['version']}/lineage.json")
        adopted = ModelRef(version=model["version"], uri=store.uri(target), digest=model["digest"])
        status = status.model_copy(update={"current_base_model": adopted, "base_sample_count": _snapshot_count(run)})
        current = version
        event(body, "AdoptedBase", f"Adopted new base {adopted.version} from Rebase run {run['metadata']['name']}")
    return status


def say_store_unreachable(body: Any, patch: kopf.Patch) -> Callable[[str], None]:
    """Report a store problem as Ready=False ObjectStoreUnreachable (a pool has no message)."""

    def say(message: str) -> None:
        raw_status = dict(body.get("status") or {})
        status = FineTunePoolStatus.model_validate(raw_status)
        generation = body["metadata"].get("generation")
        conditions = with_condition(
            status.conditions, PoolCondition.READY, False, Reason.STORE_UNREACHABLE, message[:500], generation
        )
        apply_status(patch, raw_status, status.model_copy(update={"conditions": conditions}))

    return say


def reconcile(name: str, namespace: str, uid: str, body: Any, patch: kopf.Patch, memo: Any) -> None:
    raw_status = dict(body.get("status") or {})
    status = FineTunePoolStatus.model_validate(raw_status)
    generation = body["metadata"].get("generation")
    try:
        spec = FineTunePoolSpec.model_validate(dict(body["spec"]))
    except ValidationError as error:
        first = error.errors()[0]
        message = f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        conditions = with_condition(
            status.conditions, PoolCondition.READY, False, Reason.SPEC_INVALID, message, generation
        )
        apply_status(patch, raw_status, status.model_copy(update={"conditions": conditions}))
        return
    kube = clients(memo)
    try:
        store = object_store(kube, namespace, spec.object_store)
        new_keys = pool_store.list_index(store, name, status.index_cursor)
        new_rejections = list(store.list_after(f"pool/{name}/rejected/", status.rejection_cursor))
    except Exception as error:  # the Secret is missing or the store is down: say so, retry soon
        say_store_unreachable(body, patch)(str(error))
        raise kopf.TemporaryError(f"object store: {error}", delay=5) from None

    rejections = list(status.recent_rejections)
    for key in new_rejections:
        document = json.loads(store.get(key))
        rejections.append(RejectedSample(id=document["id"], reason=document["reason"]))
    settled = status.verified_samples if status.settled_samples is None else status.settled_samples
    index = pool_store.count_index(new_keys, status.index_cursor, settled, now())
    verified = index.total
    runs = list_custom(kube, namespace, RUN_PLURAL, f"{LABEL_POOL}={name}")
    status = _adopt_rebases(store, runs, status, body)
    runs.sort(key=lambda r: (r["metadata"]["creationTimestamp"], _run_number(name, r["metadata"]["name"])))
    active = [r["metadata"]["name"] for r in runs if r.get("status", {}).get("phase") not in TERMINAL_PHASES]
    last_run_samples = _snapshot_count(runs[-1]) if runs else 0
    base = effective_base(spec, status)
    state = PoolState(
        verified_samples=verified,
        samples_since_last_run=max(0, verified - last_run_samples),
        samples_since_base=max(0, verified - status.base_sample_count),
        active_run=active[0] if active else None,
        now=now(),
        next_scheduled_trigger=status.next_scheduled_trigger,
        pending_alert=status.pending_alert,
        pending_alert_time=status.pending_alert_time,
        last_alert_action_time=status.last_alert_action_time,
    )
    try:
        decision = decide_trigger(spec, state)
    except ValueError as error:  # an invalid cron expression
        conditions = with_condition(
            status.conditions, PoolCondition.READY, False, Reason.SPEC_INVALID, str(error), generation
        )
        apply_status(patch, raw_status, status.model_copy(update={"conditions": conditions}))
        return

    started = None
    if decision.start is not None:
        number = max([_run_number(name, r["metadata"]["name"]) for r in runs] + [0]) + 1
        started = run_name(name, number)
        snapshot = freeze_snapshot(store, name, started)
        run_spec = FineTuneRunSpec(
            pool=name,
            kind=decision.start,
            trigger=decision.trigger or "Manual",
            base_model=base,
            snapshot=snapshot,
            training=spec.training,
            mixing=spec.mixing,
            gates=spec.gates,
            rebase=spec.rebase,
        )
        _, created = create_custom(
            kube, namespace, RUN_PLURAL, build_run(name=started, pool=name, pool_uid=uid, spec=run_spec)
        )
        if created:
            event(body, "CreatedRun", f"Created FineTuneRun {started} ({decision.start}, {decision.message})")
        last_run_samples = snapshot.sample_count

    conditions = with_condition(
        status.conditions, PoolCondition.READY, True, Reason.SAMPLES_LISTED, f"{verified} verified samples", generation
    )
    conditions = with_condition(
        conditions,
        PoolCondition.RUN_DUE,
        decision.start is not None or bool(active),
        decision.reason,
        decision.message,
        generation,
    )
    conditions = with_condition(
        conditions,
        PoolCondition.REBASE_RECOMMENDED,
        decision.rebase_recommended,
        Reason.REBASE_THRESHOLD_REACHED if decision.rebase_recommended else Reason.BELOW_REBASE_THRESHOLD,
        f"{state.samples_since_base} samples since {base.version}; rebase at {spec.rebase.threshold}",
        generation,
    )
    new_status = status.model_copy(
        update={
            "observed_generation": generation,
            "verified_samples": verified,
            "index_cursor": index.cursor,
            "settled_samples": index.settled,
            "rejection_cursor": new_rejections[-1] if new_rejections else status.rejection_cursor,
            "rejected_samples": status.rejected_samples + len(new_rejections),
            "recent_rejections": rejections[-RECENT_REJECTIONS:],
            "samples_since_last_run": max(0, verified - last_run_samples),
            "samples_since_base": state.samples_since_base,
            "current_base": base.version,
            "active_run": started or (active[0] if active else None),
            "last_run": started or (runs[-1]["metadata"]["name"] if runs else None),
            "last_run_sample_count": last_run_samples,
            "run_counter": max([_run_number(name, r["metadata"]["name"]) for r in runs] + [0]) + (1 if started else 0),
            "next_scheduled_trigger": decision.next_scheduled_trigger,
            "conditions": conditions,
        }
        | alert_update(decision.alert_consumed, decision.trigger == "Alert" and started is not None)
    )
    apply_status(patch, raw_status, new_status)
    record_pool_metrics(memo, namespace, name, new_status, runs)


def alert_update(consumed: bool, started_by_alert: bool) -> dict[str, Any]:
    """A consumed alert is cleared; one that started a run starts the cooldown too."""
    update: dict[str, Any] = {}
    if consumed:
        update |= {"pending_alert": None, "pending_alert_time": None}
    if consumed or started_by_alert:
        update["last_alert_action_time"] = now()
    return update


def record_pool_metrics(
    memo: Any, namespace: str, name: str, status: FineTunePoolStatus, runs: list[dict[str, Any]]
) -> None:
    metrics = memo.get("metrics")
    if metrics is None:
        return
    metrics.pool_verified.labels(namespace, name).set(status.verified_samples)
    metrics.pool_since_last_run.labels(namespace, name).set(status.samples_since_last_run)
    metrics.pool_pending_alerts.labels(namespace, name).set(1 if status.pending_alert else 0)
    counts: dict[tuple[str, str], int] = {}
    for run in runs:
        run_status = run.get("status", {})
        key = (run_status.get("phase", "Pending"), run_status.get("verdict") or "")
        counts[key] = counts.get(key, 0) + 1
    for phase in ("Pending", "Planning", "Training", "Gating", "Succeeded", "Failed"):
        for verdict in ("", "Pass", "Review", "Reject"):
            if (phase, verdict) in counts or verdict == "":
                metrics.runs.labels(namespace, name, phase, verdict).set(counts.get((phase, verdict), 0))


# One level-based entry point: the timer sees spec changes on its next tick. A single entry point
# also means two reconciles of one pool never race to freeze the same run's snapshot.
@kopf.timer(GROUP, VERSION, PLURAL, interval=POOL_INTERVAL, initial_delay=POOL_INTERVAL)
def pool_timer(name: str, namespace: str, uid: str, body: Any, patch: kopf.Patch, memo: Any, **_: Any) -> None:
    with reconciling(memo, "FineTunePool", patch, say_store_unreachable(body, patch)):
        reconcile(name, namespace, uid, body, patch, memo)
