"""What the three reconcilers share: their context, reading bodies into typed views, writing
status (only what changed, only onto the version that was read) and posting Events."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ballast.adapters import kube
from ballast.adapters.metrics import OperatorMetrics
from ballast.api.common import StatusModel
from ballast.api.conditions import RunCondition
from ballast.api.finetunerun import FineTuneRunSpec, FineTuneRunStatus
from ballast.api.modelrelease import ModelReleaseStatus
from ballast.handlers.runtime import Controller, Key
from ballast.policy.conditions import Event
from ballast.policy.finetunepool import run_number
from ballast.policy.finetunerun import RunSummary
from ballast.policy.manifests import LABEL_POOL

POOLS, RUNS, RELEASES = "finetunepools", "finetuneruns", "modelreleases"
KINDS = {POOLS: "FineTunePool", RUNS: "FineTuneRun", RELEASES: "ModelRelease"}


@dataclass(frozen=True)
class Settings:
    """The operator's timing, from flags or the chart's values (defaults documented in the README)."""

    trainer_image: str = "ghcr.io/ballast-dev/trainer:0.1.0"  # the code every training and gate Job runs
    workers: int = 4
    pool_resync_seconds: float = 300.0  # re-list each pool's store this often (samples written by other tools)
    store_retry_seconds: float = 5.0  # an unreachable object store is tried again this soon
    conflict_retry_seconds: float = 0.5  # a status patch refused as stale: read again this soon
    backoff_base_seconds: float = 1.0
    backoff_max_seconds: float = 60.0


@dataclass
class Context:
    clients: kube.Clients
    controller: Controller
    metrics: OperatorMetrics | None
    settings: Settings

    def body(self, key: Key) -> dict[str, Any] | None:
        return self.controller.cache.get(key)


def find(ctx: Context, key: Key) -> dict[str, Any] | None:
    """An object another one refers to: from the cache, or, when the cache has not seen it yet
    (watches of different kinds arrive in any order, after a restart too), from the apiserver.
    Nothing is concluded from a cache miss alone."""
    body = ctx.controller.cache.get(key)
    if body is None:
        body = kube.get_custom(ctx.clients, key.namespace, key.kind, key.name)
        if body is not None:
            ctx.controller.cache.put(key, body)
    return body


def now() -> datetime:
    return datetime.now(UTC)


def created_at(body: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(body["metadata"]["creationTimestamp"].replace("Z", "+00:00"))


def status_changes(old: dict[str, Any], new: StatusModel) -> dict[str, Any]:
    """Top-level status fields whose value changed (a merge patch); empty when nothing did.

    Nested nulls are left out (a merge patch would read them as deletions); a top-level field
    that became empty is sent as null, which removes it.
    """
    wanted = new.model_dump(mode="json", by_alias=True, exclude_none=True)
    ours = {field.alias or name for name, field in type(new).model_fields.items()}
    changes: dict[str, Any] = {key: None for key in ours if key in old and old[key] is not None and key not in wanted}
    for key, value in wanted.items():
        if json.dumps(old.get(key), sort_keys=True, default=str) != json.dumps(value, sort_keys=True, default=str):
            changes[key] = value
    return changes


def write_status(ctx: Context, key: Key, body: dict[str, Any], new: StatusModel, acted: bool = False) -> dict[str, Any]:
    """Patch the fields that changed; the cache takes the answer at once, so the next reconcile
    sees its own write.

    A decision that only reports (`acted` False) is written onto the version it was read from: if
    the object changed meanwhile (the webhook recorded an alert), the apiserver refuses it
    (kube.Conflict) and the reconcile runs again on the new version. Once an action was taken (a
    run created, a Deployment patched), what it changed must be recorded whatever else changed:
    those fields are merged onto the current version instead.
    """
    changes = status_changes(dict(body.get("status") or {}), new)
    if not changes:
        return body
    version = None if acted else body["metadata"].get("resourceVersion")
    updated = kube.patch_status(ctx.clients, key.namespace, key.kind, key.name, changes, version)
    ctx.controller.cache.put(key, updated)
    return updated


def post(ctx: Context, body: dict[str, Any], events: tuple[Event, ...]) -> None:
    for event in events:
        kube.post_event(ctx.clients, body, event)


def run_summary(body: dict[str, Any]) -> RunSummary:
    """A FineTuneRun body, parsed once into what pools and releases look at."""
    spec = FineTuneRunSpec.model_validate(body["spec"])
    status = FineTuneRunStatus.model_validate(body.get("status") or {})
    snapshot = status.snapshot or spec.snapshot
    name = body["metadata"]["name"]
    # A Review counts as approved only once the operator verified the approval (its own condition).
    verified = any(c.type == RunCondition.APPROVED and c.status == "True" for c in status.conditions)
    return RunSummary(
        name=name,
        number=run_number(spec.pool, name),
        kind=spec.kind,
        phase=status.phase,
        verdict=status.verdict,
        approved_by=spec.approval.by if spec.approval and verified and status.verdict == "Review" else None,
        sample_count=snapshot.sample_count if snapshot else 0,
        model=status.model,
        base_version=spec.base_model.version,
        created=created_at(body),
        report_uri=status.gates.report_uri,
        base_evaluation=status.gates.base_evaluation,
        snapshot=snapshot,
    )


def pool_releases(ctx: Context, namespace: str, pool: str) -> list[ModelReleaseStatus]:
    """The statuses of the ModelReleases that serve the pool's models."""
    bodies = ctx.controller.cache.list(RELEASES, namespace, lambda b: b.get("spec", {}).get("pool") == pool)
    return [ModelReleaseStatus.model_validate(b.get("status") or {}) for b in bodies]


def pool_runs(ctx: Context, namespace: str, pool: str) -> tuple[RunSummary, ...]:
    """The pool's runs (its label, or a hand-made run naming it), oldest first."""
    bodies = ctx.controller.cache.list(
        RUNS,
        namespace,
        lambda b: (
            b.get("metadata", {}).get("labels", {}).get(LABEL_POOL) == pool or b.get("spec", {}).get("pool") == pool
        ),
    )
    summaries = []
    for body in bodies:
        try:
            summaries.append(run_summary(body))
        except ValueError:  # a run the apiserver admitted but our models refuse: not ours to count
            continue
    return tuple(sorted(summaries, key=lambda r: (r.created, r.number, r.name)))
