"""Reads what a pod refers to (ConfigMaps, Secrets, service-account tokens) and writes its volumes.

The I/O half of `env` and `volumes`: references are fetched in the order the pure code reads
them, stopping at the first that fails; the pure code then decides, and raises `SourceNotFetched`
where it reaches the reference that failed, which is turned back into the apiserver's error.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import env, volumes
from .env import PodFacts, SourceNotFetched, SourceRef
from .volumes import ServiceAccountToken, Volume

# Every call to the apiserver gives up after this long: a half-open connection must not freeze a pod.
API_TIMEOUT = 30

Need = TypeVar("Need")


def read_source(core: client.CoreV1Api, namespace: str, ref: SourceRef) -> dict[str, bytes]:
    """A ConfigMap's data or a Secret's decoded data; empty when an optional one does not exist."""
    try:
        if ref.kind == "secret":
            secret = core.read_namespaced_secret(ref.name, namespace, _request_timeout=API_TIMEOUT)
            return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        cm = core.read_namespaced_config_map(ref.name, namespace, _request_timeout=API_TIMEOUT)
        return {k: v.encode() for k, v in (cm.data or {}).items()}
    except ApiException as error:
        if error.status == 404 and ref.optional:
            return {}
        raise


def request_token(core: client.CoreV1Api, pod: PodFacts, token: ServiceAccountToken) -> str:
    """A service-account token bound to the pod, issued now."""
    response = core.create_namespaced_service_account_token(
        pod.service_account,
        pod.namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[token.audience] if token.audience else [],
                expiration_seconds=token.expiration_seconds,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=pod.name, uid=pod.uid
                ),
            )
        ),
    )
    return str(response.status.token)


def fetch_in_order(needs: Iterable[Need], fetch: Callable[[Need], Any]) -> tuple[dict[Need, Any], Exception | None]:
    """Each need fetched in turn until one fails: what was fetched, and the failure (or None)."""
    fetched: dict[Need, Any] = {}
    for need in needs:
        try:
            fetched[need] = fetch(need)
        except Exception as error:
            return fetched, error
    return fetched, None


def container_env(core: client.CoreV1Api, spec: env.EnvSpec, base: dict[str, str], pod: PodFacts) -> dict[str, str]:
    """A container's environment, reading the ConfigMaps and Secrets it refers to."""
    data, error = fetch_in_order(env.env_sources(spec), lambda ref: read_source(core, pod.namespace, ref))
    try:
        return env.container_env(base, spec, data, pod)
    except SourceNotFetched:
        if error is None:
            raise
        raise error from None


def write(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def prepare_volumes(core: client.CoreV1Api, specs: list[Volume], root: Path, pod: PodFacts) -> dict[str, str]:
    """Each volume's directory: a hostPath as it is (created if missing), any other kind a fresh
    directory under `root` filled with its files."""
    dirs: dict[str, str] = {}
    for volume in specs:
        target = root / volume.name
        target.mkdir(parents=True, exist_ok=True)
        if volume.host_path is not None:
            Path(volume.host_path).mkdir(parents=True, exist_ok=True)
            dirs[volume.name] = str(Path(volume.host_path))
            continue

        def fetch(need: SourceRef | ServiceAccountToken) -> Any:
            if isinstance(need, ServiceAccountToken):
                return request_token(core, pod, need)
            return read_source(core, pod.namespace, need)

        fetched, error = fetch_in_order(volumes.volume_needs(volume), fetch)
        data = {k: v for k, v in fetched.items() if isinstance(k, SourceRef)}
        tokens = {k: v for k, v in fetched.items() if isinstance(k, ServiceAccountToken)}
        try:
            files = volumes.volume_files(volume, data, tokens, pod)
        except SourceNotFetched:
            if error is None:
                raise
            raise error from None
        for path, content in files:
            write(target / path, content)
        dirs[volume.name] = str(target)
    return dirs
