"""What the three reconcilers share: timing, status diffs, events, the clients kept in kopf's memo."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import kopf

from ballast.adapters.kube import Clients
from ballast.adapters.objectstore import StoreUnavailable, requests_made
from ballast.api.common import Condition, StatusModel
from ballast.policy.conditions import set_condition

# How often each kind is reconciled besides its watch events (seconds).
POOL_INTERVAL = 2.0
RUN_INTERVAL = 2.0
RELEASE_INTERVAL = 2.0


def now() -> datetime:
    return datetime.now(UTC)


def clients(memo: Any) -> Clients:
    return memo["clients"]  # type: ignore[no-any-return]


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


def apply_status(patch: kopf.Patch, old: dict[str, Any], new: StatusModel) -> None:
    for key, value in status_changes(old, new).items():
        patch.status[key] = value


def with_condition(
    conditions: list[Condition], type_: str, status: bool | str, reason: str, message: str, generation: int | None
) -> list[Condition]:
    return set_condition(conditions, type_, status, reason, message, now(), generation)  # type: ignore[arg-type]


def event(body: Any, reason: str, message: str, warning: bool = False) -> None:
    """A Kubernetes Event on the object, kubectl-describe style ("Created Job x")."""
    kopf.event(body, type="Warning" if warning else "Normal", reason=reason, message=message)


STORE_RETRY_SECONDS = 5.0


def say_in_message(patch: kopf.Patch) -> Callable[[str], None]:
    """Report a problem in status.message (runs and releases have one)."""
    return lambda message: patch.status.__setitem__("message", message)


@contextmanager
def reconciling(memo: Any, kind: str, patch: kopf.Patch, say: Callable[[str], None]) -> Iterator[None]:
    """Around one reconcile: time it, count its errors and object-store requests (kopf runs each
    sync handler on one worker thread, so the per-thread request count is this reconcile's), and
    when the store is down report it with `say` and retry soon; nothing half-done is kept."""
    metrics = memo.get("metrics")
    started, requests = time.monotonic(), requests_made()
    try:
        yield
    except StoreUnavailable as error:
        if metrics is not None:
            metrics.reconcile_errors.labels(kind).inc()
        patch.clear()
        say(f"{error}; retrying every {STORE_RETRY_SECONDS:.0f} s")
        raise kopf.TemporaryError(str(error), delay=STORE_RETRY_SECONDS) from None
    except Exception:
        if metrics is not None:
            metrics.reconcile_errors.labels(kind).inc()
        raise
    finally:
        if metrics is not None:
            metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - started)
            metrics.store_requests.labels(kind).inc(requests_made() - requests)
