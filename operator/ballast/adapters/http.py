"""The operator's HTTP endpoint: Prometheus metrics, health, and the Alertmanager webhook receiver.

    GET  /metrics   operator metrics (ballast.adapters.metrics.OperatorMetrics)
    GET  /healthz
    POST /alerts    Alertmanager webhook (v4); `Authorization: Bearer <token>` required

An accepted firing alert is recorded on its pool's status (`pendingAlert`) with an Event; the
pool's reconciler then starts a run only if the trigger policy allows it (>= 50 samples waiting,
the cooldown passed). A bad payload gets 400 and changes nothing; a missing or wrong token, 401.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from datetime import UTC, datetime

from kubernetes.client.exceptions import ApiException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from ballast.adapters.jsonhttp import BoundedHTTPServer, JsonRequestHandler
from ballast.adapters.kube import Clients, get_custom, post_event
from ballast.adapters.metrics import OperatorMetrics
from ballast.api.alerts import AlertmanagerPayload
from ballast.api.common import GROUP, VERSION
from ballast.api.conditions import Reason
from ballast.api.finetunepool import PLURAL as POOL_PLURAL
from ballast.policy.alerts import PoolAlert, alert_status_patch, pool_alerts
from ballast.policy.conditions import Event

log = logging.getLogger("ballast.http")
MAX_PAYLOAD = 1024 * 1024


def record_alert(kube: Clients, alert: PoolAlert) -> bool:
    """Put the alert on its pool's status; False when the pool does not exist."""
    pool = get_custom(kube, alert.namespace, POOL_PLURAL, alert.pool)
    if pool is None:
        return False
    patch = alert_status_patch(pool.get("status") or {}, alert, datetime.now(UTC))
    kube.custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, alert.namespace, POOL_PLURAL, alert.pool, {"status": patch}
    )
    message = f"Alert {alert.alertname} received" + (f" for release {alert.release}" if alert.release else "")
    post_event(kube, pool, Event(Reason.ALERT_RECEIVED, message))
    return True


def make_handler(kube: Clients, metrics: OperatorMetrics, token: str | None, namespace: str):  # type: ignore[no-untyped-def]
    class Handler(JsonRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self.reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self.reply(200, {"status": "ok"})
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            if self.path != "/alerts":
                self.reply(404, {"error": "not found"})
                return
            if token is None:
                self.reply(503, {"error": "webhook disabled: the operator has no BALLAST_WEBHOOK_TOKEN"})
                return
            offered = self.headers.get("Authorization", "")
            if not hmac.compare_digest(offered.encode(), f"Bearer {token}".encode()):
                metrics.alerts.labels("", "unauthorized").inc()
                self.reply(401, {"error": "missing or wrong bearer token"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_PAYLOAD:
                metrics.alerts.labels("", "invalid").inc()
                self.reply(400, {"error": f"body must be 1..{MAX_PAYLOAD} bytes of JSON"})
                return
            try:
                payload = AlertmanagerPayload.model_validate(json.loads(self.rfile.read(length)))
            except (ValueError, ValidationError) as error:
                metrics.alerts.labels("", "invalid").inc()
                if isinstance(error, ValidationError):
                    first = error.errors()[0]
                    message = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
                else:
                    message = f"not JSON: {error}"
                self.reply(400, {"error": message})
                return
            matched, skipped = pool_alerts(payload, namespace)
            accepted = []
            for alert in matched:
                try:
                    found = record_alert(kube, alert)
                except ApiException as error:
                    log.warning(
                        "recording alert %s on %s/%s failed: %s",
                        alert.alertname,
                        alert.namespace,
                        alert.pool,
                        error.reason,
                    )
                    self.reply(503, {"error": "could not record the alert; Alertmanager will retry"})
                    return
                metrics.alerts.labels(alert.alertname, "accepted" if found else "unmatched").inc()
                if found:
                    accepted.append(f"{alert.namespace}/{alert.pool}: {alert.alertname}")
                else:
                    skipped.append(f"{alert.alertname}: no FineTunePool {alert.namespace}/{alert.pool}")
            self.reply(200, {"accepted": accepted, "skipped": skipped})

    return Handler


def serve(
    kube: Clients, metrics: OperatorMetrics, token: str | None, namespace: str, host: str, port: int
) -> BoundedHTTPServer:
    server = BoundedHTTPServer((host, port), make_handler(kube, metrics, token, namespace))
    threading.Thread(target=server.serve_forever, name="ballast-http", daemon=True).start()
    log.info("metrics and alert webhook on http://%s:%s", host, server.server_address[1])
    return server
