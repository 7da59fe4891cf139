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
from datetime import datetime
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

    config_maps: tuple[str, ...] = ()  # ConfigMaps it reads them from (envFrom or configMapKeyRef)
    literal: tuple[tuple[str, str], ...] = ()  # (name, value) set in the spec itself: they win

    def reads(self, config_map: str) -> bool:
        return config_map in self.config_maps and not self.literal


@dataclass(frozen=True)
class ModelConfigView:
    """The release's ConfigMap as it is in the cluster."""

    version: str | None
    written_at: datetime | None
    owner_uids: tuple[str, ...]


@dataclass(frozen=True)
class PodView:
    name: str
    ready: bool
    started_at: datetime | None  # the serving container's current start (env is read then)
    source: ModelSource


def checksum(model: ModelRef) -> str:
    """Changes whenever the model does: the pod-template annotation that rolls the pods."""
    text = "\n".join((model.version, model.uri, model.digest))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def model_config_map(
    release: str, release_uid: str, model: ModelRef, written_at: datetime, labels: dict[str, str]
) -> dict[str, Any]:
    """The ConfigMap as the operator applies it (server-side apply; owned by the release)."""
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
            "ownerReferences": [
                {
                    "apiVersion": "ballast.dev/v1alpha1",
                    "kind": "ModelRelease",
                    "name": release,
                    "uid": release_uid,
                    "controller": True,
                    "blockOwnerDeletion": False,
                }
            ],
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


def drifted_pods(config_map: str, config: ModelConfigView, pods: Sequence[PodView]) -> list[str]:
    """Ready pods that do not run the model in the ConfigMap, each with what it runs instead."""
    drifted = []
    for pod in pods:
        if not pod.ready:
            continue
        literal = dict(pod.source.literal)
        if literal:
            runs = literal.get(ENV_MODEL_VERSION, "a model set in its own env")
            if runs != config.version or len(literal) < len(MODEL_KEYS):
                drifted.append(f"{pod.name} runs {runs} (env in the pod spec)")
        elif config_map not in pod.source.config_maps:
            drifted.append(f"{pod.name} does not read ConfigMap {config_map}")
        elif config.written_at and pod.started_at and pod.started_at < config.written_at:
            drifted.append(f"{pod.name} started before {config.version} was written (an earlier model)")
    return drifted
