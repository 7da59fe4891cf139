"""Watch events -> work-queue keys.

kopf delivers every change of the three kinds, of the Jobs the runs own, of Deployments and of the
`SamplesAdded` Events that `ballast samples` posts; each becomes the keys of the objects whose
reconcile could now decide differently. Nothing here reconciles: handlers/runtime.py does.
"""

from __future__ import annotations

from typing import Any

import kopf

from ballast.api.common import GROUP, VERSION
from ballast.handlers.common import POOLS, RELEASES, RUNS
from ballast.handlers.runtime import Cache, Controller, Key
from ballast.policy.manifests import LABEL_POOL, LABEL_RUN

JOBS: tuple[str, str, str] = ("batch", "v1", "jobs")
DEPLOYMENTS: tuple[str, str, str] = ("apps", "v1", "deployments")
EVENTS: tuple[str, str] = ("v1", "events")
# Server-side label selectors: only our Jobs and the CLI's sample notifications reach the operator.
LABEL_SELECTORS: dict[tuple[str, str] | tuple[str, str, str], str] = {JOBS: LABEL_RUN, EVENTS: LABEL_POOL}


def _name(body: dict[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata", {})
    return meta.get("namespace", ""), meta.get("name", "")


def _releases_of_pool(cache: Cache, namespace: str, pool: str) -> list[Key]:
    bodies = cache.list(RELEASES, namespace, lambda b: b.get("spec", {}).get("pool") == pool)
    return [Key(RELEASES, namespace, b["metadata"]["name"]) for b in bodies]


def keys_for_pool(cache: Cache, namespace: str, name: str) -> list[Key]:
    """The pool; its unfinished runs (one may wait for the pool); the releases of its models."""
    waiting = cache.list(
        RUNS,
        namespace,
        lambda b: (
            b.get("spec", {}).get("pool") == name and b.get("status", {}).get("phase") not in ("Succeeded", "Failed")
        ),
    )
    runs = [Key(RUNS, namespace, b["metadata"]["name"]) for b in waiting]
    return [Key(POOLS, namespace, name), *runs, *_releases_of_pool(cache, namespace, name)]


def keys_for_run(cache: Cache, body: dict[str, Any]) -> list[Key]:
    """The run; its pool (it may start the next run or adopt a base); releases waiting on it."""
    namespace, name = _name(body)
    pool = body.get("spec", {}).get("pool", "")
    return [Key(RUNS, namespace, name), Key(POOLS, namespace, pool), *_releases_of_pool(cache, namespace, pool)]


def keys_for_deployment(cache: Cache, body: dict[str, Any]) -> list[Key]:
    namespace, name = _name(body)
    bodies = cache.list(RELEASES, namespace, lambda b: b.get("spec", {}).get("deployment", {}).get("name") == name)
    return [Key(RELEASES, namespace, b["metadata"]["name"]) for b in bodies]


def keys_for_labelled(kind: str, label: str, body: dict[str, Any]) -> list[Key]:
    """A Job labelled with its run, or an Event labelled with its pool."""
    namespace, _ = _name(body)
    owner = body.get("metadata", {}).get("labels", {}).get(label)
    return [Key(kind, namespace, owner)] if owner else []


def record(controller: Controller, kind: str, event: kopf.RawEvent) -> None:
    """Keep the cache current with one of our own objects, then queue what it concerns."""
    body: dict[str, Any] = dict(event.get("object") or {})
    namespace, name = _name(body)
    key = Key(kind, namespace, name)
    if event.get("type") == "DELETED":
        controller.cache.delete(key)
    else:
        controller.cache.put(key, body)
    cache = controller.cache
    if kind == POOLS:
        controller.enqueue(keys_for_pool(cache, namespace, name))
    elif kind == RUNS:
        controller.enqueue(keys_for_run(cache, body))
    else:
        controller.enqueue([key])


def _controller(memo: Any) -> Controller:
    return memo["controller"]  # type: ignore[no-any-return]


@kopf.on.event(GROUP, VERSION, POOLS)
async def pool_changed(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    record(_controller(memo), POOLS, event)


@kopf.on.event(GROUP, VERSION, RUNS)
async def run_changed(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    record(_controller(memo), RUNS, event)


@kopf.on.event(GROUP, VERSION, RELEASES)
async def release_changed(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    record(_controller(memo), RELEASES, event)


@kopf.on.event(*JOBS, labels={LABEL_RUN: kopf.PRESENT})
async def job_changed(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    _controller(memo).enqueue(keys_for_labelled(RUNS, LABEL_RUN, dict(event.get("object") or {})))


@kopf.on.event(*DEPLOYMENTS)
async def deployment_changed(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    controller = _controller(memo)
    controller.enqueue(keys_for_deployment(controller.cache, dict(event.get("object") or {})))


@kopf.on.event(*EVENTS, labels={LABEL_POOL: kopf.PRESENT})
async def samples_added(event: kopf.RawEvent, memo: Any, **_: Any) -> None:
    if event.get("type") in (None, "ADDED"):
        _controller(memo).enqueue(keys_for_labelled(POOLS, LABEL_POOL, dict(event.get("object") or {})))
