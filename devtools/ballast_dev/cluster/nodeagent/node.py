"""The Node this agent registers and the Lease that keeps it alive, as API bodies.

Pure: the agent passes the time and the facts about the machine (kernel, boot ID) in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .status import iso

LEASE_SECONDS = 40
# What the node offers unless `--capacity` says otherwise: one GPU, so GPU Jobs schedule.
DEFAULT_CAPACITY = {"memory": "16Gi", "pods": "110", "nvidia.com/gpu": "1", "ephemeral-storage": "50Gi"}


def capacity(cpu_count: int | None, overrides: Sequence[str]) -> dict[str, str]:
    """The node's capacity: the defaults, then each `resource=amount` of `overrides`."""
    result = {"cpu": str(cpu_count or 2), **DEFAULT_CAPACITY}
    for item in overrides:
        key, _, value = item.partition("=")
        result[key] = value
    return result


def node_labels(node_name: str) -> dict[str, str]:
    return {
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.kubernetes.io/instance-type": "ballast-local",
    }


def node_body(node_name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name, "labels": node_labels(node_name)}}


def node_status(
    node_name: str, capacity: Mapping[str, str], now: dt.datetime, *, kernel_version: str, boot_id: str
) -> dict[str, Any]:
    """The node's `status`: Ready, no pressure, all of `capacity` allocatable, heartbeat at `now`."""
    stamp = iso(now)
    return {
        "capacity": dict(capacity),
        "allocatable": dict(capacity),
        "conditions": [
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": stamp,
                "lastTransitionTime": stamp,
            }
            for kind, value, reason, message in (
                ("Ready", "True", "BallastNodeAgentReady", "the Ballast node agent is running pods"),
                ("MemoryPressure", "False", "NoPressure", ""),
                ("DiskPressure", "False", "NoPressure", ""),
                ("PIDPressure", "False", "NoPressure", ""),
            )
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, node_name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_DNS, node_name)),
            "bootID": boot_id,
            "kernelVersion": kernel_version,
            "osImage": "Ballast node agent (local processes)",
            "containerRuntimeVersion": "ballast://0.1",
            "kubeletVersion": "v1.36.3-ballast",
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
    }


def lease_body(node_name: str, node_uid: str, now: dt.datetime) -> dict[str, Any]:
    """The node's Lease in kube-node-lease, owned by the Node, renewed at `now`."""
    return {
        "metadata": {
            "name": node_name,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node_name, "uid": node_uid}],
        },
        "spec": {
            "holderIdentity": node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        },
    }
