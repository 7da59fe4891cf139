"""Load: many pools and concurrent runs, one very large pool, and a stream of drift alerts.

    .venv/bin/python benchmarks/load.py [--pools 200] [--big-pool 10000] [--alerts-per-minute 100]

Issue 9, part 3. On the local cluster, with the trainer replaced by a fast stand-in
(ballast_dev.testing.standin_trainer, put first on the node agent's PATH for this benchmark only), so
the figures are the operator's:

1. `--pools` pools with 49 samples each; then the 50th sample lands in every pool at once, so as
   many runs plan, train, gate and finish concurrently. Reconcile lag, from server-side times on
   this host's clock (1 s resolution for creation/completion times): 50th sample -> run created,
   run created -> training Job, training Job done -> gate Job, gate Job done -> verdict in status.
2. One pool receiving `--big-pool` samples while the operator counts them; then a run plans all of
   them at once.
3. `--alerts-per-minute` Alertmanager webhook posts for two minutes, round-robin over the pools; a
   few pools have samples waiting below their volume trigger, so their first alert starts a run and
   the repeats must start none.

Throughout: operator RSS (peak, sampled every second) and CPU (utime+stime over wall time), and from
the operator's own /metrics: reconciles, mean reconcile time and object-store requests per reconcile
by kind. Finally, what must hold: one run per trigger, no duplicate Job, every sample still indexed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client, config
from minio import Minio

from ballast.adapters.objectstore import ObjectStore
from ballast.adapters.pool import list_index
from ballast_dev.cluster import plane
from ballast_dev.cluster.plane import free_port
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import BASE_KEY, write_pool_samples
from ballast_dev.testing.kube import eventually, install_crds
from ballast_dev.testing.operator import OperatorProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from cluster import rss_mib  # noqa: E402

NS, BUCKET, GROUP, VERSION = "load", "load", "ballast.dev", "v1alpha1"
TOKEN = "load-benchmark-token"
ANCHOR = 1000


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 3),
        "p95": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 3),
        "max": round(ordered[-1], 3),
    }


def wall(stamp: object) -> float | None:
    """A Kubernetes timestamp (datetime or RFC 3339 text) as epoch seconds."""
    if stamp is None:
        return None
    if isinstance(stamp, datetime):
        return stamp.timestamp()
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


class OperatorProbe:
    """The operator's memory (peak, sampled) and CPU, and its own metrics."""

    def __init__(self, pid: int, metrics_url: str) -> None:
        self.pid, self.metrics_url = pid, metrics_url
        self.peak_rss = 0.0
        self.stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.peak_rss = max(self.peak_rss, rss_mib(self.pid))
            time.sleep(1)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def metrics(self) -> dict[str, float]:
        text = urllib.request.urlopen(self.metrics_url, timeout=10).read().decode()
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("ballast_") and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    def window(self) -> Window:
        return Window(self)


class Window:
    """CPU, wall time and per-kind reconcile figures between its start and `close()`."""

    def __init__(self, probe: OperatorProbe) -> None:
        self.probe = probe
        self.wall, self.cpu, self.before = time.monotonic(), probe.cpu_seconds(), probe.metrics()
        probe.peak_rss = 0.0

    def close(self) -> dict[str, object]:
        after, wall = self.probe.metrics(), time.monotonic() - self.wall
        cpu = self.probe.cpu_seconds() - self.cpu
        per_kind = {}
        for kind in ("FineTunePool", "FineTuneRun", "ModelRelease"):

            def delta(metric: str, k: str = kind) -> float:
                key = f'{metric}{{kind="{k}"}}'
                return after.get(key, 0.0) - self.before.get(key, 0.0)

            reconciles = delta("ballast_reconcile_seconds_count")
            if reconciles:
                per_kind[kind] = {
                    "reconciles": int(reconciles),
                    "mean_reconcile_ms": round(1000 * delta("ballast_reconcile_seconds_sum") / reconciles, 1),
                    "store_requests_per_reconcile": round(delta("ballast_object_store_requests_total") / reconciles, 2),
                    "errors": int(delta("ballast_reconcile_errors_total")),
                }
        return {
            "wall_seconds": round(wall, 1),
            "operator_cpu_percent_of_one_core": round(100 * cpu / wall, 1),
            "operator_peak_rss_mib": round(self.probe.peak_rss, 1),
            "by_kind": per_kind,
        }


