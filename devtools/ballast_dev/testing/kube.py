"""Small helpers for tests that talk to the local cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 60, interval: float = 0.25, what: str = "condition") -> T:
    """Poll until `check` returns a truthy value (returned) or raise with the last value seen."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what} not reached in {timeout:.0f} s; last value: {last!r}")


def install_crds(api: client.ApiClient, directory: Path) -> list[str]:
    """Create or replace every CRD in `directory` and wait until each is Established."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(directory.glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        name = body["metadata"]["name"]
        try:
            current = extensions.read_custom_resource_definition(name)
            body["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(name, body)
        except ApiException as error:
            if error.status != 404:
                raise
            extensions.create_custom_resource_definition(body)
        names.append(name)

    def established(name: str) -> bool:
        crd = extensions.read_custom_resource_definition(name)
        return any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or []))

    for name in names:
        eventually(partial(established, name), 30, what=f"CRD {name} Established")
    return names


def notify_samples_added(kubeconfig: str, namespace: str, pool: str, count: int) -> None:
    """What `ballast samples add|import` does after writing samples: tell the operator the pool grew."""
    from ballast.adapters.kube import connect, get_custom
    from ballast.cli.people import notify_pool

    clients = connect(kubeconfig)
    body = get_custom(clients, namespace, "finetunepools", pool)
    if body is None:
        raise AssertionError(f"FineTunePool {namespace}/{pool} not found")
    notify_pool(clients, body, count, "tests")


def run_files(api: client.ApiClient, namespace: str, run: str):  # type: ignore[no-untyped-def]
    """Where a run's artifacts are (ballast.api.layout keys them by the run's uid)."""
    from ballast.api import layout

    body: dict = client.CustomObjectsApi(api).get_namespaced_custom_object(  # type: ignore[assignment]
        "ballast.dev", "v1alpha1", namespace, "finetuneruns", run
    )
    return layout.RunArtifacts(run, body["metadata"]["uid"])


def apply_manifests(kubeconfig: str, text: str) -> None:
    """`kubectl apply` of YAML documents, as a platform team would (server-side validation)."""
    import subprocess

    from ballast_dev.cluster import build

    subprocess.run(
        [str(build.binary("kubectl")), "--kubeconfig", kubeconfig, "apply", "-f", "-"],
        input=text.encode(),
        check=True,
        capture_output=True,
    )
