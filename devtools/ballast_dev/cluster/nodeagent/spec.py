"""The pod spec, read once from the kubernetes client's models into the frozen inputs of the pure
modules (`env`, `volumes`, `probes`, `termination`), with the Kubernetes defaults filled in.

No I/O; the client's models are loosely typed, so they come in as `Any`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .env import EnvFrom, EnvSpec, EnvVar, FieldRef, KeyRef, PodFacts, ResourceFieldRef, SourceRef
from .probes import ExecAction, HttpGet, Probe, TcpSocket
from .termination import DEFAULT_PATH, FILE
from .volumes import DataFiles, DownwardFile, KeyToPath, ServiceAccountToken, Volume, VolumeMount, VolumeSource


@dataclass(frozen=True)
class Container:
    """What the agent needs of a container to run it."""

    name: str
    image: str = "local"
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    working_dir: str | None = None
    env: EnvSpec = field(default_factory=EnvSpec)
    mounts: tuple[VolumeMount, ...] = ()
    readiness: Probe | None = None
    liveness: Probe | None = None
    ports: Mapping[str, int] = field(default_factory=dict)
    termination_message_path: str = DEFAULT_PATH
    termination_message_policy: str = FILE  # or FallbackToLogsOnError


def container(spec: Any) -> Container:
    """A V1Container as the agent runs it."""
    ports: dict[str, int] = {}
    for port in spec.ports or []:
        if port.name:
            ports.setdefault(port.name, int(port.container_port))
    return Container(
        name=str(spec.name),
        image=spec.image or "local",
        command=tuple(spec.command or ()),
        args=tuple(spec.args or ()),
        working_dir=spec.working_dir or None,
        env=env_spec(spec),
        mounts=tuple(
            VolumeMount(m.name, m.mount_path, m.sub_path or "", bool(m.read_only)) for m in spec.volume_mounts or []
        ),
        readiness=probe(spec.readiness_probe),
        liveness=probe(spec.liveness_probe),
        ports=ports,
        termination_message_path=spec.termination_message_path or DEFAULT_PATH,
        termination_message_policy=spec.termination_message_policy or FILE,
    )


def _ref(kind: Literal["configMap", "secret"], name: str | None, optional: bool | None) -> SourceRef:
    return SourceRef(kind, name or "", bool(optional))


def env_spec(spec: Any) -> EnvSpec:
    """A V1Container's envFrom and env; entries naming no source this agent knows are left out."""
    env_from = []
    for source in spec.env_from or []:
        prefix = source.prefix or ""
        if source.config_map_ref is not None:
            ref = _ref("configMap", source.config_map_ref.name, source.config_map_ref.optional)
        elif source.secret_ref is not None:
            ref = _ref("secret", source.secret_ref.name, source.secret_ref.optional)
        else:
            continue
        env_from.append(EnvFrom(ref, prefix))
    env = []
    for var in spec.env or []:
        source = var.value_from
        if source is None:
            env.append(EnvVar(var.name, var.value or ""))
        elif source.secret_key_ref is not None:
            key = source.secret_key_ref
            env.append(EnvVar(var.name, value_from=KeyRef(_ref("secret", key.name, key.optional), key.key)))
        elif source.config_map_key_ref is not None:
            key = source.config_map_key_ref
            env.append(EnvVar(var.name, value_from=KeyRef(_ref("configMap", key.name, key.optional), key.key)))
        elif source.field_ref is not None:
            env.append(EnvVar(var.name, value_from=FieldRef(source.field_ref.field_path)))
        elif source.resource_field_ref is not None:
            env.append(EnvVar(var.name, value_from=ResourceFieldRef()))
    return EnvSpec(tuple(env_from), tuple(env))


def probe(spec: Any) -> Probe | None:
    """A V1Probe with the Kubernetes defaults filled in."""
    if spec is None:
        return None
    action: HttpGet | TcpSocket | ExecAction | None = None
    if spec.http_get is not None:
        get = spec.http_get
        action = HttpGet(get.port, get.path or "/", get.host or None, get.scheme or "HTTP")
    elif spec.tcp_socket is not None:
        action = TcpSocket(spec.tcp_socket.port, spec.tcp_socket.host or None)
    elif spec.var_exec is not None:
        action = ExecAction(tuple(spec.var_exec.command or ()))
    return Probe(
        action=action,
        initial_delay_seconds=spec.initial_delay_seconds or 0,
        period_seconds=spec.period_seconds or 10,
        timeout_seconds=spec.timeout_seconds or 1,
        success_threshold=spec.success_threshold or 1,
        failure_threshold=spec.failure_threshold or 3,
    )


def _items(items: Any) -> tuple[KeyToPath, ...]:
    return tuple(KeyToPath(item.key, item.path) for item in items or [])


def _downward(items: Any) -> list[VolumeSource]:
    return [DownwardFile(item.path, item.field_ref.field_path if item.field_ref else None) for item in items or []]


def volume(spec: Any) -> Volume:
    """A V1Volume; a kind this agent does not fill (emptyDir among them) is an empty directory."""
    if spec.host_path is not None:
        return Volume(spec.name, host_path=spec.host_path.path)
    sources: list[VolumeSource] = []
    if spec.config_map is not None:
        ref = _ref("configMap", spec.config_map.name, spec.config_map.optional)
        sources.append(DataFiles(ref, _items(spec.config_map.items)))
    elif spec.secret is not None:
        ref = _ref("secret", spec.secret.secret_name, spec.secret.optional)
        sources.append(DataFiles(ref, _items(spec.secret.items)))
    elif spec.downward_api is not None:
        sources += _downward(spec.downward_api.items)
    elif spec.projected is not None:
        for source in spec.projected.sources or []:
            if source.service_account_token is not None:
                token = source.service_account_token
                sources.append(
                    ServiceAccountToken(token.path, token.audience or None, token.expiration_seconds or 3600)
                )
            elif source.config_map is not None:
                ref = _ref("configMap", source.config_map.name, source.config_map.optional)
                sources.append(DataFiles(ref, _items(source.config_map.items)))
            elif source.secret is not None:
                ref = _ref("secret", source.secret.name, source.secret.optional)
                sources.append(DataFiles(ref, _items(source.secret.items)))
            elif source.downward_api is not None:
                sources += _downward(source.downward_api.items)
    return Volume(spec.name, sources=tuple(sources))


def pod_facts(pod: Any, node_name: str, pod_ip: str) -> PodFacts:
    """What the downward API tells a container about `pod` as it is now (labels may change)."""
    meta = pod.metadata
    return PodFacts(
        name=meta.name,
        namespace=meta.namespace,
        uid=meta.uid,
        node_name=node_name,
        service_account=pod.spec.service_account_name or "default",
        pod_ip=pod_ip,
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
    )


def restart_policy(pod: Any) -> str:
    return str(pod.spec.restart_policy or "Always")
