"""Which pool an Alertmanager alert is about: the pure mapping the webhook applies."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ballast.api.alerts import AlertmanagerPayload

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass(frozen=True)
class PoolAlert:
    namespace: str
    pool: str
    alertname: str
    release: str | None


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
        matched.append(PoolAlert(namespace, pool, name, alert.labels.get("release")))
    return matched, skipped
