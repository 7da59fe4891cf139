"""A stand-in object store behind TLS, for proving which CA bundles make a client trust it: every
GET answers `weights`, over HTTPS with a certificate for 127.0.0.1 that `ca` signed (or over
plain HTTP, without `ca`)."""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

from ballast_dev.cluster.pki import CertificateAuthority

BODY = b"weights"


class _AnswersEveryGet(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *_: object) -> None:
        pass


@contextlib.contextmanager
def endpoint(ca: CertificateAuthority | None) -> Iterator[str]:
    """`127.0.0.1:<port>` of a running stand-in, stopped on exit."""
    server = HTTPServer(("127.0.0.1", 0), _AnswersEveryGet)
    if ca is not None:
        cert, key = ca.issue("store", "store", server_ips=("127.0.0.1",))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
