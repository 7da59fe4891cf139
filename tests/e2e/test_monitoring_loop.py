"""Seed section 7 made real: degraded predictions -> Prometheus alert -> Alertmanager -> operator webhook -> a run.

Real processes: `ballast-trainer serve` with the base model, the operator, Prometheus and Alertmanager
(Debian's packages), MinIO and the local control plane. Only the rule windows are shortened.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from ballast.codegen import rules as alerts
from ballast_dev.cluster.plane import free_port
from ballast_dev.synth import render
from ballast_dev.testing.datasets import BASE_KEY, write_pool_samples
from ballast_dev.testing.install import install
from ballast_dev.testing.kube import eventually
from tests.integration.test_operator import pool_status, runs, start_pool

BIN = Path(sys.executable).parent


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Processes:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.running: list[subprocess.Popen] = []

    def start(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
        )
        log.close()
        self.running.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.running):
            process.terminate()
        for process in self.running:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_http(url: str, timeout: float = 60) -> None:
    def up() -> bool:
        try:
            return http("GET", url)[0] == 200
        except urllib.error.URLError:
            return False

    eventually(up, timeout, interval=0.5, what=url)


def put_base_baseline(store, tmp_path: Path) -> dict:
    """What a gate leaves beside a model it passed, for the base: its per-field detection rates on
    held-out pages of the template it was trained on (the per-field alert is relative to them).
    Only those: this loop is about the per-field alert, and without a confidence or latency
    baseline the other serving alerts stay out of it."""
    from ballast_dev.synth import CLASSES
    from ballast_trainer import yolo

    pages = tmp_path / "baseline-pages"
    pages.mkdir()
    images = []
    for seed in range(16):
        images.append(pages / f"{seed}.png")
        images[-1].write_bytes(render("classic", 2_000_000 + seed).png())
    weights = tmp_path / "base.pt"
    weights.write_bytes(store.get(BASE_KEY))
    measured = yolo.serving_baseline(weights, images, list(CLASSES), 256, "cpu", 0.25)
    baseline = {"classDetectionRate": measured.class_detection_rate}
    store.put(BASE_KEY.rsplit("/", 1)[0] + "/baseline.json", json.dumps(baseline).encode(), "application/json")
    return baseline


@pytest.fixture
def loop(kube, namespace, store_secret, pool_store, cluster, tmp_path, fixture_data):
    assert shutil.which("prometheus") and shutil.which("prometheus-alertmanager"), "installed by scripts/setup"
    processes = Processes(tmp_path)
    token = secrets.token_hex(16)
    operator_port, serve_port, prom_port, am_port = free_port(), free_port(), free_port(), free_port()
    # The README's topology: the operator in a namespace of its own, under the chart's ServiceAccount
    # and RBAC (a Role in the pools' namespace only); the pools and `serve` in the test's namespace.
    installed = install(
        cluster, kube, namespace, tmp_path / "operator.log", http_port=operator_port, webhook_token=token
    )
    operator = installed.process
    store_env = {
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_ACCESS_KEY": cluster.minio_access_key,
        "BALLAST_S3_SECRET_KEY": cluster.minio_secret_key,
    }
    put_base_baseline(pool_store, tmp_path)
    processes.start(
        "serve",
        [str(BIN / "ballast-trainer"), "serve", "--host", "127.0.0.1", "--port", str(serve_port), "--imgsz", "256"],
        env={
            **store_env,
            "BALLAST_MODEL_URI": pool_store.uri(BASE_KEY),
            "BALLAST_MODEL_DIGEST": fixture_data["base_digest"],
            "BALLAST_MODEL_VERSION": "base_v1",
            "BALLAST_POOL": "invoices",
        },
    )
    # The seed's rules with short windows, so a test sees them fire in seconds.
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(alerts.rules(window="1m", hold="0s")))
    (tmp_path / "alertmanager.yml").write_text(
        yaml.safe_dump(
            {
                "route": {
                    "receiver": "ballast",
                    "group_by": ["alertname", "namespace", "pool"],
                    "group_wait": "1s",
                    "group_interval": "5s",
                    "repeat_interval": "1h",
                },
                "receivers": [
                    {
                        "name": "ballast",
                        "webhook_configs": [
                            {
                                "url": f"http://127.0.0.1:{operator_port}/alerts",
                                "http_config": {"authorization": {"credentials": token}},
                                "send_resolved": False,
                            }
                        ],
                    }
                ],
            }
        )
    )
    processes.start(
        "alertmanager",
        [
            "prometheus-alertmanager",
            f"--config.file={tmp_path / 'alertmanager.yml'}",
            f"--storage.path={tmp_path / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(rules)],
                "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]},
                "scrape_configs": [
                    # Kubernetes discovery (a PodMonitor, a `prometheus.io/scrape` job) labels the
                    # serving pod's series with its namespace; a static target says so itself.
                    {
                        "job_name": "ballast-serve",
                        "static_configs": [
                            {"targets": [f"127.0.0.1:{serve_port}"], "labels": {"namespace": namespace}}
                        ],
                    },
                    {"job_name": "ballast-operator", "static_configs": [{"targets": [f"127.0.0.1:{operator_port}"]}]},
                ],
            }
        )
    )
    processes.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
    )
    try:
        wait_http(f"http://127.0.0.1:{serve_port}/readyz", 120)
        wait_http(f"http://127.0.0.1:{operator_port}/healthz")
        wait_http(f"http://127.0.0.1:{prom_port}/-/ready")
        wait_http(f"http://127.0.0.1:{am_port}/-/ready")
    except BaseException:  # a failed start must not leave Prometheus and friends running
        operator.stop()
        processes.stop()
        client.CoreV1Api(kube).delete_namespace(installed.namespace)
        raise
    yield {"operator": operator_port, "serve": serve_port, "prometheus": prom_port, "token": token, "logs": tmp_path}
    operator.stop()
    processes.stop()
    client.CoreV1Api(kube).delete_namespace(installed.namespace)


def test_degraded_predictions_fire_an_alert_that_starts_a_run(kube, namespace, pool_store, cluster, loop):
    # 60 verified samples wait, below the pool's volume trigger of 200: only an alert can start a run now.
    write_pool_samples(pool_store, "invoices", range(60))
    start_pool(kube, cluster, namespace, pool_store, triggers={"minNewSamples": 200})
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 60, 60, what="60 counted")
    assert runs(kube, namespace) == []

    # Production sends the new template the base was never trained on: it misses fields.
    for seed in range(12):
        status, body = http(
            "POST",
            f"http://127.0.0.1:{loop['serve']}/predict",
            render("modern", 9000 + seed).png(),
            {"Content-Type": "image/png"},
        )
        assert status == 200, body
    status, body = http(
        "POST",
        f"http://127.0.0.1:{loop['serve']}/feedback?documentId=DOC-1&reportedBy=ana",
        render("modern", 9100).png(),
    )
    assert status == 202 and json.loads(body)["inbox"].startswith("inbox/invoices/")

    def firing() -> list:
        query = urllib.request.quote('ALERTS{alertname="BallastClassDetectionRateLow",alertstate="firing"}')
        _, raw = http("GET", f"http://127.0.0.1:{loop['prometheus']}/api/v1/query?query={query}")
        return json.loads(raw)["data"]["result"]

    fired = eventually(firing, 90, interval=1, what="BallastClassDetectionRateLow firing")
    assert {(r["metric"]["namespace"], r["metric"]["pool"]) for r in fired} == {(namespace, "invoices")}
    eventually(
        lambda: pool_status(kube, namespace).get("lastAlert") == "BallastClassDetectionRateLow",
        60,
        what="alert recorded on the pool",
    )
    started = eventually(lambda: runs(kube, namespace), 60, what="a run started by the alert")
    assert [r["spec"]["trigger"] for r in started] == ["Alert"]
    status = pool_status(kube, namespace)
    assert status.get("pendingAlert") is None and status.get("lastAlertActionTime")
    # Alertmanager repeats itself; a repeated alert starts no second run.
    time.sleep(8)
    assert len(runs(kube, namespace)) == 1

    # The operator's own metrics reach Prometheus too.
    query = urllib.request.quote(f'ballast_pool_verified_samples{{namespace="{namespace}",pool="invoices"}}')
    _, raw = http("GET", f"http://127.0.0.1:{loop['prometheus']}/api/v1/query?query={query}")
    assert json.loads(raw)["data"]["result"][0]["value"][1] == "60"
    events = [e.reason for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items]
    assert "AlertReceived" in events


def test_the_webhook_refuses_bad_tokens_and_bad_payloads_and_changes_nothing(
    kube, namespace, pool_store, cluster, loop
):
    start_pool(kube, cluster, namespace, pool_store)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 0, 60, what="pool reconciled")
    url = f"http://127.0.0.1:{loop['operator']}/alerts"
    good = {
        "version": "4",
        "status": "firing",
        "receiver": "ballast",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "BallastLatencyHigh", "pool": "invoices", "namespace": namespace},
                "startsAt": "2026-11-26T12:00:00Z",
            }
        ],
    }
    assert http("POST", url, json.dumps(good).encode())[0] == 401
    assert http("POST", url, json.dumps(good).encode(), {"Authorization": "Bearer wrong"})[0] == 401
    auth = {"Authorization": f"Bearer {loop['token']}", "Content-Type": "application/json"}
    code, body = http("POST", url, b"{not json", auth)
    assert code == 400 and b"not JSON" in body
    broken = {**good, "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]}
    code, body = http("POST", url, json.dumps(broken).encode(), auth)
    assert code == 400 and b"alerts.0.startsAt" in body
    assert "lastAlert" not in pool_status(kube, namespace)
    code, body = http("POST", url, json.dumps(good).encode(), auth)
    assert code == 200 and json.loads(body)["accepted"] == [f"{namespace}/invoices: BallastLatencyHigh"]
    eventually(lambda: pool_status(kube, namespace).get("lastAlert") == "BallastLatencyHigh", 30, what="recorded")
    # Too few samples: the alert waits on the pool, and no run starts.
    time.sleep(4)
    assert runs(kube, namespace) == []
    assert pool_status(kube, namespace)["pendingAlert"] == "BallastLatencyHigh"
