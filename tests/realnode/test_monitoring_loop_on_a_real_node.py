"""The monitoring loop of tests/e2e/test_monitoring_loop.py on the real node: the operator installed
by the chart and `ballast-trainer serve` are containers of the built images, Prometheus scrapes
them at their pod addresses, and Alertmanager posts to the operator's webhook in its pod. The same
steps, drift to release and back, are asserted."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from kubernetes import client

from ballast_dev.testing.datasets import BASE_KEY
from ballast_dev.testing.kube import eventually
from tests.e2e.test_monitoring_loop import (
    BASELINE_DOCUMENTS,
    Processes,
    drift_to_release_and_back,
    start_monitoring,
    wait_http,
    wait_until_scraped,
)
from tests.integration.test_chart import CHART, helm

TRAINER_IMAGE = "ghcr.io/ballast-dev/trainer:0.1.0"


def serve_pod(cluster, pool_store, base_digest: str, store_secret: str) -> dict:
    """`ballast-trainer serve` with the base model, as the chart runs it (its security context)."""
    secret = {"name": store_secret}
    env = {
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
        "BALLAST_MODEL_URI": pool_store.uri(BASE_KEY),
        "BALLAST_MODEL_DIGEST": base_digest,
        "BALLAST_MODEL_VERSION": "base_v1",
        "BALLAST_POOL": "invoices",
        "BALLAST_BASELINE_DOCUMENTS": str(BASELINE_DOCUMENTS),
        "ULTRALYTICS_SAFE_LOAD": "1",
    }
    return {
        "metadata": {"name": "serve", "labels": {"app.kubernetes.io/name": "ballast-serve"}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "runAsGroup": 10001,
                "fsGroup": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "serve",
                    "image": TRAINER_IMAGE,
                    "command": ["ballast-trainer", "serve", "--host", "0.0.0.0", "--port", "8000", "--imgsz", "256"],
                    "env": [{"name": k, "value": v} for k, v in env.items()]
                    + [
                        {"name": "BALLAST_S3_ACCESS_KEY", "valueFrom": {"secretKeyRef": secret | {"key": "accessKey"}}},
                        {"name": "BALLAST_S3_SECRET_KEY", "valueFrom": {"secretKeyRef": secret | {"key": "secretKey"}}},
                    ],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8000}, "periodSeconds": 2},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def ready_pod_ip(core: client.CoreV1Api, namespace: str, selector: str) -> str:
    def ready() -> str | None:
        for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
            if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
                return pod.status.pod_ip
        return None

    return eventually(ready, 240, interval=1, what=f"a ready pod ({selector}) in {namespace}")


@pytest.fixture
def loop(kube, namespace, store_secret, pool_store, cluster, tmp_path: Path, fixture_data):
    core = client.CoreV1Api(kube)
    token = secrets.token_hex(16)
    operator_namespace = f"{namespace}-ballast"
    core.create_namespace({"metadata": {"name": operator_namespace}})
    core.create_namespaced_secret(
        operator_namespace, {"metadata": {"name": "ballast-webhook"}, "stringData": {"token": token}}
    )
    processes = Processes(tmp_path)
    try:
        # The README's install: the operator in its own namespace, watching the pools' namespace.
        helm(
            "install",
            "ballast",
            str(CHART),
            "--namespace",
            operator_namespace,
            "--set",
            f"watchNamespaces={{{namespace}}}",
            "--set",
            f"objectStore.secretNames={{{store_secret}}}",
            "--set",
            "admissionPolicy.enabled=false",  # the fixture applied the very same policy
            "--set",
            "crds.enabled=false",  # the fixture installed them from crds/
            "--wait",
            "--timeout",
            "180s",
            kubeconfig=cluster.kubeconfig,
        )
        core.create_namespaced_pod(namespace, serve_pod(cluster, pool_store, fixture_data["base_digest"], store_secret))
        operator = f"http://{ready_pod_ip(core, operator_namespace, 'app.kubernetes.io/component=operator')}:8080"
        serve = f"http://{ready_pod_ip(core, namespace, 'app.kubernetes.io/name=ballast-serve')}:8000"
        monitoring = start_monitoring(processes, tmp_path, namespace, operator, serve, token)
        wait_http(f"{operator}/healthz")
        wait_http(f"{monitoring['prometheus']}/-/ready")
        wait_http(f"{monitoring['alertmanager']}/-/ready")
        wait_until_scraped(monitoring["prometheus"])
        yield {"operator": operator, "serve": serve, "prometheus": monitoring["prometheus"], "token": token}
    finally:
        processes.stop()
        helm("uninstall", "ballast", "--namespace", operator_namespace, kubeconfig=cluster.kubeconfig, check=False)
        core.delete_namespace(operator_namespace)


def test_drift_fires_an_alert_whose_run_goes_through_the_whole_loop_on_a_real_kubelet(
    kube, namespace, pool_store, cluster, loop
):
    drift_to_release_and_back(kube, namespace, pool_store, cluster, loop)
