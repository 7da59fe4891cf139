"""Operator start-up: kopf settings and the API clients every handler shares (through kopf's memo)."""

from __future__ import annotations

import logging
import os
from typing import Any

import kopf

from ballast.adapters.http import serve
from ballast.adapters.kube import connect
from ballast.adapters.metrics import OperatorMetrics


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Events are posted explicitly by the reconcilers ("Created Job x"); not every log line.
    settings.posting.level = logging.WARNING
    # The namespaces are named exactly; no cluster-wide namespace or CRD discovery (and no RBAC for it).
    settings.scanning.disabled = True
    settings.execution.max_workers = 20
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    # Handlers here are timers that re-run anyway; keep kopf's own retries short.
    settings.networking.request_timeout = 60
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ballast.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="ballast.dev")
    memo["clients"] = connect()
    memo["metrics"] = OperatorMetrics()
    port = memo.get("http_port")
    if port is not None:
        token = os.environ.get("BALLAST_WEBHOOK_TOKEN") or None
        namespace = os.environ.get("POD_NAMESPACE", "default")
        memo["http"] = serve(
            memo["clients"], memo["metrics"], token, namespace, memo.get("http_host", "0.0.0.0"), int(port)
        )


@kopf.on.cleanup()
def stop_http(memo: Any, **_: Any) -> None:
    server = memo.get("http")
    if server is not None:
        server.shutdown()
