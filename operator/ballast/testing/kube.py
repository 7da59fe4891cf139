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
