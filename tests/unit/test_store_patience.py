"""The object store's patience: how long a caller waits out a store that does not answer."""

from __future__ import annotations

import socket
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from ballast.adapters.objectstore import ObjectStore, StoreUnavailable, requests_made


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AnswersEveryHead(BaseHTTPRequestHandler):
    """Just enough S3 for stat_object: the bucket's region, and every object exists and is empty."""

    def do_GET(self) -> None:
        body = b'<LocationConstraint xmlns="http://s3.amazonaws.com/doc/2006-03-01/">us-east-1</LocationConstraint>'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("ETag", '"d41d8cd98f00b204e9800998ecf8427e"')
        self.send_header("Last-Modified", formatdate(usegmt=True))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def store_at(port: int, patience: float, said: list[str]) -> ObjectStore:
    return ObjectStore(f"127.0.0.1:{port}", "key", "secret", "bucket", secure=False, patience=patience, log=said.append)


def test_without_patience_a_store_that_is_down_fails_at_once_with_a_clear_error():
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"object store 127\.0\.0\.1:\d+ unreachable"):
        store_at(free_port(), 0, said).exists("runs/r/plan.json")
    assert time.monotonic() - started < 5
    assert said == []


def test_with_patience_the_caller_keeps_trying_then_gives_up_saying_so():
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        store_at(free_port(), 2.0, said).put("runs/r/model.pt", b"weights")
    assert time.monotonic() - started >= 2.0
    assert said and all("unreachable" in line and "retrying" in line for line in said)


def test_a_store_that_comes_back_within_the_patience_answers_the_waiting_call():
    port = free_port()
    servers: list[HTTPServer] = []

    def come_back() -> None:  # binding is what makes the port answer
        servers.append(HTTPServer(("127.0.0.1", port), AnswersEveryHead))
        servers[0].serve_forever()

    later = threading.Timer(1.5, come_back)
    later.daemon = True  # never outlives a failed test
    said: list[str] = []
    later.start()
    try:
        assert store_at(port, 20.0, said).exists("runs/r/plan.json") is True
    finally:
        later.cancel()
        for server in servers:
            server.shutdown()
            server.server_close()
    assert said  # it waited, and said so


def test_requests_are_counted_per_thread():
    port = free_port()
    server = HTTPServer(("127.0.0.1", port), AnswersEveryHead)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        store = store_at(port, 0, [])
        store.exists("warm-up")  # the client asks for the bucket's region once
        before = requests_made()
        store.exists("a")
        store.exists("b")
        assert requests_made() - before == 2
        elsewhere: list[int] = []
        other = threading.Thread(target=lambda: elsewhere.append(requests_made()))
        other.start()
        other.join()
        assert elsewhere == [0]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def test_a_reconciles_store_requests_are_counted_under_its_kind():
    from types import SimpleNamespace

    from ballast.adapters.metrics import OperatorMetrics
    from ballast.handlers.common import RELEASES
    from ballast.handlers.runtime import Key
    from ballast.handlers.startup import counting_store_requests

    port = free_port()
    server = HTTPServer(("127.0.0.1", port), AnswersEveryHead)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    try:
        store = store_at(port, 0, [])
        store.exists("warm-up")
        context = SimpleNamespace(metrics=OperatorMetrics())
        reconcile = counting_store_requests(context, lambda _ctx, _key: [store.exists("a"), store.exists("b")])  # type: ignore[arg-type]
        reconcile(Key(RELEASES, "ml", "detector"))
        assert (
            context.metrics.registry.get_sample_value("ballast_object_store_requests_total", {"kind": "ModelRelease"})
            == 2
        )
    finally:
        server.shutdown()
        server.server_close()