def pool_body(name: str, endpoint: str, base_digest: str, **spec: object) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTunePool",
        "metadata": {"name": name},
        "spec": {
            "classes": list(CLASSES),
            "objectStore": {
                "endpoint": endpoint,
                "secure": False,  # the local MinIO speaks plain HTTP
                "bucket": BUCKET,
                "credentialsSecretRef": {"name": "store"},
            },
            "anchor": {"trainManifest": "anchor/train.txt", "testManifest": "anchor/test.txt"},
            "baseModel": {"version": "base_v1", "uri": f"s3://{BUCKET}/models/base_v1/model.pt", "digest": base_digest},
            "training": {"gpus": 0, "epochs": 1},
            "mixing": {"allowSmallerAnchor": True},  # the benchmark's anchor is small
            **spec,
        },
    }


def write_standin(directory: Path) -> Path:
    """`ballast-trainer` that runs the stand-in; the node agent searches this directory first."""
    directory.mkdir(parents=True, exist_ok=True)
    entry = directory / "ballast-trainer"
    entry.write_text(
        f"#!{sys.executable}\nimport sys\nfrom ballast_dev.testing.standin_trainer import main\nsys.exit(main())\n"
    )
    entry.chmod(0o755)
    return directory


def custom_list(custom: client.CustomObjectsApi, plural: str) -> list[dict]:
    return custom.list_namespaced_custom_object(GROUP, VERSION, NS, plural)["items"]


