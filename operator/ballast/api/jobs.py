"""How a pool's training and gate Jobs are shaped for the cluster they run in: a Kueue queue, a
priority class, pod labels and annotations, image pull secrets, extra volumes.

Whoever may edit a pool gets these Jobs created with the operator's ServiceAccount, so nothing here
may change what the Jobs run or reach the node: Ballast's own labels cannot be overridden, volumes
are limited to kinds that stay inside the cluster's storage (no hostPath), and extra mounts live
under /mnt/ (never over the trainer's code, its scratch space or /dev/shm). The CRD carries the
same rules, so the apiserver refuses what the operator would.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, JsonValue, StringConstraints, model_validator

from ballast.api.common import Model

# Kueue's batch/Job integration: a Job with this label is created suspended and waits in the
# named LocalQueue; Kueue admits it by setting spec.suspend to false.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Label and annotation keys a pool may not set on its pods: Ballast's own, the Job controller's,
# and Kueue's (a queue is chosen with `queueName`, on the Job).
RESERVED_KEY_PREFIXES = ("ballast.dev/", "batch.kubernetes.io/", "kueue.x-k8s.io/")
RESERVED_LABELS = ("app.kubernetes.io/managed-by", "job-name", "controller-uid")
# The volume kinds a pool may add: all stay inside the cluster's storage; none reaches the node's files.
VOLUME_SOURCES = ("configMap", "secret", "emptyDir", "persistentVolumeClaim", "csi", "projected", "ephemeral")
# Volumes the operator's own Job already has.
OWN_VOLUMES = ("scratch", "dshm")
MOUNT_ROOT = "/mnt/"

DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
LABEL_KEY = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"

LabelValue = Annotated[str, StringConstraints(pattern=LABEL_VALUE, max_length=63)]
VolumeName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
# A volume source is passed to the pod as written; the apiserver validates it when the Job is created.
Source = Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]


def _key_rules(field: str, labels: bool) -> list[JsonValue]:
    """CEL for a map of label or annotation keys: none of the reserved ones (their syntax is the
    operator's check: a regular expression over every key costs more than the apiserver allows)."""
    reserved = [f"k.startsWith('{p}')" for p in RESERVED_KEY_PREFIXES]
    reserved += [f"k == '{k}'" for k in RESERVED_LABELS] if labels else []
    return [
        {
            "rule": f"self.all(k, !({' || '.join(reserved)}))",
            "message": f"jobs.{field}: keys under {', '.join(RESERVED_KEY_PREFIXES)}"
            + (f" and {', '.join(RESERVED_LABELS)}" if labels else "")
            + " are Ballast's, the Job controller's or Kueue's",
        },
    ]


def reserved_key(key: str, labels: bool) -> bool:
    return key.startswith(RESERVED_KEY_PREFIXES) or (labels and key in RESERVED_LABELS)


class SecretName(Model):
    name: str = Field(pattern=DNS_SUBDOMAIN, max_length=253, description="A Secret in the pool's namespace.")


class JobVolume(Model):
    """An extra pod volume: a name and exactly one source of the allowed kinds."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": " + ".join(f"(has(self.{s}) ? 1 : 0)" for s in VOLUME_SOURCES) + " == 1",
                    "message": "jobs.volumes: each volume needs exactly one of "
                    + ", ".join(VOLUME_SOURCES)
                    + " (hostPath and other kinds are refused)",
                },
                {
                    "rule": " && ".join(f"self.name != '{n}'" for n in OWN_VOLUMES),
                    "message": f"jobs.volumes: the names {', '.join(OWN_VOLUMES)} are the operator's own volumes",
                },
            ]
        }
    }

    name: VolumeName
    config_map: Source | None = None
    secret: Source | None = None
    empty_dir: Source | None = None
    persistent_volume_claim: Source | None = None
    csi: Source | None = None
    projected: Source | None = None
    ephemeral: Source | None = None

    @model_validator(mode="before")
    @classmethod
    def _allowed_kind(cls, data: Any) -> Any:
        if isinstance(data, dict):
            refused = sorted(k for k in data if k != "name" and k not in VOLUME_SOURCES and _snake(k) not in _SNAKE)
            if refused:
                raise ValueError(
                    f"jobs.volumes[{data.get('name', '?')}]: volume kind {', '.join(refused)} is not allowed "
                    f"(allowed: {', '.join(VOLUME_SOURCES)})"
                )
        return data

    @model_validator(mode="after")
    def _one_source(self) -> JobVolume:
        sources = [s for s in VOLUME_SOURCES if self.to_wire().get(s) is not None]
        if len(sources) != 1:
            raise ValueError(f"jobs.volumes[{self.name}]: needs exactly one of {', '.join(VOLUME_SOURCES)}")
        if self.name in OWN_VOLUMES:
            raise ValueError(f"jobs.volumes[{self.name}]: the name is the operator's own volume")
        return self


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


_SNAKE = {_snake(s) for s in VOLUME_SOURCES}


class JobVolumeMount(Model):
    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": f"self.mountPath.startsWith('{MOUNT_ROOT}') && !self.mountPath.contains('/..')",
                    "message": f"jobs.volumeMounts: mountPath must lie under {MOUNT_ROOT} "
                    "(the trainer's code, scratch space and /dev/shm are not mountable)",
                }
            ]
        }
    }

    name: VolumeName = Field(description="One of jobs.volumes.")
    mount_path: str = Field(max_length=1024, description=f"Where the trainer sees it: a path under {MOUNT_ROOT}.")
    sub_path: str | None = Field(None, max_length=1024, description="A path inside the volume to mount instead.")
    read_only: bool = False

    @model_validator(mode="after")
    def _under_mount_root(self) -> JobVolumeMount:
        if not self.mount_path.startswith(MOUNT_ROOT) or "/.." in self.mount_path:
            raise ValueError(
                f"jobs.volumeMounts[{self.name}].mountPath {self.mount_path!r} must lie under {MOUNT_ROOT} "
                "(the trainer's code, scratch space and /dev/shm are not mountable)"
            )
        return self


class JobSettings(Model):
    """How the pool's training and gate Jobs are shaped for the cluster (Kueue, priority, pull
    secrets, volumes). None of it changes what the Jobs run or how a run is judged."""

    model_config = Model.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                    "self.volumes.exists(v, v.name == m.name))",
                    "message": "jobs.volumeMounts: every mount must name one of jobs.volumes",
                },
                {
                    "rule": "!has(self.volumes) || self.volumes.all(v, self.volumes.exists_one(w, w.name == v.name))",
                    "message": "jobs.volumes: volume names must be unique",
                },
            ]
        }
    }

    queue_name: str | None = Field(
        None,
        pattern=DNS_SUBDOMAIN,
        max_length=63,
        description=f"Kueue LocalQueue the Jobs wait in (label `{KUEUE_QUEUE_LABEL}`). The Jobs are created "
        "suspended; Kueue admits one by unsuspending it. Until then the run reports Queued.",
    )
    priority_class_name: str | None = Field(
        None, pattern=DNS_SUBDOMAIN, max_length=253, description="PriorityClass of the Jobs' pods."
    )
    pod_labels: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=64,
        description="Extra labels on the Jobs' pods; Ballast's, the Job controller's and Kueue's keys are refused.",
        json_schema_extra={"x-kubernetes-validations": _key_rules("podLabels", labels=True)},
    )
    pod_annotations: dict[str, Annotated[str, StringConstraints(max_length=4096)]] = Field(
        default_factory=dict,
        max_length=64,
        description="Extra annotations on the Jobs' pods; keys under ballast.dev/, batch.kubernetes.io/ and "
        "kueue.x-k8s.io/ are refused.",
        json_schema_extra={"x-kubernetes-validations": _key_rules("podAnnotations", labels=False)},
    )
    image_pull_secrets: list[SecretName] = Field(
        default_factory=list, max_length=16, description="Secrets to pull the trainer image with."
    )
    volumes: list[JobVolume] = Field(
        default_factory=list,
        max_length=16,
        description="Extra pod volumes: configMap, secret, emptyDir, persistentVolumeClaim, csi, projected or "
        "ephemeral only (no hostPath).",
    )
    volume_mounts: list[JobVolumeMount] = Field(
        default_factory=list, max_length=16, description="Mounts of jobs.volumes in the trainer container."
    )

    @model_validator(mode="after")
    def _consistent(self) -> JobSettings:
        for field, keys, labels in (
            ("podLabels", self.pod_labels, True),
            ("podAnnotations", self.pod_annotations, False),
        ):
            malformed = sorted(k for k in keys if len(k) > 317 or not re.fullmatch(LABEL_KEY, k))
            if malformed:
                raise ValueError(f"jobs.{field}: {', '.join(malformed)} is not a label key ([prefix/]name)")
            refused = sorted(k for k in keys if reserved_key(k, labels))
            if refused:
                raise ValueError(
                    f"jobs.{field}: {', '.join(refused)} may not be set (Ballast's, the Job controller's or "
                    "Kueue's own keys)"
                )
        names = [v.name for v in self.volumes]
        if len(set(names)) != len(names):
            raise ValueError("jobs.volumes: volume names must be unique")
        unknown = sorted({m.name for m in self.volume_mounts} - set(names))
        if unknown:
            raise ValueError(f"jobs.volumeMounts: {', '.join(unknown)} is not one of jobs.volumes")
        return self
