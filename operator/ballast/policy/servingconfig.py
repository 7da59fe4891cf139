"""How a release tells the serving Deployment its model without changing what Git owns.

The release writes its model into a ConfigMap it owns, `<release>-model` (keys BALLAST_MODEL_URI,
_DIGEST, _VERSION), and the Deployment in Git reads it with `envFrom: [{configMapRef: {name:
<release>-model}}]`. To roll the pods, the operator sets one pod-template annotation (the model's
checksum) by server-side apply as field manager `ballast-operator`; Git's manifest never names that
field, so an Argo CD self-heal, a Flux reconcile or `helm upgrade` leaves it alone, and a pod
that starts again for any reason reads the released model from the ConfigMap.

What pods actually run is then checked, not assumed: a pod whose container sets BALLAST_MODEL_*
itself (env wins over envFrom), does not read the ConfigMap, or started before the ConfigMap got
its current model runs something else. That is `ModelDrift`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ballast.api.common import ModelRef
from ballast.api.modelrelease import (
    ANNOTATION_MODEL,
    ANNOTATION_MODEL_CHECKSUM,
    ANNOTATION_WRITTEN_AT,
    ENV_MODEL_DIGEST,
    ENV_MODEL_URI,
    ENV_MODEL_VERSION,
)

MODEL_KEYS = (ENV_MODEL_URI, ENV_MODEL_DIGEST, ENV_MODEL_VERSION)
FIELD_MANAGER = "ballast-operator"


def config_map_name(release: str) -> str:
    return f"{release[:247]}-model"


@dataclass(frozen=True)
class ModelSource:
    """Where one container's BALLAST_MODEL_* variables come from, as its spec says."""

    config_maps: tuple[str, ...] = ()  # ConfigMaps it reads all of them from, unchanged (envFrom, no prefix)
    literal: tuple[tuple[str, str], ...] = ()  # (name, value) set in the spec itself: they win
    overridden: bool = False  # a later envFrom source or another key reference may replace them

    def reads(self, config_map: str) -> bool:
        return config_map in self.config_maps and not self.literal and not self.overridden


@dataclass(frozen=True)
class ModelConfigView:
    """The release's ConfigMap as it is in the cluster."""

    version: str | None
    uri: str | None
    digest: str | None
    written_at: datetime | None
    release: str | None  # the release its `ballast.dev/model-release` label names: the one that owns it

    def checksum(self) -> str | None:
        if not (self.version and self.uri and self.digest):
            return None
        return _checksum(self.version, self.uri, self.digest)  # as written: no validation to trip over


@dataclass(frozen=True)
class PodView:
    name: str
    ready: bool
    started_at: datetime | None  # the serving container's current start (env is read then)
    source: ModelSource
    checksum: str | None = None  # the pod's `ballast.dev/model-checksum` (its template's when created)


def checksum(model: ModelRef) -> str:
    """Changes whenever the model does: the pod-template annotation that rolls the pods."""
    return _checksum(model.version, model.uri, model.digest)


def _checksum(version: str, uri: str, digest: str) -> str:
    return hashlib.sha256("\n".join((version, uri, digest)).encode()).hexdigest()[:16]


def model_config_map(release: str, model: ModelRef, written_at: datetime, labels: dict[str, str]) -> dict[str, Any]:
    """The ConfigMap as the operator applies it (server-side apply). No ownerReference on purpose:
    deleting or re-creating the release (a prune, a rename, a restore) must not take the model away
    from pods that still read it. Its label names the release that writes it."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": config_map_name(release),
            "labels": labels,
            "annotations": {
                ANNOTATION_MODEL: model.version,
                ANNOTATION_WRITTEN_AT: written_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        },
        "data": {ENV_MODEL_URI: model.uri, ENV_MODEL_DIGEST: model.digest, ENV_MODEL_VERSION: model.version},
    }


def deployment_roll(deployment: str, model: ModelRef) -> dict[str, Any]:
    """The only Deployment fields the operator owns: two pod-template annotations."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": {ANNOTATION_MODEL: model.version, ANNOTATION_MODEL_CHECKSUM: checksum(model)}
                }
            }
        },
    }


def how_to_read(deployment: str, container: str, config_map: str, source: ModelSource) -> str:
    """What the Deployment's owner changes in Git so the release can move it."""
    fix = f"give container {container} of Deployment {deployment} envFrom: [{{configMapRef: {{name: {config_map}}}}}]"
    if source.literal:
        names = ", ".join(name for name, _ in source.literal)
        fix += f" and remove its env {names} (env set in the Deployment wins over the ConfigMap)"
    return fix


# Node and operator clocks differ a little: a container started this long before the ConfigMap's
# write (by their clocks) is not called stale on time alone.
CLOCK_SKEW = timedelta(seconds=5)


def drifted_pods(config_map: str, config: ModelConfigView, pods: Sequence[PodView]) -> list[str]:
    """Ready pods that do not run the model in the ConfigMap, each with what it runs instead."""
    drifted = []
    current = config.checksum()
    for pod in pods:
        if not pod.ready:
            continue
        literal = dict(pod.source.literal)
        if literal:
            runs = literal.get(ENV_MODEL_VERSION, "a model set in its own env")
            drifted.append(f"{pod.name} runs {runs} (env in the pod spec)")
        elif not pod.source.reads(config_map):
            drifted.append(f"{pod.name} does not read ConfigMap {config_map} as it is")
        elif pod.checksum is not None and current is not None:
            # Created from a template carrying a checksum: it names the model the pod started with.
            if pod.checksum != current:
                drifted.append(f"{pod.name} was started for another model (checksum {pod.checksum})")
        elif config.written_at and pod.started_at and pod.started_at < config.written_at - CLOCK_SKEW:
            drifted.append(f"{pod.name} started before {config.version} was written (an earlier model)")
    return drifted
