"""`ballast runs retry`: a failed or rejected run tried again on the same samples, as a new run.

A run is immutable, so a retry is a new FineTuneRun under a new name: the same pool, kind and
frozen snapshot, trigger `Retry` and `retryOf` naming the original; the recipe and the base are the
pool's now, as for a run the pool would start (a fix to the pool, e.g. a smaller batch after an
out-of-memory failure, is what a retry is for). Without it a failed run would use up its samples
until 50 more arrive (the pool counts from the last run's snapshot).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunSpec, FineTuneRunStatus
from ballast.policy.bases import effective_base
from ballast.policy.manifests import build_run

LABEL_RETRY_OF = "ballast.dev/retry-of"


def retry_refusal(name: str, status: FineTuneRunStatus, snapshot_known: bool, active: Collection[str]) -> str | None:
    """Why run `name` may not be retried now, or None."""
    if status.phase != "Failed" and status.verdict != "Reject":
        state = f"verdict {status.verdict}" if status.verdict else f"phase {status.phase}"
        return f"run {name} has {state}; only a Failed run or a Reject verdict is retried"
    if not snapshot_known:
        return f"run {name} failed before its samples were frozen: there is nothing to retry on"
    if active:
        return f"the pool has a run in progress ({', '.join(sorted(active))}); one run at a time"
    return None


def retry_name(original: str, existing: Collection[str]) -> str:
    """`<run>-retry-<k>`, the first k not taken (names stay within 63 characters)."""
    k = 1
    while f"{original[:50]}-retry-{k}" in existing:
        k += 1
    return f"{original[:50]}-retry-{k}"


def build_retry(
    original: str,
    spec: FineTuneRunSpec,
    status: FineTuneRunStatus,
    existing: Collection[str],
    pool: tuple[str, FineTunePoolSpec, FineTunePoolStatus],
) -> dict[str, Any]:
    """The new run: the original's samples (its snapshot, frozen in spec) and seed, the pool's base and recipe."""
    pool_uid, pool_spec, pool_status = pool
    retry_spec = FineTuneRunSpec(
        pool=spec.pool,
        kind=spec.kind,
        trigger="Retry",
        retry_of=original,
        base_model=effective_base(pool_spec, pool_status),
        snapshot=spec.snapshot or status.snapshot,
        seed=spec.seed,
    )
    body = build_run(name=retry_name(original, existing), pool=spec.pool, pool_uid=pool_uid, spec=retry_spec)
    body["metadata"]["labels"][LABEL_RETRY_OF] = original[:63]
    return body
