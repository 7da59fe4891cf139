"""The Helm chart on a real kubelet: the operator's image, run by containerd and runc with the
chart's default security context, installs, passes `helm test`, and runs a whole fine-tune whose
training and gate Jobs are containers of the trainer image; then a release moves a Deployment."""

from __future__ import annotations

import errno
import json
import re
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

from kubernetes import client

from ballast_dev.cluster import build, kubeletnode, plane
from ballast_dev.testing.datasets import write_pool_samples
from ballast_dev.testing.kube import eventually
from tests.integration.test_chart import CHART, adopt_crds, helm
from tests.integration.test_operator import (
    LENIENT,
    create,
    pool_status,
    release_status,
    run_phase,
    served_version,
    serving_deployment,
    start_pool,
)

# Reads what the kernel enforces on the container's own process, and tries to write its root.
INSPECT = """
import json
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
try:
    open("/written-by-the-container", "w")
    root = 0
except OSError as error:
    root = error.errno
routes = [line.split()[1] for line in open("/proc/net/route").read().splitlines()[1:]]
print(json.dumps({key: status[key].split() for key in ("Uid", "Gid", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp")}
                 | {"root_write_errno": root, "route_destinations": routes}))
"""


def kubectl(cluster, *args: str) -> str:
    command = [str(build.binary("kubectl")), "--kubeconfig", cluster.kubeconfig, *args]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def enforced(cluster, namespace: str, pod: str, container: str) -> dict:
    """What the runtime enforces on a process of the running container (`kubectl exec` through the kubelet)."""
    out = kubectl(cluster, "exec", "-n", namespace, pod, "-c", container, "--", "python3", "-c", INSPECT)
    return json.loads(out.strip().splitlines()[-1])


def assert_the_chart_s_security_context(found: dict) -> None:
    assert found["Uid"] == ["10001"] * 4 and found["Gid"] == ["10001"] * 4, found
    assert found["root_write_errno"] == errno.EROFS, found  # readOnlyRootFilesystem
    assert int(found["CapEff"][0], 16) == 0 and int(found["CapBnd"][0], 16) == 0, found  # drop: [ALL]
    assert found["NoNewPrivs"] == ["1"], found  # allowPrivilegeEscalation: false
    assert found["Seccomp"] == ["2"], found  # RuntimeDefault: a seccomp filter
    # No default route: a pod reaches its bridge and the service range, nothing off this machine.
    assert "00000000" not in found["route_destinations"], found


def test_the_chart_runs_a_fine_tune_and_a_release_on_a_real_kubelet(kube, namespace, store_secret, pool_store, cluster):
    core, apps = client.CoreV1Api(kube), client.AppsV1Api(kube)
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "ballast-webhook"}, "stringData": {"token": "t"}})
    adopt_crds(kube, namespace)
    # The chart's defaults: listening on every interface of the pod's own network namespace.
    helm(
        "install",
        "ballast",
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"objectStore.secretNames={{{store_secret}}}",
        "--set",
        "admissionPolicy.enabled=false",  # the fixture applied the very same policy
        "--wait",
        "--timeout",
        "180s",
        kubeconfig=cluster.kubeconfig,
    )
    pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=operator").items
    assert len(pods) == 1 and pods[0].status.phase == "Running"
    operator = pods[0]
    assert operator.spec.node_name == cluster.node_name
    status = operator.status.container_statuses[0]
    assert status.container_id.startswith("containerd://") and status.image == "ghcr.io/ballast-dev/ballast:0.1.0"
    assert_the_chart_s_security_context(enforced(cluster, namespace, operator.metadata.name, "operator"))
    # The host sends the service range to the bridge, never out of its own interface.
    assert " dev ballast0 " in kubeletnode.route_of("10.0.0.1") + " "

    # Its Service has the pod as a ready endpoint, and answers through its ClusterIP from another pod.
    slices = client.DiscoveryV1Api(kube).list_namespaced_endpoint_slice(
        namespace, label_selector="kubernetes.io/service-name=ballast-operator"
    )
    addresses = [a for s in slices.items for e in s.endpoints or [] if e.conditions.ready for a in e.addresses]
    assert addresses == [operator.status.pod_ip]

    tested = helm("test", "ballast", "--namespace", namespace, "--timeout", "180s", kubeconfig=cluster.kubeconfig)
    assert "Succeeded" in tested.stdout, tested.stdout

    # The installed operator runs a whole fine-tune: its Jobs are containers of the trainer image.
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    start_pool(kube, cluster, namespace, pool_store, gates=LENIENT)
    run = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 900, interval=2, what="run finished")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    jobs = client.BatchV1Api(kube).list_namespaced_job(namespace).items
    assert jobs, "the run's Jobs"
    job_pods = core.list_namespaced_pod(namespace, label_selector="ballast.dev/run=invoices-run-1").items
    assert job_pods and all(p.spec.node_name == cluster.node_name for p in job_pods)
    assert all(p.status.container_statuses[0].image == "ghcr.io/ballast-dev/trainer:0.1.0" for p in job_pods)
    assert pool_status(kube, namespace)["verifiedSamples"] == 50

    apps.create_namespaced_deployment(namespace, serving_deployment("detector"))
    create(
        kube,
        namespace,
        "modelreleases",
        {
            "apiVersion": "ballast.dev/v1alpha1",
            "kind": "ModelRelease",
            "metadata": {"name": "detector"},
            "spec": {"pool": "invoices", "deployment": {"name": "detector"}, "model": "ft_v1.1"},
        },
    )
    eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 180, what="released")
    assert served_version(kube, namespace) == "ft_v1.1"
    detector = core.list_namespaced_pod(namespace, label_selector="app=detector").items
    logged = kubectl(cluster, "logs", "-n", namespace, detector[-1].metadata.name)
    assert "ft_v1.1" in logged  # the container read the release's ConfigMap

    text = kubectl(cluster, "logs", "-n", namespace, operator.metadata.name, "-c", "operator")
    refused = [line for line in text.splitlines() if "Forbidden" in line or re.search(r"[^,\d]403\b", line)]
    assert refused == [], "\n".join(refused[:20])
    assert cluster.minio_secret_key not in text

    helm("uninstall", "ballast", "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)
    assert apps.list_namespaced_deployment(namespace, label_selector="app.kubernetes.io/instance=ballast").items == []


def kubelet_get(cluster, path: str, identity: str) -> int:
    """GET the kubelet's own API at `path` with a client certificate of the cluster's CA."""
    state = Path(cluster.state_dir)
    certs = state / "pki"
    if identity != "admin":
        plane.user_kubeconfig(cluster, identity)  # issues <pki>/user-<identity>.crt, as for a person
        identity = f"user-{identity}"
    port = json.loads((state / "node-kubelet" / "kubelet.json").read_text())["port"]
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    context.load_cert_chain(str(certs / f"{identity}.crt"), str(certs / f"{identity}.key"))
    try:
        with urllib.request.urlopen(f"https://{kubeletnode.HOST_ADDRESS}:{port}{path}", context=context, timeout=10):
            return 200
    except urllib.error.HTTPError as error:
        return error.code


def test_the_kubelet_serves_only_whom_the_apiserver_authorizes(cluster, kube):
    """A person's certificate is signed by the cluster's CA too: it must not list or exec pods
    through the kubelet's port, bypassing RBAC. The admin (system:masters) may."""
    assert kubelet_get(cluster, "/pods", "mallory") == 403
    assert kubelet_get(cluster, "/runningpods/", "mallory") == 403
    assert kubelet_get(cluster, "/pods", "admin") == 200
