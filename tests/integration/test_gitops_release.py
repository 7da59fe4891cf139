"""A release in a GitOps repository's world: the serving Deployment is Git's, the model is the release's.

In the README's topology (the operator in its own namespace under the chart's RBAC, the pool, the
release and the Deployment in another), Git's manifest is re-applied the way Argo CD and Flux do
it: server-side apply with their field manager, conflicts forced. Re-applying the original manifest
does not change what the pods run; a manifest that sets the model in the Deployment's own env
(an old revision in Git) is reported as ModelDrift, naming the pods, until Git is fixed.
"""

from __future__ import annotations

import copy
import subprocess
import time

import yaml
from kubernetes import client

from ballast_dev.cluster import build
from ballast_dev.testing.install import install
from ballast_dev.testing.kube import eventually
from tests.integration.test_operator import (
    GROUP,
    VERSION,
    a_release,
    create,
    release_status,
    served_version,
    serving_deployment,
    start_pool,
)


def git_sync(cluster, namespace: str, manifest: dict) -> None:
    """What a GitOps controller does with Git's manifest: server-side apply, its own field manager."""
    document = {"apiVersion": "apps/v1", "kind": "Deployment", **manifest}
    subprocess.run(
        [
            str(build.binary("kubectl")),
            "--kubeconfig",
            cluster.kubeconfig,
            "-n",
            namespace,
            "apply",
            "--server-side",
            "--field-manager=argocd-controller",
            "--force-conflicts",
            "-f",
            "-",
        ],
        input=yaml.safe_dump(document),
        text=True,
        capture_output=True,
        check=True,
    )


def release_exists(kube, namespace: str) -> bool:
    try:
        client.CustomObjectsApi(kube).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelreleases", "detector"
        )
    except client.ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def condition(kube, namespace: str, type_: str) -> dict | None:
    return next((c for c in release_status(kube, namespace).get("conditions", []) if c["type"] == type_), None)


def template(kube, namespace: str) -> dict:
    deployment = client.AppsV1Api(kube).read_namespaced_deployment("detector", namespace)
    return client.ApiClient().sanitize_for_serialization(deployment.spec.template)


def test_a_git_sync_of_the_serving_deployment_keeps_the_released_model_and_an_env_override_is_model_drift(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    installed = install(cluster, kube, namespace, tmp_path / "operator.log")
    try:
        start_pool(kube, cluster, namespace, pool_store)
        git = serving_deployment("detector")  # the manifest in Git: reads the release's ConfigMap
        git_sync(cluster, namespace, git)
        create(kube, namespace, "modelreleases", a_release("detector", "invoices", "base_v1"))
        eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 120, what="released")
        assert served_version(kube, namespace) == "base_v1"
        config_map = client.CoreV1Api(kube).read_namespaced_config_map("detector-model", namespace)
        assert config_map.metadata.labels["ballast.dev/model-release"] == "detector"
        managers = {e.manager for e in config_map.metadata.managed_fields}
        assert managers == {"ballast-operator"}
        rolled = template(kube, namespace)["metadata"]["annotations"]
        assert rolled["ballast.dev/model"] == "base_v1" and rolled["ballast.dev/model-checksum"]

        # Argo CD's self-heal re-applies Git's manifest: the pods keep the released model.
        git_sync(cluster, namespace, git)
        assert template(kube, namespace)["metadata"]["annotations"] == rolled  # nothing for Git to undo
        eventually(
            lambda: (
                client.AppsV1Api(kube).read_namespaced_deployment_status("detector", namespace).status.ready_replicas
            ),
            60,
            what="the pods ready",
        )
        assert release_status(kube, namespace)["phase"] == "Released"
        assert (condition(kube, namespace, "ModelDrift") or {}).get("status") != "True"

        # An old revision in Git sets the model in the Deployment's own env: pods run that instead.
        stale = copy.deepcopy(git)
        stale["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "BALLAST_MODEL_VERSION", "value": "base_v0"},
            {"name": "BALLAST_MODEL_URI", "value": f"s3://{pool_store.bucket}/models/base_v0/model.pt"},
            {"name": "BALLAST_MODEL_DIGEST", "value": "sha256:" + "0" * 64},
        ]
        git_sync(cluster, namespace, stale)
        drift = eventually(
            lambda: (c := condition(kube, namespace, "ModelDrift")) and c["status"] == "True" and c,
            120,
            what="ModelDrift reported",
        )
        assert "runs base_v0 (env in the pod spec)" in drift["message"] and "detector-" in drift["message"]
        events = client.CoreV1Api(kube).list_namespaced_event(namespace).items
        assert any(e.reason == "ModelDrift" and e.involved_object.name == "detector" for e in events)

        # Git is fixed: the pods roll, read the ConfigMap again, and the drift ends.
        git_sync(cluster, namespace, git)
        eventually(
            lambda: (c := condition(kube, namespace, "ModelDrift")) and c["status"] == "False",
            120,
            what="drift resolved",
        )
        assert served_version(kube, namespace) == "base_v1"

        # Git prunes the release (or renames it): the pods keep the model they read, nothing is collected.
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, "modelreleases", "detector"
        )
        eventually(lambda: not release_exists(kube, namespace), 30, what="release deleted")
        time.sleep(3)  # the garbage collector would have acted by now
        assert served_version(kube, namespace) == "base_v1"
    finally:
        installed.process.stop()
        client.CoreV1Api(kube).delete_namespace(installed.namespace)
