"""The Alertmanager webhook against a real apiserver: each alert of a notification judged alone,
mapped to its pool by `namespace` and `pool`, the refused ones reported and the others applied."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from ballast.adapters.http import serve, webhook_tokens
from ballast.adapters.kube import connect
from ballast.adapters.metrics import OperatorMetrics
from ballast.policy.alerts import WebhookTokens
from ballast_dev.cluster.plane import free_port
from tests.integration.test_operator import pool_status, start_pool


def post(port: int, token: str, *labels: dict[str, str]) -> tuple[int, dict]:
    alerts = [{"status": "firing", "labels": x, "startsAt": "2026-11-26T12:00:00Z"} for x in labels]
    body = json.dumps({"version": "4", "status": "firing", "receiver": "ballast", "alerts": alerts}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/alerts", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def webhook(cluster, namespace):
    """The webhook of an operator that runs elsewhere and watches only the test's namespace."""
    port, clients = free_port(), connect(cluster.kubeconfig)
    tokens = WebhookTokens("shared-secret", {namespace: "own-secret", "elsewhere": "other-secret"})
    server = serve(clients, OperatorMetrics(), tokens, frozenset({namespace, "elsewhere"}), "127.0.0.1", port)
    yield port
    server.shutdown()
    server.server_close()
    clients.api.close()


def test_one_notification_applies_its_good_alerts_and_refuses_the_others_one_by_one(
    kube, namespace, cluster, pool_store, webhook
):
    start_pool(kube, cluster, namespace, pool_store)
    code, body = post(
        webhook,
        "shared-secret",
        {"alertname": "BallastLatencyHigh", "namespace": namespace, "pool": "invoices"},
        {"alertname": "BallastConfidenceDrift", "namespace": "not-watched", "pool": "invoices"},
        {"alertname": "BallastUserFailuresRising", "pool": "invoices"},
        {"alertname": "BallastLatencyHigh", "namespace": namespace, "pool": "receipts"},
    )
    assert code == 200, body
    assert body["accepted"] == [f"{namespace}/invoices: BallastLatencyHigh"]
    assert [r.split(":")[0] for r in body["refused"]] == ["BallastConfidenceDrift", "BallastUserFailuresRising"]
    assert body["skipped"] == [f"BallastLatencyHigh: no FineTunePool {namespace}/receipts"]
    status = pool_status(kube, namespace)
    assert status["lastAlert"] == "BallastLatencyHigh" and status["pendingAlert"] == "BallastLatencyHigh"


def test_a_namespace_token_records_alerts_for_its_own_namespace_only(kube, namespace, cluster, pool_store, webhook):
    start_pool(kube, cluster, namespace, pool_store)
    code, body = post(
        webhook, "other-secret", {"alertname": "BallastLatencyHigh", "namespace": namespace, "pool": "invoices"}
    )
    assert code == 200 and body["accepted"] == [] and "may not send alerts" in body["refused"][0]
    assert "lastAlert" not in pool_status(kube, namespace)
    code, body = post(
        webhook, "own-secret", {"alertname": "BallastLatencyHigh", "namespace": namespace, "pool": "invoices"}
    )
    assert code == 200 and body["accepted"] == [f"{namespace}/invoices: BallastLatencyHigh"]
    assert pool_status(kube, namespace)["lastAlert"] == "BallastLatencyHigh"
    assert post(webhook, "wrong", {"alertname": "X", "namespace": namespace, "pool": "invoices"})[0] == 401


def test_a_namespace_the_operator_may_not_read_refuses_its_alert_and_the_others_are_applied(
    kube, namespace, cluster, pool_store, documented_operator
):
    # The chart's ServiceAccount (a Role in the pools' namespace only), told to watch its own
    # namespace as well: reading a pool there is Forbidden, which no resend can cure.
    port, clients = free_port(), connect(str(documented_operator.kubeconfig))
    watched = frozenset({namespace, documented_operator.namespace})
    server = serve(clients, OperatorMetrics(), WebhookTokens("shared-secret"), watched, "127.0.0.1", port)
    try:
        start_pool(kube, cluster, namespace, pool_store)
        code, body = post(
            port,
            "shared-secret",
            {"alertname": "BallastLatencyHigh", "namespace": documented_operator.namespace, "pool": "invoices"},
            {"alertname": "BallastConfidenceDrift", "namespace": namespace, "pool": "invoices"},
        )
        assert code == 200, body
        assert body["accepted"] == [f"{namespace}/invoices: BallastConfidenceDrift"]
        assert body["refused"] == [
            f"BallastLatencyHigh: the operator may not read FineTunePools in {documented_operator.namespace}"
        ]
        assert pool_status(kube, namespace)["lastAlert"] == "BallastConfidenceDrift"
    finally:
        server.shutdown()
        server.server_close()
        clients.api.close()


def test_per_namespace_tokens_are_read_from_a_mounted_secret(tmp_path):
    # A Secret volume: one file per key, plus the kubelet's `..data` links, which are no namespaces.
    (tmp_path / "..2026_11_26").mkdir()
    (tmp_path / "..2026_11_26" / "ml").write_text("ml-secret\n")
    (tmp_path / "..data").symlink_to("..2026_11_26")
    (tmp_path / "ml").symlink_to("..data/ml")
    tokens = webhook_tokens({"BALLAST_WEBHOOK_TOKEN": "shared", "BALLAST_WEBHOOK_TOKEN_DIR": str(tmp_path)})
    assert tokens == WebhookTokens("shared", {"ml": "ml-secret"})
    assert webhook_tokens({}) == WebhookTokens(None, {}) and not webhook_tokens({}).configured
