"""The example manifests in samples/ apply cleanly to the local cluster (schema, defaults and CEL included)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from kubernetes import client

from ballast_dev.cluster import build

ROOT = Path(__file__).resolve().parents[2]


def test_every_sample_manifest_applies_cleanly(kube, namespace, cluster):
    files = sorted((ROOT / "samples").glob("*.yaml"))
    assert len(files) == 4
    for path in files:
        completed = subprocess.run(
            [
                str(build.binary("kubectl")),
                "--kubeconfig",
                cluster.kubeconfig,
                "apply",
                "-n",
                namespace,
                "-f",
                str(path),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert completed.returncode == 0, f"{path.name}: {completed.stderr}"
        assert "Warning" not in completed.stderr, completed.stderr
    custom = client.CustomObjectsApi(kube)
    pool = custom.get_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools", "invoices")
    written = yaml.safe_load((ROOT / "samples" / "finetunepool.yaml").read_text())
    assert pool["spec"]["training"] == {**pool["spec"]["training"], **written["spec"]["training"]}
    run = custom.get_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetuneruns", "invoices-manual-1")
    assert pool["spec"]["mixing"]["oldSampleCap"] == 3000  # a default the apiserver filled in
    assert run["spec"]["kind"] == "FineTune"  # so is this one
    assert "gates" not in run["spec"] and "mixing" not in run["spec"]  # the run takes its pool's
    custom.get_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "modelreleases", "invoices-detector")
