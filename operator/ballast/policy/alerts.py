"""Which pool an Alertmanager alert is about, and whether its sender may say so: the pure mapping
the webhook applies.

An alert names its FineTunePool exactly, by its `namespace` and `pool` labels (every Ballast rule
keeps both). Nothing is guessed: an alert without `namespace` is refused, never looked up in the
operator's own namespace. Each alert is judged alone, so one alert for a namespace the operator
does not watch (or that the caller's token may not speak for) is refused and reported while the
others in the same notification are applied.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Refusal:
    alertname: str
    why: str

    def __str__(self) -> str:
        return f"{self.alertname}: {self.why}"


@dataclass(frozen=True)
class AlertTriage:
    """A notification sorted: alerts to apply, alerts refused (the sender must fix something), and
    alerts skipped (nothing to do: resolved), each skip reading `alertname: why`."""

    matched: list[PoolAlert] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WebhookTokens:
    """Bearer tokens the webhook accepts: `shared` for every watched namespace, and at most one per
    namespace in `per_namespace` (namespace -> token), good for that namespace only."""

    shared: str | None = None
    per_namespace: Mapping[str, str] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return bool(self.shared or self.per_namespace)


@dataclass(frozen=True)
class Caller:
    """What an authenticated caller may send alerts for; `namespaces` None: every watched one."""

    namespaces: frozenset[str] | None


def authenticate(authorization: str, tokens: WebhookTokens) -> Caller | None:
    """The caller an `Authorization: Bearer <token>` header proves, or None for no known token.
    Every token is compared (in constant time each), so timing tells nothing about which matched."""
    offered = authorization.encode()
    namespaces: set[str] = set()
    shared = tokens.shared is not None and hmac.compare_digest(offered, f"Bearer {tokens.shared}".encode())
    for namespace, token in tokens.per_namespace.items():
        if token and hmac.compare_digest(offered, f"Bearer {token}".encode()):
            namespaces.add(namespace)
    if shared:
        return Caller(None)
    return Caller(frozenset(namespaces)) if namespaces else None


def refusal(labels: Mapping[str, str], watched: frozenset[str] | None, caller: Caller) -> str | None:
    """Why an alert with these labels cannot be applied, or None when it can. `watched` None: the
    operator watches every namespace."""
    pool, namespace = labels.get("pool", ""), labels.get("namespace", "")
    if not namespace:
        return "no labels.namespace (the rule must keep `namespace`; nothing is guessed)"
    if not _NAME.match(namespace):
        return f"labels.namespace {namespace!r} is not a Kubernetes name"
    if not _NAME.match(pool):
        return f"labels.pool {pool!r} is missing or not a Kubernetes name"
    if watched is not None and namespace not in watched:
        return f"namespace {namespace} is not watched by this operator"
    if caller.namespaces is not None and namespace not in caller.namespaces:
        return f"this token may not send alerts for namespace {namespace}"
    return None


def pool_alerts(payload: AlertmanagerPayload, watched: frozenset[str] | None, caller: Caller) -> AlertTriage:
    """Firing alerts mapped to (namespace, pool) by their labels; the others refused or skipped, each
    with its reason. Resolved alerts start nothing."""
    triage = AlertTriage()
    for alert in payload.alerts:
        name = alert.labels.get("alertname", "unnamed")
        if alert.status != "firing":
            triage.skipped.append(f"{name}: resolved")
            continue
        why = refusal(alert.labels, watched, caller)
        if why is not None:
            triage.refused.append(Refusal(name, why))
            continue
        labels = alert.labels
        triage.matched.append(
            PoolAlert(labels["namespace"], labels["pool"], name, labels.get("release"), alert.starts_at)
        )
    return triage


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