def all_runs_finished(custom: client.CustomObjectsApi, expected: int) -> bool:
    runs = custom_list(custom, "finetuneruns")
    finished = [r for r in runs if (r.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
    return len(runs) >= expected and len(finished) == len(runs)


def many_pools(args, store, custom, probe, endpoint, base_digest) -> dict[str, object]:  # type: ignore[no-untyped-def]
    names = [f"pool-{i:03d}" for i in range(args.pools)]
    started = time.monotonic()
    with ThreadPoolExecutor(4) as executor:
        list(executor.map(lambda n: write_pool_samples(store, n, range(49), size=32, workers=4), names))
    seeded = time.monotonic() - started
    for name in names:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, "finetunepools", pool_body(name, endpoint, base_digest)
        )
    eventually(
        lambda: (
            sum((p.get("status") or {}).get("verifiedSamples") == 49 for p in custom_list(custom, "finetunepools"))
            == args.pools
        ),
        600,
        interval=2,
        what="every pool counted its 49 samples",
    )
    window = probe.window()
    fiftieth: dict[str, float] = {}

    def add_fiftieth(name: str) -> None:
        write_pool_samples(store, name, range(49, 50), size=32, workers=1)
        fiftieth[name] = time.time()

    with ThreadPoolExecutor(16) as executor:
        list(executor.map(add_fiftieth, names))
    eventually(lambda: all_runs_finished(custom, args.pools), 1800, interval=3, what="every run finished")
    figures = window.close()

    # Server-side times, one clock (this host): creationTimestamp and Job completionTime have 1 s
    # resolution, the run's finishedAt (the operator's clock) microseconds; the sample's is ours.
    # The operator acts on a Job's succeeded count; the job controller stamps completionTime later
    # (minutes later on this saturated machine), so wait for every Job to be stamped or Failed.
    batch = client.BatchV1Api(custom.api_client)

    def settled(job: client.V1Job) -> bool:
        failed = any(c.type == "Failed" and c.status == "True" for c in job.status.conditions or [])
        return bool(job.status.completion_time) or failed

    eventually(
        lambda: all(settled(j) for j in batch.list_namespaced_job(NS).items),
        600,
        interval=5,
        what="every Job complete or failed",
    )
    jobs = {j.metadata.name: j for j in batch.list_namespaced_job(NS).items}
    runs_by_name = {r["metadata"]["name"]: r for r in custom_list(custom, "finetuneruns")}
    lags: dict[str, list[float]] = {
        k: []
        for k in ("trigger", "run_to_train_job", "train_done_to_gate_job", "gate_done_to_verdict", "sample_to_verdict")
    }
    for name in names:
        run = runs_by_name.get(f"{name}-run-1")
        train, gate = jobs.get(f"{name}-run-1-train"), jobs.get(f"{name}-run-1-gate")
        if run is None or train is None or gate is None:
            continue
        created, finished = wall(run["metadata"]["creationTimestamp"]), wall(run["status"].get("finishedAt"))
        pairs = {
            "trigger": (fiftieth.get(name), created),
            "run_to_train_job": (created, wall(train.metadata.creation_timestamp)),
            "train_done_to_gate_job": (wall(train.status.completion_time), wall(gate.metadata.creation_timestamp)),
            "gate_done_to_verdict": (wall(gate.status.completion_time), finished),
            "sample_to_verdict": (fiftieth.get(name), finished),
        }
        for key, (start, end) in pairs.items():
            if start is not None and end is not None:
                lags[key].append(max(0.0, end - start))
    runs = custom_list(custom, "finetuneruns")
    verdicts: dict[str, int] = {}
    for run in runs:
        verdict = (run.get("status") or {}).get("verdict") or (run.get("status") or {}).get("phase", "?")
        verdicts[verdict] = verdicts.get(verdict, 0) + 1
    return {
        "pools": args.pools,
        "seeding_49_samples_each_seconds": round(seeded, 1),
        "runs": len(runs),
        "runs_per_pool_max": max(sum(r["spec"]["pool"] == n for r in runs) for n in names),
        "verdicts": verdicts,
        "reconcile_lag_seconds": {key: percentiles(values) for key, values in lags.items()},
        **figures,
    }


def big_pool(args, store, custom, probe, endpoint, base_digest) -> dict[str, object]:  # type: ignore[no-untyped-def]
    name = "big"
    # Volume trigger at the full count and no automatic rebase: one run, planned over every sample.
    body = pool_body(
        name, endpoint, base_digest, triggers={"minNewSamples": args.big_pool}, rebase={"autoStart": False}
    )
    custom.create_namespaced_custom_object(GROUP, VERSION, NS, "finetunepools", body)
    window = probe.window()
    started = time.monotonic()
    write_pool_samples(store, name, range(args.big_pool), size=32, workers=16)
    written = time.monotonic()

    def counted() -> bool:
        status = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "finetunepools", name).get("status") or {}
        return status.get("verifiedSamples") == args.big_pool

    eventually(counted, 600, interval=0.2, what="the big pool counted every sample")
    counted_at = time.monotonic()
    run = f"{name}-run-1"

    def planned() -> dict | None:
        try:
            status = custom.get_namespaced_custom_object(GROUP, VERSION, NS, "finetuneruns", run).get("status") or {}
        except client.exceptions.ApiException:
            return None
        return status if status.get("plan") else None

    plan = eventually(planned, 600, interval=0.2, what="the big run planned")
    planned_at = time.monotonic()
    eventually(lambda: all_runs_finished(custom, args.pools + 1), 600, interval=2, what="the big run finished")
    figures = window.close()
    return {
        "samples": args.big_pool,
        "ingest_samples_per_second": round(args.big_pool / (written - started), 1),
        "last_sample_to_counted_seconds": round(counted_at - written, 2),
        "counted_to_planned_seconds": round(planned_at - counted_at, 2),
        "plan": {"newSamples": plan["plan"]["newSamples"], "oldSamples": plan["plan"]["oldSamples"]},
        **figures,
    }


def alert_payload(pool: str, index: int) -> bytes:
    alert = {
        "status": "firing",
        "labels": {"alertname": "BallastClassDetectionRateLow", "pool": pool, "namespace": NS},
        "annotations": {"summary": "load benchmark"},
        "startsAt": datetime.now(UTC).isoformat(),
        "fingerprint": f"{index:016x}",
    }
    payload = {"version": "4", "status": "firing", "receiver": "ballast", "alerts": [alert], "groupLabels": {}}
    return json.dumps(payload).encode()


