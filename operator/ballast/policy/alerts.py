"""Which pool an Alertmanager alert is about: the pure mapping the webhook applies."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ballast.api.alerts import AlertmanagerPayload

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class PoolAlert:
    namespace: str
    pool: str
    alertname: str
    release: str | None
    starts_at: datetime


def pool_alerts(payload: AlertmanagerPayload, default_namespace: str) -> tuple[list[PoolAlert], list[str]]:
    """Firing alerts mapped to (namespace, pool) by their labels; and why the others were skipped.

    An alert names its pool with the `pool` label (the serving metrics carry it) and its namespace
    with `namespace` (Prometheus' Kubernetes discovery adds it); resolved alerts start nothing.
    """
    matched, skipped = [], []
    for alert in payload.alerts:
        name = alert.labels.get("alertname", "unnamed")
        if alert.status != "firing":
            skipped.append(f"{name}: resolved")
            continue
        pool = alert.labels.get("pool", "")
        namespace = alert.labels.get("namespace", default_namespace)
        if not _NAME.match(pool) or not _NAME.match(namespace):
            skipped.append(f"{name}: labels.pool/labels.namespace missing or not a Kubernetes name")
            continue
        matched.append(PoolAlert(namespace, pool, name, alert.labels.get("release"), alert.starts_at))
    return matched, skipped


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if isinstance(value, str) and value else None


def alert_status_patch(status: dict[str, Any], alert: PoolAlert, now: datetime) -> dict[str, Any]:
    """The pool status fields one firing alert sets.

    Every notification is recorded as the last alert. It becomes the pending alert (the one a run
    may be started for) unless one is pending already (a repeat does not restart the clock) or the
    alert started before the pool last acted on an alert: Alertmanager re-sends a firing alert on
    every group change, and the run that alert started is already under way.
    """
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    patch: dict[str, Any] = {"lastAlert": alert.alertname, "lastAlertTime": stamp}
    acted = _parse_time(status.get("lastAlertActionTime"))
    already_acted_on = acted is not None and alert.starts_at <= acted
    if not status.get("pendingAlert") and not already_acted_on:
        patch |= {"pendingAlert": alert.alertname, "pendingAlertTime": stamp}
    return patch
