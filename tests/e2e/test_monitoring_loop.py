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
from prometheus_client.parser import text_string_to_metric_families

from ballast.adapters import metrics as metrics_module
from ballast.api import layout
from ballast.codegen import rules as alerts
from ballast_dev.cluster import plane
from ballast_dev.cluster.plane import free_port
from ballast_dev.synth import render
from ballast_dev.testing.datasets import BASE_KEY, write_pool_samples
from ballast_dev.testing.install import install
from ballast_dev.testing.kube import eventually
from ballast_trainer import servingbaseline
from tests.integration.test_operator import (
    GROUP,
    VERSION,
    a_release,
    create,
    custom,
    grant_approver,
    pool_status,
    release_status,
    run_phase,
    runs,
    served_version,
    serving_deployment,
    start_pool,
)

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
BASELINE_DOCUMENTS = 16


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


def start_monitoring(
    processes: Processes, directory: Path, namespace: str, operator: str, serve: str, token: str
) -> dict[str, str]:
    """Prometheus (the seed's rules, windows shortened) scraping `operator` and `serve`, and
    Alertmanager posting to the operator's webhook with `token`: host processes, as the
    monitoring stack is not this project's. Returns their base URLs."""
    prom_port, am_port = free_port(), free_port()
    # The seed's rules with short windows, so a test sees them fire in seconds.
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump(alerts.rules(window="1m", hold="0s")))
    (directory / "alertmanager.yml").write_text(
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
                                "url": f"{operator}/alerts",
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
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{am_port}",
            "--cluster.listen-address=",
        ],
    )
    (directory / "prometheus.yml").write_text(
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
                            {"targets": [serve.removeprefix("http://")], "labels": {"namespace": namespace}}
                        ],
                    },
                    {
                        "job_name": "ballast-operator",
                        "static_configs": [{"targets": [operator.removeprefix("http://")]}],
                    },
                ],
            }
        )
    )
    processes.start(
        "prometheus",
        [
            "prometheus",
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
    )
    return {"prometheus": f"http://127.0.0.1:{prom_port}", "alertmanager": f"http://127.0.0.1:{am_port}"}


@pytest.fixture
def loop(kube, namespace, store_secret, pool_store, cluster, tmp_path, fixture_data):
    assert shutil.which("prometheus") and shutil.which("prometheus-alertmanager"), "installed by scripts/setup"
    processes = Processes(tmp_path)
    token = secrets.token_hex(16)
    operator_port, serve_port = free_port(), free_port()
    # The README's topology: the operator in a namespace of its own, under the chart's ServiceAccount
    # and RBAC (a Role in the pools' namespace only); the pools and `serve` in the test's namespace.
    installed = install(
        cluster, kube, namespace, tmp_path / "operator.log", http_port=operator_port, webhook_token=token
    )
    operator = installed.process
    store_env = {
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
        "BALLAST_S3_ACCESS_KEY": cluster.minio_access_key,
        "BALLAST_S3_SECRET_KEY": cluster.minio_secret_key,
    }
    processes.start(
        "serve",
        [str(BIN / "ballast-trainer"), "serve", "--host", "127.0.0.1", "--port", str(serve_port), "--imgsz", "256"],
        env={
            **store_env,
            "BALLAST_MODEL_URI": pool_store.uri(BASE_KEY),
            "BALLAST_MODEL_DIGEST": fixture_data["base_digest"],
            "BALLAST_MODEL_VERSION": "base_v1",
            "BALLAST_POOL": "invoices",
            # The base has no gate figures: serve learns its baselines, per field too, from these documents.
            "BALLAST_BASELINE_DOCUMENTS": str(BASELINE_DOCUMENTS),
        },
    )
    monitoring = start_monitoring(
        processes, tmp_path, namespace, f"http://127.0.0.1:{operator_port}", f"http://127.0.0.1:{serve_port}", token
    )
    try:
        wait_http(f"http://127.0.0.1:{serve_port}/readyz", 120)
        wait_http(f"http://127.0.0.1:{operator_port}/healthz")
        wait_http(f"{monitoring['prometheus']}/-/ready")
        wait_http(f"{monitoring['alertmanager']}/-/ready")
        wait_until_scraped(monitoring["prometheus"])
    except BaseException:  # a failed start must not leave Prometheus and friends running
        operator.stop()
        processes.stop()
        client.CoreV1Api(kube).delete_namespace(installed.namespace)
        raise
    operator_url, serve_url = f"http://127.0.0.1:{operator_port}", f"http://127.0.0.1:{serve_port}"
    yield {"operator": operator_url, "serve": serve_url, "prometheus": monitoring["prometheus"], "token": token}
    operator.stop()
    processes.stop()
    client.CoreV1Api(kube).delete_namespace(installed.namespace)


# Gate 2 can never pass (no rate exceeds 1.0): every run asks a person, so the loop goes through the
# approval, and the Review-waiting metric is seen. Gate 1 is not this test's subject.
REVIEW_ALWAYS = {"regression": {"passBelow": 100, "rejectAbove": 101}, "newSamples": {"minDetectionRate": 1.0}}


def predict(loop: dict, family: str, seeds: range) -> None:
    for seed in seeds:
        status, body = http(
            "POST",
            f"{loop['serve']}/predict",
            render(family, seed).png(),
            {"Content-Type": "image/png"},
        )
        assert status == 200, body


def scraped(base_url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a /metrics endpoint, by name and labels."""
    _, raw = http("GET", f"{base_url}/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(raw.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float | None:
    wanted = set(labels.items())
    return next((v for (n, ls), v in samples.items() if n == name and wanted <= ls), None)


def prometheus(loop: dict, query: str) -> list:
    _, raw = http("GET", f"{loop['prometheus']}/api/v1/query?query={urllib.request.quote(query)}")
    answer = json.loads(raw)
    assert answer["status"] == "success", (query, answer)
    return answer["data"]["result"]


def wait_until_scraped(prometheus_url: str) -> None:
    """Every target scraped once: counters must have a sample before the documents, or their first
    sample already holds them all and `increase()` sees nothing."""

    def all_up() -> bool:
        _, raw = http("GET", f"{prometheus_url}/api/v1/targets")
        targets = json.loads(raw)["data"]["activeTargets"]
        return bool(targets) and all(t["health"] == "up" for t in targets)

    eventually(all_up, 60, interval=0.5, what="Prometheus scraped every target")


def scrape_diagnosis(loop: dict) -> str:
    _, raw = http("GET", f"{loop['prometheus']}/api/v1/targets")
    targets = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in json.loads(raw)["data"]["activeTargets"]]
    _, raw = http("GET", f"{loop['prometheus']}/api/v1/rules?type=alert")
    rules = [
        (rule["name"], rule["health"], rule.get("lastError", ""), rule["state"])
        for group in json.loads(raw)["data"]["groups"]
        for rule in group["rules"]
        if rule["name"] == "BallastClassDetectionRateLow"
    ]
    series = {
        query: prometheus(loop, query)
        for query in (
            "increase(ballast_serve_documents_total[1m])",
            "increase(ballast_serve_class_documents_total[1m])",
            "ballast_model_baseline_class_detection_rate",
        )
    }
    return f"targets: {targets}\nrule: {rules}\nseries: {json.dumps(series)[:4000]}"


def documented_metrics() -> dict[str, str]:
    """Every metric of the table in ballast.adapters.metrics' docstring, with its type."""
    rows = [line.split("|") for line in (metrics_module.__doc__ or "").splitlines() if line.startswith("| ballast_")]
    return {row[1].strip(): row[2].strip() for row in rows}


def exposed(name: str, kind: str, names: set[str]) -> bool:
    """A sample of the metric was exposed (a histogram by its _count series)."""
    return (f"{name}_count" if kind == "histogram" else name) in names


def test_drift_fires_an_alert_whose_run_goes_through_the_whole_loop_and_every_metric_and_panel_has_data(
    kube, namespace, pool_store, cluster, loop
):
    drift_to_release_and_back(kube, namespace, pool_store, cluster, loop)


def drift_to_release_and_back(kube, namespace: str, pool_store, cluster, loop: dict) -> None:
    """The whole loop from drift to rollback, asserted step by step (also run on the real node)."""
    # 60 verified samples wait, below the pool's volume trigger of 200: only an alert can start a run now.
    write_pool_samples(pool_store, "invoices", range(60))
    start_pool(kube, cluster, namespace, pool_store, triggers={"minNewSamples": 200}, gates=REVIEW_ALWAYS)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 60, 60, what="60 counted")
    assert runs(kube, namespace) == []

    # The base serves the template it was trained on; no gate ever measured it, so serve learns its
    # baselines (latency, confidence and per-field rates) from its first documents, where it runs.
    predict(loop, "classic", range(5000, 5000 + BASELINE_DOCUMENTS - 1))
    assert value(scraped(loop["serve"]), "ballast_model_baseline_latency_seconds") is None  # still learning
    predict(loop, "classic", range(5100, 5101))
    serving = scraped(loop["serve"])
    assert value(serving, "ballast_serve_baseline_documents") == BASELINE_DOCUMENTS
    assert 0 < value(serving, "ballast_model_baseline_latency_seconds") < 5
    assert 0 < value(serving, "ballast_model_baseline_confidence") <= 1
    assert value(serving, "ballast_model_baseline_class_detection_rate", **{"class": "total"}) > 0.5
    kept = json.loads(pool_store.get(layout.beside(BASE_KEY, servingbaseline.FILE)))
    assert kept["documents"] == BASELINE_DOCUMENTS and kept["classSource"] == "serving"

    # Production sends the new template the base was never trained on: it misses fields.
    predict(loop, "modern", range(9000, 9012))
    status, body = http(
        "POST",
        f"{loop['serve']}/feedback?documentId=DOC-1&reportedBy=ana",
        render("modern", 9100).png(),
    )
    assert status == 202 and json.loads(body)["inbox"].startswith("inbox/invoices/")

    query = 'ALERTS{alertname="BallastClassDetectionRateLow",alertstate="firing"}'
    try:
        fired = eventually(lambda: prometheus(loop, query), 90, interval=1, what="BallastClassDetectionRateLow firing")
    except AssertionError as error:  # say what Prometheus saw: its targets and the series the rule reads
        raise AssertionError(f"{error}\n{scrape_diagnosis(loop)}") from None
    assert {(r["metric"]["namespace"], r["metric"]["pool"]) for r in fired} == {(namespace, "invoices")}
    eventually(
        lambda: value(
            scraped(loop["operator"]),
            "ballast_alerts_received_total",
            alertname="BallastClassDetectionRateLow",
            outcome="accepted",
        ),
        60,
        what="the per-field alert accepted by the webhook",
    )
    started = eventually(lambda: runs(kube, namespace), 60, what="a run started by the alert")
    assert [r["spec"]["trigger"] for r in started] == ["Alert"]
    status = pool_status(kube, namespace)
    assert status.get("pendingAlert") is None and status.get("lastAlertActionTime")
    assert status.get("lastAlert", "").startswith("Ballast")
    # Alertmanager repeats itself, and the confidence alert may join: still one run.
    time.sleep(8)
    assert len(runs(kube, namespace)) == 1
    events = [e.reason for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items]
    assert "AlertReceived" in events

    # The run trains from the base, is gated, and waits for a person.
    name = started[0]["metadata"]["name"]
    run = eventually(lambda: run_phase(kube, namespace, name), 900, interval=2, what="the alert's run finished")
    assert (run["status"]["phase"], run["status"]["verdict"]) == ("Succeeded", "Review"), run["status"]
    model = run["status"]["model"]["version"]
    # The release serves the base first (the model in production), then is asked for the new one.
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, serving_deployment("detector"))
    create(kube, namespace, "modelreleases", a_release("detector", "invoices", "base_v1"))
    eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 120, what="the base released")
    custom(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelreleases", "detector", {"spec": {"model": model}}
    )
    eventually(lambda: release_status(kube, namespace).get("phase") == "Blocked", 60, what="blocked for review")
    waiting = f'ballast_run_review_waiting_since_seconds{{namespace="{namespace}",run="{name}"}}'
    eventually(lambda: prometheus(loop, waiting), 30, what="the Review wait reaches Prometheus")
    seen = {n for n, _ in scraped(loop["operator"])}

    # ana may approve (the approve verb) and does, in her own name; the model is released.
    grant_approver(kube, namespace, "ana")
    approve = subprocess.run(
        [str(BIN / "ballast"), "runs", "approve", name, "-n", namespace, "--reason", "new template learned"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(plane.user_kubeconfig(cluster, "ana"))},
        check=False,
    )
    assert approve.returncode == 0, approve.stderr
    eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 120, what="released")
    assert served_version(kube, namespace) == model

    # Rollback (GitOps sets the earlier model again): counted.
    custom(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelreleases", "detector", {"spec": {"model": "base_v1"}}
    )
    eventually(lambda: release_status(kube, namespace).get("currentModel") == "base_v1", 120, what="rolled back")
    released = {"namespace": namespace, "release": "detector"}
    eventually(
        lambda: value(scraped(loop["operator"]), "ballast_release_rollbacks_total", **released) == 1,
        30,
        what="the rollback counted",
    )
    assert value(scraped(loop["operator"]), "ballast_release_model_info", **released, model="base_v1") == 1
    assert value(scraped(loop["operator"]), "ballast_run_map50", run=name, model="candidate") is not None

    # After the whole loop, every documented metric has been exposed with a sample.
    predict(loop, "modern", range(9200, 9204))  # fresh traffic for the panels' rate windows
    seen |= {n for n, _ in scraped(loop["operator"])} | {n for n, _ in scraped(loop["serve"])}
    documented = documented_metrics()
    assert len(documented) >= 24
    assert [n for n, kind in documented.items() if not exposed(n, kind, seen)] == []

    # ... and every panel of the chart's Grafana dashboard has data in Prometheus.
    time.sleep(3)  # a scrape after the last requests
    dashboard = json.loads((REPO / "charts/ballast/files/dashboard.json").read_text())
    empty = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if not prometheus(loop, target["expr"])
    ]
    assert empty == []


def test_the_webhook_refuses_bad_tokens_and_bad_payloads_and_changes_nothing(
    kube, namespace, pool_store, cluster, loop
):
    start_pool(kube, cluster, namespace, pool_store)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 0, 60, what="pool reconciled")
    url = f"{loop['operator']}/alerts"
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