def alert_stream(args, store, custom, probe, http_port: int) -> dict[str, object]:  # type: ignore[no-untyped-def]
    names = [f"pool-{i:03d}" for i in range(args.pools)]
    armed = names[: args.armed_pools]
    # Armed pools: 50 samples waiting, volume trigger raised above them, so only an alert starts a run.
    for name in armed:
        custom.patch_namespaced_custom_object(
            GROUP, VERSION, NS, "finetunepools", name, {"spec": {"triggers": {"minNewSamples": 100}}}
        )
    with ThreadPoolExecutor(4) as executor:
        list(executor.map(lambda n: write_pool_samples(store, n, range(50, 100), size=32, workers=4), armed))
    eventually(
        lambda: all(
            (custom.get_namespaced_custom_object(GROUP, VERSION, NS, "finetunepools", n).get("status") or {}).get(
                "samplesSinceLastRun"
            )
            == 50
            for n in armed
        ),
        300,
        interval=1,
        what="armed pools counted",
    )
    runs_before = {r["metadata"]["name"] for r in custom_list(custom, "finetuneruns")}
    window = probe.window()
    total = args.alerts_per_minute * args.alert_minutes
    interval = 60.0 / args.alerts_per_minute
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    first_alert: dict[str, float] = {}
    start = time.monotonic()
    for index in range(total):
        time.sleep(max(0.0, start + index * interval - time.monotonic()))
        pool = names[index % len(names)] if index >= len(armed) else armed[index]
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/alerts",
            data=alert_payload(pool, index),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        sent = time.monotonic()
        first_alert.setdefault(pool, time.time())
        with urllib.request.urlopen(request, timeout=30) as response:
            statuses[response.status] = statuses.get(response.status, 0) + 1
        latencies.append(time.monotonic() - sent)
    eventually(lambda: all_runs_finished(custom, len(runs_before) + len(armed)), 600, interval=2, what="alert runs")
    time.sleep(10)  # any run a repeat alert wrongly started would show by now
    figures = window.close()
    new_runs = [r for r in custom_list(custom, "finetuneruns") if r["metadata"]["name"] not in runs_before]
    alert_lag = []
    for run in new_runs:
        created = wall(run["metadata"]["creationTimestamp"])
        if created is not None and run["spec"]["pool"] in first_alert:
            alert_lag.append(created - first_alert[run["spec"]["pool"]])
    return {
        "alerts_sent": total,
        "alerts_per_minute": args.alerts_per_minute,
        "http_statuses": statuses,
        "webhook_latency_seconds": percentiles(latencies),
        "armed_pools": len(armed),
        "runs_started_by_alerts": len(new_runs),
        "runs_started_triggers": sorted({r["spec"].get("trigger", "?") for r in new_runs}),
        "alert_to_run_seconds": percentiles(alert_lag),
        **figures,
    }


