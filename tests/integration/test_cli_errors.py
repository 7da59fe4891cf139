"""`ballast` against a real apiserver: each failure is one line on stderr with the exit code of its kind."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from ballast.cli.errors import NOT_FOUND, REFUSED, UNREACHABLE, USAGE
from ballast_dev.cluster import plane
from ballast_dev.testing.datasets import BASE_KEY
from tests.integration.test_operator import GROUP, VERSION, create, custom, pool_store_digest, start_pool
from tests.integration.test_samples_cli import BALLAST
from tests.integration.test_trust import grant

UNREACHABLE_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: nowhere, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: someone, user: {token: not-a-token}}]
contexts: [{name: nowhere, context: {cluster: nowhere, user: someone, namespace: default}}]
current-context: nowhere
"""


def ballast(kubeconfig: str | Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([BALLAST, *args], capture_output=True, text=True, check=False, env=env, timeout=120)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_without_a_kubeconfig_or_an_apiserver_the_cli_says_so_in_one_line_and_exits_5(tmp_path):
    missing = ballast("/nonexistent", "status")
    assert missing.returncode == UNREACHABLE
    assert "kubeconfig" in one_error_line(missing)

    nowhere = tmp_path / "nowhere.kubeconfig"
    nowhere.write_text(UNREACHABLE_KUBECONFIG)
    for args in (("status",), ("runs", "approve", "r", "--reason", "ok"), ("runs", "retry", "r")):
        unreachable = ballast(nowhere, *args)
        assert unreachable.returncode == UNREACHABLE, (args, unreachable.stderr)
        assert "cannot reach 127.0.0.1:1" in one_error_line(unreachable)


def test_the_cli_exit_codes_against_a_real_apiserver(kube, namespace, store_secret, pool_store, cluster):
    start_pool(kube, cluster, namespace, pool_store)

    listed = ballast(cluster.kubeconfig, "status", "-n", namespace, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    status = json.loads(listed.stdout)
    assert status["namespace"] == namespace and [p["name"] for p in status["finetunepools"]] == ["invoices"]
    assert "invoices:" in ballast(cluster.kubeconfig, "status", "-n", namespace).stdout  # the table stays the default

    for args in (("runs", "approve", "no-such-run", "--reason", "ok"), ("runs", "retry", "no-such-run")):
        missing = ballast(cluster.kubeconfig, *args, "-n", namespace)
        assert missing.returncode == NOT_FOUND, (args, missing.stderr)
        assert f"FineTuneRun no-such-run not found in namespace {namespace}" in one_error_line(missing)
    rollback = ballast(cluster.kubeconfig, "release", "rollback", "no-such-release", "-n", namespace)
    assert rollback.returncode == NOT_FOUND and "ModelRelease no-such-release" in one_error_line(rollback)

    # A run in Review: approving it needs RBAC's get and the admission policy's `approve` verb.
    digest = pool_store_digest(pool_store)
    base = {"version": "base_v1", "uri": f"s3://{pool_store.bucket}/{BASE_KEY}", "digest": digest}
    run = {"pool": "invoices", "baseModel": base}
    create(
        kube,
        namespace,
        "finetuneruns",
        {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneRun", "metadata": {"name": "in-review"}, "spec": run},
    )
    model = {"version": "ft_v1.1", "uri": f"s3://{pool_store.bucket}/models/ft_v1.1/model.pt", "digest": digest}
    custom(kube).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "finetuneruns",
        "in-review",
        {"status": {"phase": "Succeeded", "verdict": "Review", "model": model}},
    )
    nobody = ballast(plane.user_kubeconfig(cluster, "nobody"), "runs", "approve", "in-review", "-n", namespace)
    assert nobody.returncode == USAGE  # --reason is required: argparse's own usage error
    nobody = ballast(
        plane.user_kubeconfig(cluster, "nobody"), "runs", "approve", "in-review", "-n", namespace, "--reason", "ok"
    )
    assert nobody.returncode == REFUSED, nobody.stderr
    assert "forbidden" in one_error_line(nobody)  # RBAC: nobody may not even read runs
    grant(kube, namespace, "mallory", ["get", "list", "patch"])
    mallory = ballast(
        plane.user_kubeconfig(cluster, "mallory"), "runs", "approve", "in-review", "-n", namespace, "--reason", "ok"
    )
    assert mallory.returncode == REFUSED, mallory.stderr
    assert "needs the `approve` verb" in one_error_line(mallory)  # the admission policy: patch is not enough

    assert ballast(cluster.kubeconfig, "status", "-o", "xml").returncode == USAGE
    assert ballast(cluster.kubeconfig, "no-such-command").returncode == USAGE


def test_rolling_back_a_release_that_argo_cd_applies_is_refused_with_the_git_change_to_make(kube, namespace, cluster):
    # A ModelRelease as Argo CD applies it (annotation tracking): its spec.model lives in Git.
    tracking = f"invoices:ballast.dev/ModelRelease:{namespace}/detector"
    create(
        kube,
        namespace,
        "modelreleases",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRelease",
            "metadata": {"name": "detector", "annotations": {"argocd.argoproj.io/tracking-id": tracking}},
            "spec": {"pool": "invoices", "deployment": {"name": "detector"}, "model": "ft_v1.2"},
        },
    )

    def record(version: str) -> dict:
        uri = f"s3://b/models/invoices/{version}/model.pt"
        model = {"version": version, "uri": uri, "digest": "sha256:" + "a" * 64}
        return {"model": model, "releasedAt": "2026-11-27T03:00:00Z"}

    custom(kube).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        namespace,
        "modelreleases",
        "detector",
        {"status": {"phase": "Released", "currentModel": "ft_v1.2", "history": [record("ft_v1.2"), record("ft_v1.1")]}},
    )

    refused = ballast(cluster.kubeconfig, "release", "rollback", "detector", "-n", namespace)
    assert refused.returncode == REFUSED, refused.stderr
    assert "applied by Argo CD (Application invoices" in one_error_line(refused)
    assert f"ModelRelease {namespace}/detector" in refused.stdout and "model: ft_v1.1" in refused.stdout
    spec = custom(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, "modelreleases", "detector")["spec"]
    assert spec["model"] == "ft_v1.2"  # untouched: Git's self-heal would only have put it back

    forced = ballast(cluster.kubeconfig, "release", "rollback", "detector", "-n", namespace, "--despite-git")
    assert forced.returncode == 0, forced.stderr
    spec = custom(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, "modelreleases", "detector")["spec"]
    assert spec["model"] == "ft_v1.1"
