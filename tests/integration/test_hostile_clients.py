"""`ballast-trainer serve` and the operator's webhook face clients that mean harm: a pixel bomb is
refused from its header, a slow or stalled client is dropped, and a crowd of them cannot keep a
well-behaved client out for long (a bounded worker pool, socket timeouts)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ballast.adapters.jsonhttp import READ_TIMEOUT_SECONDS, WORKERS
from ballast.api.contracts import digest_bytes
from ballast_dev.testing.datasets import BASE_KEY
from ballast_dev.testing.kube import eventually


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def pixel_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """A valid PNG header claiming width x height pixels, a few dozen bytes in all."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def request(url: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 30) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def stall(port: int, count: int) -> list[socket.socket]:
    """`count` clients that send half a request line and then nothing."""
    stalled = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=30)
        connection.sendall(b"POST /predict HTTP/1.1\r\nContent-Le")
        stalled.append(connection)
    return stalled


def dropped(connection: socket.socket) -> bool:
    try:
        return connection.recv(1024) == b""
    except OSError:
        return True


@pytest.fixture
def serving(cluster, pool_store, tmp_path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
        "BALLAST_S3_ACCESS_KEY": cluster.minio_access_key,
        "BALLAST_S3_SECRET_KEY": cluster.minio_secret_key,
        "BALLAST_MODEL_URI": pool_store.uri(BASE_KEY),
        "BALLAST_MODEL_DIGEST": digest_bytes(pool_store.get(BASE_KEY)),
        "BALLAST_MODEL_VERSION": "base_v1",
        "BALLAST_POOL": "invoices",
        "BALLAST_FEEDBACK_TOKEN": "feedback-secret",
    }
    command = [str(Path(sys.executable).parent / "ballast-trainer"), "serve", "--port", str(port), "--imgsz", "64"]
    with (tmp_path / "serve.log").open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: _ready(url), 120, interval=0.5, what="serve ready")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def _ready(url: str) -> bool:
    try:
        return request(f"{url}/readyz", timeout=2)[0] == 200
    except OSError:
        return False


def test_a_pixel_bomb_is_refused_from_its_header_before_anything_is_decoded(serving):
    started = time.monotonic()
    status, body = request(f"{serving}/predict", pixel_bomb())
    assert status == 400 and b"pixel limit" in body
    assert time.monotonic() - started < 5  # refused, not decoded (2.5 gigapixels would take far longer)
    assert request(f"{serving}/healthz")[0] == 200


def test_feedback_needs_the_bearer_token_when_one_is_set(serving):
    assert request(f"{serving}/feedback?documentId=d-1", b"x")[0] == 401
    wrong = {"Authorization": "Bearer guess"}
    assert request(f"{serving}/feedback?documentId=d-1", b"x", wrong)[0] == 401


def test_feedback_lands_in_the_inbox_with_what_the_serving_model_found_on_the_image(serving, pool_store):
    import json

    from ballast.api import inbox
    from ballast_dev.synth import render

    page = render("modern", 5)
    token = {"Authorization": "Bearer feedback-secret"}
    status, body = request(f"{serving}/feedback?documentId=d-2&reportedBy=ana", page.png(), token)
    assert status == 202, body
    item = json.loads(body)["inbox"]
    report = inbox.FeedbackReport.model_validate_json(pool_store.get(inbox.item_file(item, inbox.REPORT)))
    assert (report.document_id, report.reported_by, report.model) == ("d-2", "ana", "base_v1")
    found = inbox.InboxPredictions.model_validate_json(pool_store.get(inbox.item_file(item, inbox.PREDICTIONS)))
    assert found.model == "base_v1" and (found.image_width, found.image_height) == page.image.size
    assert all(0 <= box.cls < 8 and 0 <= box.confidence <= 1 for box in found.boxes)


def test_stalled_clients_are_dropped_and_cannot_keep_others_out_of_serve(serving):
    port = int(serving.rsplit(":", 1)[1])
    crowd = stall(port, WORKERS + 4)  # more than there are workers
    started = time.monotonic()
    status, _ = request(f"{serving}/healthz", timeout=READ_TIMEOUT_SECONDS * 3)
    waited = time.monotonic() - started
    assert status == 200 and waited < READ_TIMEOUT_SECONDS * 2.5
    assert all(dropped(c) for c in crowd[:WORKERS])  # each stalled client was cut off
    for connection in crowd:
        connection.close()


def test_stalled_clients_cannot_keep_alertmanager_out_of_the_webhook(cluster, namespace):
    from ballast.adapters.http import serve
    from ballast.adapters.kube import connect
    from ballast.adapters.metrics import OperatorMetrics
    from ballast.policy.alerts import WebhookTokens

    port = free_port()
    clients = connect(cluster.kubeconfig)
    server = serve(clients, OperatorMetrics(), WebhookTokens("hook-secret"), frozenset({namespace}), "127.0.0.1", port)
    try:
        crowd = stall(port, WORKERS + 4)
        started = time.monotonic()
        payload = b'{"version": "4", "status": "firing", "alerts": []}'
        headers = {"Authorization": "Bearer hook-secret", "Content-Type": "application/json"}
        status, _ = request(f"http://127.0.0.1:{port}/alerts", payload, headers, timeout=READ_TIMEOUT_SECONDS * 3)
        assert status in (200, 400) and time.monotonic() - started < READ_TIMEOUT_SECONDS * 2.5
        assert all(dropped(c) for c in crowd[:WORKERS])
        for connection in crowd:
            connection.close()
    finally:
        server.shutdown()
        server.server_close()
        clients.api.close()
