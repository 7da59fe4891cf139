"""The object store (MinIO locally, any S3 in production): the only place artifacts and samples live.

Keys handed to this class are relative to the pool's prefix. Every read of an artifact whose digest
is known is verified; writes return the digest of what was written.
"""

from __future__ import annotations

import hashlib
import io
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from minio import Minio
from minio.commonconfig import CopySource
from minio.error import InvalidResponseError, S3Error, ServerError

from ballast.adapters.storeidentity import IdentityNotFound, credentials, identity_hosts, read_ca_file
from ballast.api import layout
from ballast.api.contracts import digest_bytes

T = TypeVar("T")

# Errors that mean "the store is not answering right now" (down, restarting, unreachable), as
# opposed to answers such as NoSuchKey or AccessDenied, which waiting would not change.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)


_requests = threading.local()


def requests_made() -> int:
    """Store requests this thread has made so far (the operator counts them per reconcile)."""
    return int(getattr(_requests, "count", 0))


class _CountingPoolManager(urllib3.PoolManager):
    def urlopen(self, method: str, url: str, redirect: bool = True, **kw):  # type: ignore[no-untyped-def,override]
        _requests.count = requests_made() + 1
        return super().urlopen(method, url, redirect=redirect, **kw)


class DigestMismatch(RuntimeError):
    """An artifact's content does not match the digest it is addressed by."""


class StoreUnavailable(ConnectionError):
    """The object store did not answer (within the store's patience); nothing was written."""


class StoreRefused(RuntimeError):
    """The store answered with an error (AccessDenied, NoSuchBucket, or no S3 answer at all). Only
    the S3 error code is kept: the endpoint is user input, and its response body never reaches a
    status, an event or a log line."""

    def __init__(self, endpoint: str, code: str) -> None:
        super().__init__(f"object store {endpoint} refused the request: {code}")
        self.code = code


def _refusal(endpoint: str, error: Exception) -> StoreRefused:
    if isinstance(error, S3Error):
        return StoreRefused(endpoint, str(error.code))
    status = getattr(error, "_code", None) or getattr(error, "status", None)
    return StoreRefused(endpoint, f"not an S3 answer (HTTP {status})" if status else "not an S3 answer")


def _tls_failure(error: BaseException) -> str | None:
    """The TLS handshake failed (an untrusted certificate, or a plain-HTTP store spoken to with
    TLS): waiting will not change that, so it is reported as a refusal, with the local reason."""
    reason = getattr(error, "reason", None) or error
    if not isinstance(reason, urllib3.exceptions.SSLError | ssl.SSLError):
        return None
    cause = reason.args[0] if reason.args and isinstance(reason.args[0], ssl.SSLError) else reason
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"TLS handshake failed (certificate verify failed: {cause.verify_message}; name its CA in caBundle)"
    detail = str(getattr(cause, "reason", None) or type(cause).__name__)
    hint = "; a plain-HTTP store needs secure: false" if detail.upper() == "WRONG_VERSION_NUMBER" else ""
    return f"TLS handshake failed ({detail}{hint})"


# What a reconcile reports in status and retries: the store is down, or it said no.
STORE_PROBLEMS: tuple[type[Exception], ...] = (StoreUnavailable, StoreRefused)


class UnsafeKey(ValueError):
    """A key that would escape the store prefix (`..`, absolute)."""


def parse_uri(uri: str) -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key)."""
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise ValueError(f"not an s3://bucket/key URI: {uri!r}")
    bucket, key = uri[5:].split("/", 1)
    return bucket, key


def safe_key(key: str) -> str:
    parts = key.split("/")
    if key.startswith("/") or ".." in parts or "" in parts[:-1] or "\\" in key:
        raise UnsafeKey(f"object key {key!r} is not a plain relative path")
    return key


@dataclass(frozen=True)
class Download:
    key: str
    destination: Path
    digest: str | None = None


class NoCredentials(StoreRefused):
    """No Secret was named and the caller's own identity gave no credentials either."""

    def __init__(self, endpoint: str, error: IdentityNotFound) -> None:
        RuntimeError.__init__(self, f"object store {endpoint}: {error}")
        self.code = "NoCredentials"


