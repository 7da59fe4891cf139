"""A small JSON-over-HTTP server shared by the operator's endpoint and `ballast-trainer serve`,
hardened for hostile clients: every socket read times out, and at most `workers` connections are
served at once (more wait in the listen backlog instead of each taking a thread)."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

READ_TIMEOUT_SECONDS = 10.0
WORKERS = 16


class JsonRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # A client that sends nothing for this long (a stalled or deliberately slow one) is dropped.
    timeout = READ_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:  # one line per request is noise here
        return

    def reply(self, code: int, payload: Any, content_type: str = "application/json") -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, but never more than `workers` at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], workers: int = WORKERS) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(workers)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._slots.acquire()  # the accept loop waits here while every slot is busy
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up or stalled is not an error of ours: no traceback for it."""
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)
