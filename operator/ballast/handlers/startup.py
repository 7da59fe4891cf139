"""Operator start-up: kopf's settings, the reconcile loop's workers, and the HTTP endpoint."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from ballast.adapters.http import serve, webhook_tokens
from ballast.adapters.kube import Conflict, connect, list_objects
from ballast.adapters.metrics import OperatorMetrics
from ballast.adapters.objectstore import requests_made
from ballast.handlers import finetunepool, finetunerun, modelrelease
from ballast.handlers.common import KINDS, POOLS, RELEASES, RUNS, Context, Settings
from ballast.handlers.runtime import Backoff, Controller, Key
from ballast.handlers.watches import LABEL_SELECTORS

RECONCILERS = {POOLS: finetunepool.reconcile, RUNS: finetunerun.reconcile, RELEASES: modelrelease.reconcile}


def build_context(settings: Settings, metrics: OperatorMetrics | None) -> Context:
    """The clients, the controller and its reconcilers, wired together (not started)."""
    clients = connect()

    def observe(key: Key, seconds: float, failed: bool) -> None:
        if metrics is not None:
            metrics.reconcile_seconds.labels(KINDS[key.kind]).observe(seconds)
            if failed:
                metrics.reconcile_errors.labels(KINDS[key.kind]).inc()

    controller = Controller(
        {},
        settings.workers,
        Backoff(settings.backoff_base_seconds, settings.backoff_max_seconds),
        observe,
        retry_soon=(Conflict,),
        retry_soon_seconds=settings.conflict_retry_seconds,
    )
    context = Context(clients, controller, metrics, settings)
    for kind, reconcile in RECONCILERS.items():
        controller.reconcilers[kind] = counting_store_requests(context, reconcile)
    return context


def counting_store_requests(context: Context, reconcile: Any) -> Any:
    """The reconcile, with the object-store requests it made (on its own thread) counted by kind."""

    def counted(key: Key) -> Any:
        before = requests_made()
        try:
            return reconcile(context, key)
        finally:
            if context.metrics is not None and (made := requests_made() - before):
                context.metrics.store_requests.labels(KINDS[key.kind]).inc(made)

    return counted


def prime(context: Context, namespaces: list[str] | None) -> None:
    """Fill the cache with every object of the three kinds before the first reconcile (an
    informer's initial list): a pool must never decide while its runs are still unseen."""
    for plural in (POOLS, RUNS, RELEASES):
        for body in list_objects(context.clients, plural, namespaces):
            meta = body["metadata"]
            key = Key(plural, meta["namespace"], meta["name"])
            context.controller.cache.put(key, body)
            context.controller.enqueue([key])


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    # Events are posted explicitly by the reconcilers ("Created Job x"); not every log line.
    settings.posting.level = logging.WARNING
    # The namespaces are named exactly; no cluster-wide namespace or CRD discovery (and no RBAC for it).
    settings.scanning.disabled = True
    settings.watching.server_timeout = 60
    settings.watching.client_timeout = 90
    settings.networking.request_timeout = 60
    for resource, selector in LABEL_SELECTORS.items():
        settings.watching.label_selectors[resource] = selector
    operator_settings: Settings = memo.get("settings") or Settings()
    metrics = OperatorMetrics()
    metrics.start_at_zero(list(KINDS.values()))
    context = build_context(operator_settings, metrics)
    memo["context"] = context
    memo["controller"] = context.controller
    prime(context, memo.get("namespaces"))
    context.controller.start()
    port = memo.get("http_port")
    if port is not None:
        # Alerts are mapped to the namespaces watched, never to the operator's own.
        watched = memo.get("namespaces")
        memo["http"] = serve(
            context.clients,
            metrics,
            webhook_tokens(),
            None if watched is None else frozenset(watched),
            memo.get("http_host", "0.0.0.0"),
            int(port),
        )


@kopf.on.cleanup()
def stop(memo: Any, **_: Any) -> None:
    server = memo.get("http")
    if server is not None:
        server.shutdown()
    controller = memo.get("controller")
    if controller is not None:
        controller.stop()
