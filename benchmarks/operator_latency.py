"""Operator at scale: CPU and memory while nothing changes, and the 50th sample -> training Job time.

    .venv/bin/python benchmarks/operator_latency.py [--idle-pools 900] [--active 100] [--finished 1000] [--trials 20]

Targets (issue 13): with 1,000 pools + 1,000 finished runs + 100 active runs, under 250 MiB and under
5% of a core while nothing changes; 50th sample -> training Job p95 < 2 s at that scale.

The node is cordoned so the Jobs' pods stay Pending: the numbers measure the operator, not training.
The 50th sample arrives as `ballast samples add` brings it: written through the validated intake,
then the pool is notified (a labelled Event the operator watches). Time runs from the moment the
sample is stored until the Job exists.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config
from minio import Minio

from ballast.adapters.kube import connect, get_custom
from ballast.adapters.objectstore import ObjectStore
from ballast.cli.people import notify_pool
from ballast_dev.cluster import plane
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import write_pool_samples
from ballast_dev.testing.kube import eventually, install_crds
from ballast_dev.testing.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cluster import rss_mib  # noqa: E402

NS = "bench"
GROUP, VERSION = "ballast.dev", "v1alpha1"
DIGEST = "sha256:" + "ab" * 32
BASE = {"version": "base_v1", "uri": "s3://bench/models/base_v1/model.pt", "digest": DIGEST}


def pool_body(name: str, endpoint: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTunePool",
        "metadata": {"name": name},
        "spec": {
            "classes": list(CLASSES),
            "objectStore": {
                "endpoint": endpoint,
                "secure": False,  # the local MinIO speaks plain HTTP
                "bucket": "bench",
                "credentialsSecretRef": {"name": "s"},
            },
            "anchor": {"trainManifest": "anchor/train.txt", "testManifest": "anchor/test.txt"},
            "baseModel": BASE,
            "training": {"gpus": 0, "epochs": 1},
            "mixing": {"allowSmallerAnchor": True},  # the benchmark's anchor is small
        },
    }


def finished_run(index: int) -> tuple[dict, dict]:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTuneRun",
        "metadata": {"name": f"done-{index}", "labels": {"ballast.dev/pool": f"idle-{index % 900}"}},
        "spec": {"pool": f"idle-{index % 900}", "baseModel": BASE},
    }
    status = {"status": {"phase": "Succeeded", "verdict": "Pass", "message": "verdict Pass"}}
    return body, status


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-pools", type=int, default=900)
    parser.add_argument("--active", type=int, default=100, help="pools with a run in progress (Job pending)")
    parser.add_argument("--finished", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=120)
    args = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster", log=lambda _m: None)
        operator = None
        try:
            configuration = client.Configuration()
            config.load_kube_config(info.kubeconfig, client_configuration=configuration)
            configuration.connection_pool_maxsize = 16
            api = client.ApiClient(configuration)
            install_crds(api, ROOT / "crds")
            core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
            core.create_namespace({"metadata": {"name": NS}})
            secret = {"accessKey": info.minio_access_key, "secretKey": info.minio_secret_key}
            core.create_namespaced_secret(NS, {"metadata": {"name": "s"}, "stringData": secret})
            core.patch_node(info.node_name, {"spec": {"unschedulable": True}})
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("bench")
            store = ObjectStore(
                info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "bench", secure=False
            )
            store.put("anchor/train.txt", b"")
            store.put("anchor/test.txt", b"")
            eventually(lambda: core.list_namespaced_service_account(NS).items, 30)

            def create(plural: str, body: dict) -> None:
                custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, body)

            started = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                for index in range(args.active):  # each will start a run whose Job stays Pending
                    write_pool_samples(store, f"active-{index}", range(50), size=32, workers=16)
                list(
                    pool.map(
                        lambda i: create("finetunepools", pool_body(f"idle-{i}", info.minio_endpoint)),
                        range(args.idle_pools),
                    )
                )

                def finish(index: int) -> None:
                    body, status = finished_run(index)
                    create("finetuneruns", body)
                    custom.patch_namespaced_custom_object_status(
                        GROUP, VERSION, NS, "finetuneruns", body["metadata"]["name"], status
                    )

                list(pool.map(finish, range(args.finished)))
                list(
                    pool.map(
                        lambda i: create("finetunepools", pool_body(f"active-{i}", info.minio_endpoint)),
                        range(args.active),
                    )
                )
            report["setup_seconds"] = round(time.monotonic() - started, 1)

            operator = OperatorProcess(info.kubeconfig, NS, Path(scratch) / "operator.log").start()
            started = time.monotonic()
            eventually(
                lambda: (
                    len([j for j in batch.list_namespaced_job(NS).items if j.metadata.name.startswith("active-")])
                    == args.active
                ),
                900,
                interval=2,
                what="a pending training Job for every active pool",
            )
            report["startup_to_all_active_jobs_seconds"] = round(time.monotonic() - started, 1)
            time.sleep(30)  # let the last statuses settle
            pid = operator.process.pid  # type: ignore[union-attr]
            before, wall = cpu_seconds(pid), time.monotonic()
            time.sleep(args.idle_seconds)
            idle_share = (cpu_seconds(pid) - before) / (time.monotonic() - wall)
            pools = len(custom.list_namespaced_custom_object(GROUP, VERSION, NS, "finetunepools")["items"])
            runs = custom.list_namespaced_custom_object(GROUP, VERSION, NS, "finetuneruns")["items"]
            report["idle"] = {
                "pools": pools,
                "finished_runs": sum(r.get("status", {}).get("phase") == "Succeeded" for r in runs),
                "active_runs": sum(r.get("status", {}).get("phase") in ("Training", "Planning") for r in runs),
                "seconds_measured": args.idle_seconds,
                "operator_cpu_share_of_a_core": round(idle_share, 4),
                "operator_rss_mib": round(rss_mib(pid), 1),
            }
            print(json.dumps(report["idle"]), flush=True)

            clients = connect(info.kubeconfig)
            latencies = []
            for trial in range(args.trials):
                name = f"latency-{trial}"
                write_pool_samples(store, name, range(49), size=32, workers=16)
                create("finetunepools", pool_body(name, info.minio_endpoint))
                eventually(
                    lambda n=name: (
                        custom.get_namespaced_custom_object(GROUP, VERSION, NS, "finetunepools", n)
                        .get("status", {})
                        .get("verifiedSamples")
                        == 49
                    ),
                    120,
                    what="49 counted",
                )
                write_pool_samples(store, name, range(49, 50), size=32)
                stored = time.monotonic()
                notify_pool(clients, get_custom(clients, NS, "finetunepools", name), 1, "benchmark")  # type: ignore[arg-type]

                def job_exists(n: str = name) -> bool:
                    try:
                        batch.read_namespaced_job(f"{n}-run-1-train", NS)
                    except client.exceptions.ApiException:
                        return False
                    return True

                eventually(job_exists, 60, interval=0.02, what="training Job")
                latencies.append(time.monotonic() - stored)
                print(f"trial {trial}: {latencies[-1]:.2f} s", flush=True)
            ordered = sorted(latencies)
            report["sample_to_job_seconds"] = {
                "p50": round(statistics.median(ordered), 2),
                "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
                "max": round(ordered[-1], 2),
                "trials": len(ordered),
            }
            report["operator_rss_mib_after"] = round(rss_mib(operator.process.pid), 1)  # type: ignore[union-attr]
        finally:
            if operator:
                operator.stop()
            plane.down(Path(scratch) / "cluster", log=lambda _m: None)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
