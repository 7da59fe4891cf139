"""A container's environment and command line, decided from its spec and already-fetched data.

Pure: the ConfigMaps and Secrets a container refers to are read by `sources` (the only part that
talks to the apiserver) and handed in as `{SourceRef: {key: bytes}}`. A reference that was not
fetched, because reading it failed, raises `SourceNotFetched` at the point the kubelet would have
read it, so the caller reports the same first error as a container that reads as it goes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

_VAR = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")
_LABELS_OR_ANNOTATIONS = re.compile(r"metadata\.(labels|annotations)(?:\['(.+)'\])?")
# What the host offers after the project's Python and a benchmark's stand-ins.
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"


@dataclass(frozen=True)
class SourceRef:
    """A ConfigMap or Secret a container reads, and whether it may be missing."""

    kind: Literal["configMap", "secret"]
    name: str
    optional: bool = False


@dataclass(frozen=True)
class KeyRef:
    """One key of a ConfigMap or Secret (`configMapKeyRef`, `secretKeyRef`)."""

    source: SourceRef
    key: str


@dataclass(frozen=True)
class FieldRef:
    """A field of the pod (`fieldRef.fieldPath`)."""

    path: str


@dataclass(frozen=True)
class ResourceFieldRef:
    """A resource request or limit: resources are not enforced here, so it reads as 0."""


@dataclass(frozen=True)
class EnvVar:
    name: str
    value: str = ""
    value_from: KeyRef | FieldRef | ResourceFieldRef | None = None


@dataclass(frozen=True)
class EnvFrom:
    """Every key of a ConfigMap or Secret, each under `prefix + key`."""

    source: SourceRef
    prefix: str = ""


@dataclass(frozen=True)
class EnvSpec:
    env_from: tuple[EnvFrom, ...] = ()
    env: tuple[EnvVar, ...] = ()


@dataclass(frozen=True)
class PodFacts:
    """What the downward API (fieldRef) can tell a container about its pod."""

    name: str
    namespace: str
    uid: str
    node_name: str
    service_account: str
    pod_ip: str
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


class SourceNotFetched(LookupError):
    """A ConfigMap or Secret was needed that the caller could not fetch; it holds the real error."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` escapes, others stay."""

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR.sub(replace, text)


def field_value(path: str, pod: PodFacts) -> str:
    """The downward API's value for `path`; ValueError for a field this agent does not offer."""
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.service_account,
        "status.podIP": pod.pod_ip,
        "status.podIPs": pod.pod_ip,
        "status.hostIP": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    match = _LABELS_OR_ANNOTATIONS.fullmatch(path)
    if match:
        values = pod.labels if match.group(1) == "labels" else pod.annotations
        if match.group(2):
            return str(values.get(match.group(2), ""))
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    raise ValueError(f"unsupported fieldRef {path}")


def base_env(*, path_prefix: str, python_bin: str, home: str, hostname: str, apiserver_port: int) -> dict[str, str]:
    """What every container starts with, before its envFrom and env."""
    return {
        "PATH": f"{path_prefix}:" * bool(path_prefix) + f"{python_bin}:{SYSTEM_PATH}",
        "HOME": home,
        "HOSTNAME": hostname,
        "LANG": "C.UTF-8",
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(apiserver_port),
        "KUBERNETES_SERVICE_PORT_HTTPS": str(apiserver_port),
    }


def env_sources(spec: EnvSpec) -> list[SourceRef]:
    """The ConfigMaps and Secrets `spec` reads, in the order the kubelet reads them, each once."""
    refs = [source.source for source in spec.env_from]
    refs += [var.value_from.source for var in spec.env if isinstance(var.value_from, KeyRef)]
    return list(dict.fromkeys(refs))


def _data(fetched: Mapping[SourceRef, Mapping[str, bytes]], ref: SourceRef) -> Mapping[str, bytes]:
    if ref not in fetched:
        raise SourceNotFetched(ref)
    return fetched[ref]


def container_env(
    base: Mapping[str, str],
    spec: EnvSpec,
    fetched: Mapping[SourceRef, Mapping[str, bytes]],
    pod: PodFacts,
) -> dict[str, str]:
    """The environment of a container: `base`, then envFrom, then env, each `value` expanded so far.

    A missing key of a non-optional reference raises KeyError (the pod fails to start); of an
    optional one, leaves the variable unset.
    """
    env = dict(base)
    for source in spec.env_from:
        env.update({source.prefix + k: v.decode() for k, v in _data(fetched, source.source).items()})
    for var in spec.env:
        ref = var.value_from
        if ref is None:
            env[var.name] = expand(var.value, env)
        elif isinstance(ref, KeyRef):
            data = _data(fetched, ref.source)
            if ref.key not in data:
                if ref.source.optional:
                    continue
                kind = "secret" if ref.source.kind == "secret" else "configmap"
                raise KeyError(f"{kind} {ref.source.name} has no key {ref.key}")
            env[var.name] = data[ref.key].decode()
        elif isinstance(ref, FieldRef):
            env[var.name] = field_value(ref.path, pod)
        else:
            env[var.name] = "0"
    return env


def require_command(container: str, command: Sequence[str]) -> None:
    """Refuse a container without `command`: no image is pulled, so no entrypoint is known."""
    if not command:
        raise ValueError(
            f"container {container} has no command: the node agent does not pull images "
            "(image entrypoints are unknown here), so every container must set `command`"
        )


def command_line(command: Sequence[str], args: Sequence[str], env: Mapping[str, str]) -> list[str]:
    """The argv a container runs: command then args, each with `$(VAR)` expanded from `env`."""
    return [expand(part, env) for part in [*command, *args]]