def integrity(store, batch: client.BatchV1Api, custom: client.CustomObjectsApi, args) -> dict[str, object]:  # type: ignore[no-untyped-def]
    jobs = [j.metadata.name for j in batch.list_namespaced_job(NS).items]
    runs = custom_list(custom, "finetuneruns")
    pools = custom_list(custom, "finetunepools")
    indexed = {p["metadata"]["name"]: len(list_index(store, p["metadata"]["name"])) for p in pools}
    expected = {f"pool-{i:03d}": 100 if i < args.armed_pools else 50 for i in range(args.pools)} | {
        "big": args.big_pool
    }
    by_trigger: dict[str, int] = {}
    for run in runs:
        by_trigger[run["spec"].get("trigger", "?")] = by_trigger.get(run["spec"].get("trigger", "?"), 0) + 1
    armed = {f"pool-{i:03d}" for i in range(args.armed_pools)}

    def expected_runs(pool: str) -> int:
        return 2 if pool in armed else 1

    return {
        "jobs": len(jobs),
        "duplicate_jobs": len(jobs) - len(set(jobs)),
        "jobs_per_run": round(len(jobs) / max(1, len(runs)), 2),
        "runs_failed": sum((r.get("status") or {}).get("phase") == "Failed" for r in runs),
        "samples_indexed": sum(indexed.values()),
        "samples_expected": sum(expected.values()),
        "pools_with_missing_samples": sorted(n for n, count in expected.items() if indexed.get(n) != count),
        "pools_whose_status_count_differs": sorted(
            p["metadata"]["name"]
            for p in pools
            if (p.get("status") or {}).get("verifiedSamples") != indexed[p["metadata"]["name"]]
        ),
        "runs_by_trigger": by_trigger,
        # Volume for every pool, plus Alert for the armed ones: any other count is a run too many or too few.
        "pools_with_unexpected_runs": sorted(
            n for n in expected if sum(r["spec"]["pool"] == n for r in runs) != expected_runs(n)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pools", type=int, default=200)
    parser.add_argument("--big-pool", type=int, default=10_000)
    parser.add_argument("--alerts-per-minute", type=int, default=100)
    parser.add_argument("--alert-minutes", type=int, default=2)
    parser.add_argument("--armed-pools", type=int, default=20)
    parser.add_argument("--output", type=Path, default=None, help="also write the report here (JSON)")
    args = parser.parse_args()
    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        info = plane.up(
            root / "cluster",
            capacity={"pods": "1000", "cpu": "1000", "memory": "4000Gi"},
            path_prefix=str(write_standin(root / "standin")),
            log=lambda _m: None,
        )
        operator = probe = None
        try:
            configuration = client.Configuration()
            config.load_kube_config(info.kubeconfig, client_configuration=configuration)
            configuration.connection_pool_maxsize = 8
            api = client.ApiClient(configuration)
            install_crds(api, ROOT / "crds")
            core, batch, custom = client.CoreV1Api(api), client.BatchV1Api(api), client.CustomObjectsApi(api)
            core.create_namespace({"metadata": {"name": NS}})
            credentials = {"accessKey": info.minio_access_key, "secretKey": info.minio_secret_key}
            core.create_namespaced_secret(NS, {"metadata": {"name": "store"}, "stringData": credentials})
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket(BUCKET)
            store = ObjectStore(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, BUCKET, secure=False)
            digest = "sha256:" + "ab" * 32
            lines = [f"anchor/{i:05d}.png {digest} {digest}" for i in range(ANCHOR)]
            store.put("anchor/train.txt", ("\n".join(lines) + "\n").encode())
            store.put("anchor/test.txt", ("\n".join(lines[:100]) + "\n").encode())
            base_digest = store.put(BASE_KEY, b"stand-in base weights")
            eventually(lambda: core.list_namespaced_service_account(NS).items, 30)
            http_port = free_port()
            operator = OperatorProcess(
                info.kubeconfig, NS, root / "operator.log", http_port=http_port, webhook_token=TOKEN
            ).start()
            assert operator.process is not None
            eventually(lambda: _answers(f"http://127.0.0.1:{http_port}/metrics"), 60, what="operator metrics endpoint")
            probe = OperatorProbe(operator.process.pid, f"http://127.0.0.1:{http_port}/metrics")
            endpoint = info.minio_endpoint

            print(f"phase 1: {args.pools} pools, {args.pools} concurrent runs", flush=True)
            report["many_pools"] = many_pools(args, store, custom, probe, endpoint, base_digest)
            print(json.dumps(report["many_pools"], indent=2), flush=True)
            print(f"phase 2: one pool with {args.big_pool} samples", flush=True)
            report["big_pool"] = big_pool(args, store, custom, probe, endpoint, base_digest)
            print(json.dumps(report["big_pool"], indent=2), flush=True)
            print(f"phase 3: {args.alerts_per_minute} alerts a minute for {args.alert_minutes} min", flush=True)
            report["alerts"] = alert_stream(args, store, custom, probe, http_port)
            print(json.dumps(report["alerts"], indent=2), flush=True)
            report["integrity"] = integrity(store, batch, custom, args)
            report["operator_rss_mib_at_end"] = round(rss_mib(operator.process.pid), 1)
        finally:
            if probe:
                probe.stop.set()
            if operator:
                operator.stop()
            plane.down(root / "cluster", log=lambda _m: None)
    print(json.dumps(report, indent=2))
    if args.output:
        args.output.write_text(json.dumps(report, indent=2) + "\n")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).read()
    except OSError:
        return False
    return True


if __name__ == "__main__":
    main()
