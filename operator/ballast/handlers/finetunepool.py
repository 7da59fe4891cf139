"""FineTunePool reconciler: observe (spec, the sample index, the pool's runs) -> decide
(ballast.policy.finetunepool.decide_pool) -> act (adopt a base, or freeze a snapshot and create one
FineTuneRun under a deterministic name) and write status."""

from __future__ import annotations

import random
from typing import Any

from pydantic import ValidationError

from ballast.adapters import kube
from ballast.adapters import pool as samples
from ballast.adapters.models import publish_model
from ballast.adapters.objectstore import ObjectStore, StoreRefused, StoreUnavailable
from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunSpec
from ballast.handlers.common import RUNS, Context, now, pool_runs, post, write_status
from ballast.handlers.runtime import DONE, Key, Outcome
from ballast.policy.conditions import Event
from ballast.policy.finetunepool import (
    PoolAction,
    PoolObservation,
    PoolStep,
    count_index,
    decide_pool,
    spec_invalid,
    store_unreachable,
)
from ballast.policy.manifests import build_run


def observe(
    ctx: Context, key: Key, body: dict[str, Any], spec: FineTunePoolSpec, store: ObjectStore
) -> PoolObservation:
    status = FineTunePoolStatus.model_validate(body.get("status") or {})
    moment = now()
    new_keys = samples.list_index(store, key.name, status.index_cursor)
    settled = status.verified_samples if status.settled_samples is None else status.settled_samples
    rejected, rejection_cursor = samples.read_rejections(store, key.name, status.rejection_cursor)
    return PoolObservation(
        name=key.name,
        generation=body["metadata"].get("generation"),
        now=moment,
        spec=spec,
        status=status,
        index=count_index(new_keys, status.index_cursor, settled, moment),
        new_rejections=tuple(rejected),
        rejection_cursor=rejection_cursor,
        runs=pool_runs(ctx, key.namespace, key.name),
    )


def adopt_base(
    ctx: Context, key: Key, body: dict[str, Any], action: PoolAction, store: ObjectStore
) -> tuple[Event, ...]:
    assert action.adopt is not None
    publish_model(store, key.name, action.adopt)  # digests checked: a tampered model is never a base
    return action.events


def start_run(
    ctx: Context, key: Key, body: dict[str, Any], action: PoolAction, store: ObjectStore
) -> tuple[Event, ...]:
    start, spec = action.start, FineTunePoolSpec.model_validate(body["spec"])
    assert start is not None
    run_spec = FineTuneRunSpec(
        pool=key.name,
        kind=start.kind,
        trigger=start.trigger,
        base_model=start.base,
        snapshot=samples.freeze_snapshot(store, key.name),
        training=spec.training,
        mixing=spec.mixing,
        gates=spec.gates,
        rebase=spec.rebase,
    )
    run = build_run(name=start.name, pool=key.name, pool_uid=body["metadata"]["uid"], spec=run_spec)
    # The pool's status first (the run it starts, the alert it consumes), then the run: whoever sees
    # the run sees why it exists. (A crash in between leaves that run number unused; the next
    # reconcile starts the next number.)
    write_status(ctx, key, body, action.status, acted=True)
    existing, created = kube.create_custom(ctx.clients, key.namespace, RUNS, run)
    # Cached at once: the next reconcile must see this run even before its watch event arrives.
    ctx.controller.cache.put(Key(RUNS, key.namespace, start.name), dict(existing))
    return action.events if created else ()  # a retried decision that already acted says nothing twice


def update_status(
    ctx: Context, key: Key, body: dict[str, Any], action: PoolAction, store: ObjectStore
) -> tuple[Event, ...]:
    return action.events


ACT = {PoolStep.UPDATE_STATUS: update_status, PoolStep.ADOPT_BASE: adopt_base, PoolStep.START_RUN: start_run}


def reconcile(ctx: Context, key: Key) -> Outcome:
    body = ctx.body(key)
    if body is None:
        return DONE
    status = FineTunePoolStatus.model_validate(body.get("status") or {})
    generation = body["metadata"].get("generation")
    try:
        spec = FineTunePoolSpec.model_validate(body["spec"])
    except ValidationError as error:
        first = error.errors()[0]
        message = f"spec.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        write_status(ctx, key, body, spec_invalid(status, message, now(), generation))
        return DONE
    try:
        store = kube.object_store(ctx.clients, key.namespace, spec.object_store)
        action = decide_pool(observe(ctx, key, body, spec, store))
        events = ACT[action.step](ctx, key, body, action, store)
    except (StoreUnavailable, StoreRefused, kube.StoreCredentialsMissing) as error:
        retry = ctx.settings.store_retry_seconds
        write_status(
            ctx, key, body, store_unreachable(status, f"{error}; retrying every {retry:.0f} s", now(), generation)
        )
        return Outcome(requeue_after=retry)
    acted = action.step is not PoolStep.UPDATE_STATUS
    # After an action, against the latest version (starting a run already wrote its status).
    updated = write_status(ctx, key, (ctx.body(key) or body) if acted else body, action.status, acted=acted)
    post(ctx, updated, events)
    record_metrics(ctx, key, action.status)
    if action.step is not PoolStep.UPDATE_STATUS:
        return Outcome(requeue_after=0)  # one effect per reconcile: decide the next one now
    return Outcome(requeue_after=_next_wake(ctx, action))


def _next_wake(ctx: Context, action: PoolAction) -> float:
    """Seconds until time alone can change the decision, at most the store resync interval
    (jittered, so a thousand pools do not list their stores in the same second)."""
    resync = ctx.settings.pool_resync_seconds * random.uniform(0.9, 1.1)
    if action.wake_at is None:
        return resync
    return max(0.0, min(resync, (action.wake_at - now()).total_seconds()))


def record_metrics(ctx: Context, key: Key, status: FineTunePoolStatus) -> None:
    metrics = ctx.metrics
    if metrics is None:
        return
    metrics.pool_verified.labels(key.namespace, key.name).set(status.verified_samples)
    metrics.pool_since_last_run.labels(key.namespace, key.name).set(status.samples_since_last_run)
    metrics.pool_pending_alerts.labels(key.namespace, key.name).set(1 if status.pending_alert else 0)
    counts: dict[tuple[str, str], int] = {}
    for run in pool_runs(ctx, key.namespace, key.name):
        counts[(run.phase, run.verdict or "")] = counts.get((run.phase, run.verdict or ""), 0) + 1
    for phase in ("Pending", "Planning", "Training", "Gating", "Succeeded", "Failed"):
        for verdict in ("", "Pass", "Review", "Reject"):
            if (phase, verdict) in counts or verdict == "":
                metrics.runs.labels(key.namespace, key.name, phase, verdict).set(counts.get((phase, verdict), 0))
