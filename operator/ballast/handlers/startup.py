"""Operator start-up: kopf settings and the API clients every handler shares (through kopf's memo)."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ballast.adapters.kube import connect


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Events are posted explicitly by the reconcilers ("Created Job x"); not every log line.
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 20
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    # Handlers here are timers that re-run anyway; keep kopf's own retries short.
    settings.networking.request_timeout = 60
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="ballast.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="ballast.dev")
    memo["clients"] = connect()
