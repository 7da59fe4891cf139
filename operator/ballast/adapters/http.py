"""The operator's HTTP endpoint: Prometheus metrics, health, and the Alertmanager webhook receiver.

    GET  /metrics   operator metrics (ballast.adapters.metrics.OperatorMetrics)
    GET  /healthz
    POST /alerts    Alertmanager webhook (v4); `Authorization: Bearer <token>` required

An accepted firing alert is recorded on its pool's status (`pendingAlert`) with an Event; the
pool's reconciler then starts a run only if the trigger policy allows it (>= 50 samples waiting,
the cooldown passed). A bad payload gets 400 and changes nothing; a missing or wrong token, 401.
Each alert is judged alone (ballast.policy.alerts): the reply lists the `accepted`, `refused`
(no `namespace`, an unwatched namespace, a namespace the token may not speak for, the operator
forbidden there) and `skipped` ones with 200, so Alertmanager does not resend what can never
succeed. Only when the apiserver failed for some alert does the reply say 503, after recording
the others: Alertmanager resends the notification, and recording an alert twice is harmless.

Tokens: BALLAST_WEBHOOK_TOKEN, good for every watched namespace, and one file per namespace in
BALLAST_WEBHOOK_TOKEN_DIR (file name: the namespace; content: its token), good for that namespace
only (the chart mounts `webhook.namespaceTokensSecret` there). Read at start-up.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

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
from ballast.policy.alerts import PoolAlert, Refusal, WebhookTokens, alert_status_patch, authenticate, pool_alerts
from ballast.policy.conditions import Event

log = logging.getLogger("ballast.http")
MAX_PAYLOAD = 1024 * 1024
FORBIDDEN = 403


def webhook_tokens(environ: dict[str, str] | None = None) -> WebhookTokens:
    """The tokens from the environment: BALLAST_WEBHOOK_TOKEN and the files of BALLAST_WEBHOOK_TOKEN_DIR
    (a mounted Secret's `..data` and other dot-entries are not namespaces, and are left out)."""
    env = os.environ if environ is None else environ
    per_namespace = {}
    directory = env.get("BALLAST_WEBHOOK_TOKEN_DIR")
    if directory:
        for path in sorted(Path(directory).iterdir()):
            if not path.name.startswith(".") and path.is_file():
                per_namespace[path.name] = path.read_text().strip()
    return WebhookTokens(env.get("BALLAST_WEBHOOK_TOKEN") or None, per_namespace)


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


def make_handler(kube: Clients, metrics: OperatorMetrics, tokens: WebhookTokens, watched: frozenset[str] | None):  # type: ignore[no-untyped-def]
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
            if not tokens.configured:
                self.reply(503, {"error": "webhook disabled: the operator has no BALLAST_WEBHOOK_TOKEN(_DIR)"})
                return
            caller = authenticate(self.headers.get("Authorization", ""), tokens)
            if caller is None:
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
            triage = pool_alerts(payload, watched, caller)
            for refused in triage.refused:
                metrics.alerts.labels(refused.alertname, "refused").inc()
            accepted, failed = [], []
            for alert in triage.matched:
                where = f"{alert.namespace}/{alert.pool}"
                try:
                    found = record_alert(kube, alert)
                except ApiException as error:
                    log.warning("recording alert %s on %s failed: %s", alert.alertname, where, error.reason)
                    if error.status == FORBIDDEN:  # no retry can help: refused, like an unwatched namespace
                        metrics.alerts.labels(alert.alertname, "refused").inc()
                        why = f"the operator may not read FineTunePools in {alert.namespace}"
                        triage.refused.append(Refusal(alert.alertname, why))
                    else:
                        failed.append(f"{alert.alertname}: {where}: {error.reason}")
                    continue
                metrics.alerts.labels(alert.alertname, "accepted" if found else "unmatched").inc()
                if found:
                    accepted.append(f"{where}: {alert.alertname}")
                else:
                    triage.skipped.append(f"{alert.alertname}: no FineTunePool {where}")
            result = {"accepted": accepted, "refused": [str(r) for r in triage.refused], "skipped": triage.skipped}
            if failed:  # the rest is recorded; a resend records it again, harmlessly
                self.reply(503, {**result, "failed": failed, "error": "could not record every alert; resend"})
                return
            self.reply(200, result)

    return Handler


def serve(
    kube: Clients,
    metrics: OperatorMetrics,
    tokens: WebhookTokens,
    watched: frozenset[str] | None,
    host: str,
    port: int,
) -> BoundedHTTPServer:
    """Serve in a thread. `watched`: the namespaces the operator watches (None: all of them)."""
    server = BoundedHTTPServer((host, port), make_handler(kube, metrics, tokens, watched))
    threading.Thread(target=server.serve_forever, name="ballast-http", daemon=True).start()
    log.info("metrics and alert webhook on http://%s:%s", host, server.server_address[1])
    return server