class ObjectStore:
    def __init__(
        self,
        endpoint: str,
        access_key: str | None,
        secret_key: str | None,
        bucket: str,
        prefix: str = "",
        *,
        secure: bool = True,
        region: str | None = None,
        ca_pem: str | None = None,
        connections: int = 32,
        patience: float = 0.0,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        """`access_key`/`secret_key`: None for both finds credentials in the environment or an IAM
        role (see `_Identity`). `ca_pem`: the PEM bundle to trust instead of the system's.
        `patience`: seconds to keep retrying while the store does not answer (0: fail at once).
        A batch job (the trainer) waits out a restart rather than losing hours of work; the
        operator fails fast and retries on its next reconcile."""
        # A private CA replaces the system's trust for the store (and only for it).
        trust: dict[str, Any] = {"ca_cert_data": ca_pem, "cert_reqs": "CERT_REQUIRED"} if ca_pem else {}
        # A larger pool than urllib3's default (10) so parallel dataset staging is not serialized.
        http = _CountingPoolManager(
            maxsize=connections,
            timeout=urllib3.Timeout(connect=10, read=120),
            # A refused connection fails fast here; `patience` decides how long to keep trying. A TLS
            # failure (`other`) is not retried: the certificate will not change.
            retries=urllib3.Retry(
                total=5, connect=1, other=0, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504)
            ),
            **trust,
        )
        self.credentials = credentials(access_key, secret_key, region)
        self.client = Minio(endpoint, secure=secure, region=region, http_client=http, credentials=self.credentials)
        self.endpoint = endpoint
        self.region = region
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.connections = connections
        self.patience = patience
        self.log = log

    def hosts(self) -> set[str]:
        """Every host this store talks to: the endpoint, and the credential service if any."""
        return {self.endpoint.rsplit(":", 1)[0], *identity_hosts(self.credentials, self.region)}

    def _call(self, operation: Callable[[], T]) -> T:
        """Run one store operation, retrying transient failures for up to `patience` seconds."""
        deadline = time.monotonic() + self.patience
        delay = 1.0
        while True:
            try:
                return operation()
            except (S3Error, InvalidResponseError, ServerError) as error:
                raise _refusal(self.endpoint, error) from None
            except IdentityNotFound as error:
                raise NoCredentials(self.endpoint, error) from error
            except TRANSIENT_ERRORS as error:
                tls = _tls_failure(error)
                if tls:
                    raise StoreRefused(self.endpoint, tls) from None
                left = deadline - time.monotonic()
                reason = type(error).__name__
                if left <= 0:
                    raise StoreUnavailable(f"object store {self.endpoint} unreachable ({reason})") from error
                self.log(f"object store {self.endpoint} unreachable ({reason}); retrying, {left:.0f} s left")
                time.sleep(min(delay, left))
                delay = min(delay * 2, 10.0)

    @classmethod
    def from_env(
        cls, bucket: str, prefix: str = "", patience: float = 0.0, log: Callable[[str], None] = lambda _m: None
    ) -> ObjectStore:
        """The store pods are given: BALLAST_S3_ENDPOINT, BALLAST_S3_SECURE (default true),
        BALLAST_S3_REGION, BALLAST_S3_CA_FILE (a mounted PEM bundle), and the keys in
        BALLAST_S3_ACCESS_KEY and BALLAST_S3_SECRET_KEY (from a Secret) or, without them, the
        pod's own identity (its ServiceAccount's IAM role, AWS_* variables)."""
        if "BALLAST_S3_ENDPOINT" not in os.environ:
            raise RuntimeError("object store not configured: set BALLAST_S3_ENDPOINT")
        keys = [os.environ.get("BALLAST_S3_ACCESS_KEY"), os.environ.get("BALLAST_S3_SECRET_KEY")]
        if (keys[0] is None) != (keys[1] is None):
            missing = "BALLAST_S3_SECRET_KEY" if keys[1] is None else "BALLAST_S3_ACCESS_KEY"
            raise RuntimeError(f"object store not configured: set {missing} too, or neither key")
        ca_file = os.environ.get("BALLAST_S3_CA_FILE")
        return cls(
            os.environ["BALLAST_S3_ENDPOINT"],
            keys[0],
            keys[1],
            bucket,
            prefix,
            secure=os.environ.get("BALLAST_S3_SECURE", "true").lower() in ("1", "true", "yes"),
            region=os.environ.get("BALLAST_S3_REGION") or None,
            ca_pem=read_ca_file(ca_file) if ca_file else None,
            patience=patience,
            log=log,
        )

    # ---- keys --------------------------------------------------------------------------------------
    def key(self, relative: str) -> str:
        relative = safe_key(relative)
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def uri(self, relative: str) -> str:
        return layout.s3_uri(self.bucket, self.prefix, safe_key(relative))

    def relative(self, uri: str) -> str:
        """The key of `uri` relative to this store's prefix (the URI must be in this bucket)."""
        bucket, key = parse_uri(uri)
        if bucket != self.bucket:
            raise ValueError(f"{uri} is not in bucket {self.bucket}")
        if self.prefix:
            if not key.startswith(self.prefix + "/"):
                raise ValueError(f"{uri} is outside prefix {self.prefix}/")
            key = key[len(self.prefix) + 1 :]
        return safe_key(key)

    # ---- reads -------------------------------------------------------------------------------------
    def get(self, relative: str, digest: str | None = None) -> bytes:
        key = self.key(relative)

        def read() -> bytes:
            response = self.client.get_object(self.bucket, key)
            try:
                return bytes(response.read())
            finally:
                response.close()
                response.release_conn()

        data = self._call(read)
        if digest is not None and digest_bytes(data) != digest:
            raise DigestMismatch(f"{self.uri(relative)}: content digest {digest_bytes(data)} != expected {digest}")
        return data

    def exists(self, relative: str) -> bool:
        return self.size(relative) is not None

    def size(self, relative: str) -> int | None:
        """The object's size in bytes, or None when there is no such object."""
        key = self.key(relative)
        try:
            stat = self._call(lambda: self.client.stat_object(self.bucket, key))
        except StoreRefused as error:
            if error.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise
        return int(stat.size or 0)

    def list(self, relative_prefix: str, recursive: bool = True) -> Iterator[str]:
        """Keys under a prefix, relative to the store prefix (streamed, so not retried)."""
        full = self.key(relative_prefix) if relative_prefix else (self.prefix + "/" if self.prefix else "")
        strip = len(self.prefix) + 1 if self.prefix else 0
        yield from self._listed(self.client.list_objects(self.bucket, prefix=full, recursive=recursive), strip)

    def list_after(self, relative_prefix: str, start_after: str | None = None) -> Iterator[str]:
        """Keys under a prefix that sort after `start_after` (both relative to the store prefix)."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        after = self.key(start_after) if start_after else None
        full = self.key(relative_prefix)
        listing = self.client.list_objects(self.bucket, prefix=full, recursive=True, start_after=after)
        yield from self._listed(listing, strip)

    def _listed(self, listing: Iterable, strip: int) -> Iterator[str]:  # type: ignore[type-arg]
        try:
            for item in listing:
                yield item.object_name[strip:]
        except (S3Error, InvalidResponseError, ServerError) as error:
            raise _refusal(self.endpoint, error) from None
        except IdentityNotFound as error:
            raise NoCredentials(self.endpoint, error) from error
        except TRANSIENT_ERRORS as error:  # a listing is streamed page by page: not retried
            raise StoreUnavailable(f"object store {self.endpoint} unreachable ({type(error).__name__})") from error

    def download(self, item: Download) -> int:
        data = self.get(item.key, item.digest)
        item.destination.parent.mkdir(parents=True, exist_ok=True)
        item.destination.write_bytes(data)
        return len(data)

    def download_many(self, items: Iterable[Download], workers: int | None = None) -> int:
        """Parallel downloads with digest checks; returns bytes written. The first failure raises."""
        with ThreadPoolExecutor(max_workers=workers or min(16, self.connections)) as pool:
            return sum(pool.map(self.download, items))

    # ---- writes ------------------------------------------------------------------------------------
    def put(self, relative: str, data: bytes, content_type: str = "application/octet-stream") -> str:
        key = self.key(relative)
        self._call(
            lambda: self.client.put_object(self.bucket, key, io.BytesIO(data), len(data), content_type=content_type)
        )
        return digest_bytes(data)

    def put_file(self, relative: str, path: Path, content_type: str = "application/octet-stream") -> str:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        key = self.key(relative)
        self._call(lambda: self.client.fput_object(self.bucket, key, str(path), content_type=content_type))
        return "sha256:" + digest.hexdigest()

    def copy(self, source: str, destination: str) -> None:
        target, origin = self.key(destination), self.key(source)
        self._call(lambda: self.client.copy_object(self.bucket, target, CopySource(self.bucket, origin)))

    def ensure_bucket(self) -> None:
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)
