"""Operator: time from the 50th verified sample to the training Job's creation, and memory at scale.

    .venv/bin/python benchmarks/operator_latency.py [--trials 10] [--pools 100]

Targets (issue 5): p95 < 5 s from the 50th sample to the Job; < 300 MiB RSS while the operator
holds 100 pools and 100 runs. The node is cordoned so the created Jobs' pods stay Pending: the
numbers measure the operator, not training.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config
from minio import Minio

from ballast.adapters.objectstore import ObjectStore
from ballast.cluster import plane
from ballast.synth import CLASSES
from ballast.testing.datasets import write_pool_samples
from ballast.testing.kube import eventually, install_crds
from ballast.testing.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cluster import rss_mib  # noqa: E402

NS = "bench"
DIGEST = "sha256:" + "ab" * 32


def pool_body(name: str, info) -> dict:  # type: ignore[no-untyped-def]
    return {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "FineTunePool",
        "metadata": {"name": name},
        "spec": {
            "classes": list(CLASSES),
            "objectStore": {"endpoint": info.minio_endpoint, "bucket": "bench", "credentialsSecretRef": {"name": "s"}},
            "anchor": {"trainManifest": "anchor/train.txt", "testManifest": "anchor/test.txt"},
            "baseModel": {"version": "base_v1", "uri": "s3://bench/models/base_v1/model.pt", "digest": DIGEST},
            "training": {"gpus": 0, "epochs": 1},
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--pools", type=int, default=100)
    args = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster", log=lambda _m: None)
        operator = None
        try:
            configuration = client.Configuration()
            config.load_kube_config(info.kubeconfig, client_configuration=configuration)
            api = client.ApiClient(configuration)
            install_crds(api, ROOT / "crds")
            core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
            core.create_namespace({"metadata": {"name": NS}})
            core.create_namespaced_secret(
                NS,
                {
                    "metadata": {"name": "s"},
                    "stringData": {"accessKey": info.minio_access_key, "secretKey": info.minio_secret_key},
                },
            )
            core.patch_node(info.node_name, {"spec": {"unschedulable": True}})
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("bench")
            store = ObjectStore(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "bench")
            store.put("anchor/train.txt", b"")
            store.put("anchor/test.txt", b"")
            eventually(lambda: core.list_namespaced_service_account(NS).items, 30)
            operator = OperatorProcess(info.kubeconfig, NS, Path(scratch) / "operator.log").start()

            latencies = []
            for trial in range(args.trials):
                name = f"latency-{trial}"
                write_pool_samples(store, name, range(49), size=64, workers=16)
                custom.create_namespaced_custom_object(
                    "ballast.dev", "v1alpha1", NS, "finetunepools", pool_body(name, info)
                )
                eventually(
                    lambda n=name: (
                        custom.get_namespaced_custom_object("ballast.dev", "v1alpha1", NS, "finetunepools", n)
                        .get("status", {})
                        .get("verifiedSamples")
                        == 49
                    ),
                    60,
                )
                write_pool_samples(store, name, range(49, 50), size=64)
                started = time.monotonic()

                def job_exists(n: str = name) -> bool:
                    return any(j.metadata.name == f"{n}-run-1-train" for j in batch.list_namespaced_job(NS).items)

                eventually(job_exists, 60, interval=0.05)
                latencies.append(time.monotonic() - started)
                print(f"trial {trial}: {latencies[-1]:.2f} s", flush=True)
            ordered = sorted(latencies)
            report["sample_to_job_seconds"] = {
                "p50": round(statistics.median(ordered), 2),
                "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
                "max": round(ordered[-1], 2),
                "trials": len(ordered),
            }

            for index in range(args.pools):
                custom.create_namespaced_custom_object(
                    "ballast.dev", "v1alpha1", NS, "finetunepools", pool_body(f"scale-{index}", info)
                )
                custom.create_namespaced_custom_object(
                    "ballast.dev",
                    "v1alpha1",
                    NS,
                    "finetuneruns",
                    {
                        "apiVersion": "ballast.dev/v1alpha1",
                        "kind": "FineTuneRun",
                        "metadata": {"name": f"scale-{index}"},
                        "spec": {
                            "pool": f"scale-{index}",
                            "baseModel": {"version": "base_v1", "uri": "s3://bench/m.pt", "digest": DIGEST},
                        },
                    },
                )
            time.sleep(60)  # every pool and run reconciled many times
            pools = len(custom.list_namespaced_custom_object("ballast.dev", "v1alpha1", NS, "finetunepools")["items"])
            runs = len(custom.list_namespaced_custom_object("ballast.dev", "v1alpha1", NS, "finetuneruns")["items"])
            report["scale"] = {
                "pools": pools,
                "runs": runs,
                "operator_rss_mib": round(rss_mib(operator.process.pid), 1),
            }
        finally:
            if operator:
                operator.stop()
            plane.down(Path(scratch) / "cluster", log=lambda _m: None)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
