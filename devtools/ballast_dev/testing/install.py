"""The operator as the README installs it, for tests that must hold in that topology: the chart's
ServiceAccount in an operator namespace of its own, the chart's Role in the pools' namespace, and
the operator process running under that ServiceAccount's token (so every missing permission and
every label the chart forgets shows up as a failure, not as an admin's silent success)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from kubernetes import client

from ballast_dev import REPO
from ballast_dev.cluster import build, plane
from ballast_dev.testing.kube import apply_manifests, eventually
from ballast_dev.testing.operator import OperatorProcess

CHART = REPO / "charts" / "ballast"
SERVICE_ACCOUNT = "ballast-operator"
# The operator's own identity and rights (the chart's ClusterRoles are for people, and the
# admission policy is the suite's, so neither is applied here).
RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding"}


def render_chart(namespace: str, *sets: str) -> list[dict]:
    """`helm template` of the chart as installed in `namespace`, with `--set` values."""
    args = [str(build.binary("helm")), "template", "ballast", str(CHART), "--namespace", namespace]
    args += ["--kube-version", build.KUBERNETES_VERSION.removeprefix("v"), "--skip-tests"]
    for value in sets:
        args += ["--set", value]
    completed = subprocess.run(args, capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(completed.stdout) if d]


@dataclass
class InstalledOperator:
    namespace: str  # where the operator runs
    kubeconfig: Path  # the ServiceAccount's identity
    process: OperatorProcess


def install(
    info: plane.ClusterInfo,
    admin: client.ApiClient,
    pools_namespace: str,
    log: Path,
    *extra_args: str,
    http_port: int | None = None,
    webhook_token: str | None = None,
) -> InstalledOperator:
    """Create the operator's namespace, apply the chart's RBAC for `pools_namespace`, start the
    operator under its ServiceAccount (with its HTTP endpoint and webhook when `http_port` is set).
    Stop it with `.process.stop()`; delete the namespace after."""
    operator_namespace = f"{pools_namespace}-ballast"
    core = client.CoreV1Api(admin)
    core.create_namespace({"metadata": {"name": operator_namespace}})
    documents = render_chart(
        operator_namespace, f"watchNamespaces={{{pools_namespace}}}", "objectStore.secretNames={store-credentials}"
    )
    rbac = [d for d in documents if d["kind"] in RBAC_KINDS]
    apply_manifests(info.kubeconfig, yaml.safe_dump_all(rbac))
    eventually(lambda: _has_account(core, operator_namespace), 30, what="the operator's ServiceAccount")
    token = core.create_namespaced_service_account_token(
        SERVICE_ACCOUNT, operator_namespace, {"spec": {"expirationSeconds": 4 * 3600}}
    ).status.token
    kubeconfig = plane.token_kubeconfig(info, f"operator-{pools_namespace}", token)
    process = OperatorProcess(
        str(kubeconfig),
        pools_namespace,
        log,
        http_port=http_port,
        webhook_token=webhook_token,
        extra_args=list(extra_args),
        pod_namespace=operator_namespace,
    ).start()
    return InstalledOperator(operator_namespace, kubeconfig, process)


def _has_account(core: client.CoreV1Api, namespace: str) -> bool:
    return any(a.metadata.name == SERVICE_ACCOUNT for a in core.list_namespaced_service_account(namespace).items)
