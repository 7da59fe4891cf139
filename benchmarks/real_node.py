"""Real-node benchmark: image sizes and build times, warm `up` with the kubelet node, and pod start
latency (Job created -> its container running) on the kubelet node vs the node agent.

    .venv/bin/python benchmarks/real_node.py                 # uses the images in the cache (builds if missing)
    .venv/bin/python benchmarks/real_node.py --cold-images   # also cold image builds into a fresh cache

Root only (containerd, the kubelet and the network need it). Writes JSON to stdout (and --output).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kubernetes import client, config

from ballast_dev.cluster import plane
from ballast_dev.images import build as images
from ballast_dev.images import recipe


def cold_images() -> dict:
    """Both images into an empty cache (Debian packages and wheels downloaded again)."""
    with tempfile.TemporaryDirectory(dir=Path.home()) as scratch:
        env = dict(os.environ, BALLAST_CACHE=scratch)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "ballast_dev.images.build"], env=env, check=True, capture_output=True)
        report = {"total_seconds": round(time.monotonic() - started, 1)}
        for name in recipe.RECIPES:
            record = json.loads((Path(scratch) / "images" / f"{name}.json").read_text())
            report[name] = {"seconds": record["seconds"], "archive_mb": round(record["archive_bytes"] / 1e6)}
        return report


def job(name: str, image: str) -> dict:
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 1,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "main",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-c", "import time; time.sleep(30)"],
                            "securityContext": {
                                "allowPrivilegeEscalation": False,
                                "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]},
                            },
                        }
                    ],
                }
            },
        },
    }


def pod_start_latencies(info: plane.ClusterInfo, image: str, trials: int) -> list[float]:
    configuration = client.Configuration()
    config.load_kube_config(info.kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    namespace = "bench"
    core.create_namespace({"metadata": {"name": namespace}})
    while not core.list_namespaced_service_account(namespace).items:
        time.sleep(0.2)
    latencies = []
    for trial in range(trials):
        name = f"start-{trial}"
        created = time.monotonic()
        batch.create_namespaced_job(namespace, job(name, image))
        while True:
            pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
            statuses = (pods[0].status.container_statuses or []) if pods else []
            if statuses and statuses[0].state.running:
                latencies.append(round(time.monotonic() - created, 2))
                break
            if time.monotonic() - created > 180:
                raise TimeoutError(f"{name} not running after 180 s")
            time.sleep(0.05)
        batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
    api.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cold-images", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="warm `up` runs")
    parser.add_argument("--trials", type=int, default=10, help="Jobs started per node kind")
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()
    report: dict[str, object] = {}
    if args.cold_images:
        report["cold_images"] = cold_images()
    built = {name: images.build(recipe.RECIPES[name]) for name in recipe.RECIPES}
    report["images"] = {
        name: {"archive_mb": round(b.archive_bytes / 1e6), "unpacked_mb": round(b.unpacked_bytes / 1e6)}
        for name, b in built.items()
    }
    ups = []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.repeat):
            state = Path(scratch) / f"kubelet-{i}"
            started = time.monotonic()
            info = plane.up(state, node_kind="kubelet", log=lambda _m: None)
            ups.append(round(time.monotonic() - started, 1))
            if i == args.repeat - 1:
                report["pod_start_seconds_kubelet"] = pod_start_latencies(info, built["trainer"].reference, args.trials)
            started = time.monotonic()
            problems = plane.down(state, log=lambda _m: None)
            report.setdefault("down_seconds", []).append(round(time.monotonic() - started, 1))  # type: ignore[union-attr]
            assert not problems, problems
        report["warm_up_seconds_kubelet"] = {"median": statistics.median(ups), "all": ups}
        info = plane.up(Path(scratch) / "agent", log=lambda _m: None)
        try:
            report["pod_start_seconds_agent"] = pod_start_latencies(info, built["trainer"].reference, args.trials)
        finally:
            plane.down(Path(scratch) / "agent", log=lambda _m: None)
    for kind in ("kubelet", "agent"):
        samples = report[f"pod_start_seconds_{kind}"]
        report[f"pod_start_p50_{kind}"] = statistics.median(samples)  # type: ignore[arg-type]
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")


if __name__ == "__main__":
    main()
