"""What a failure of the Kubernetes client, urllib3 or MinIO means to a person, in one line.

The CLI turns these into its exit codes (ballast.cli.errors); only adapters may name the
libraries, so the sorting lives here. `classify` returns None for anything it does not know: that
is a bug, and keeps its traceback.
"""

from __future__ import annotations

import json
import re
from typing import Literal

import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from minio.error import S3Error

from ballast.adapters.kube import StoreCredentialsMissing
from ballast.adapters.objectstore import StoreRefused, StoreUnavailable

Kind = Literal["not found", "refused", "unreachable", "error"]

REFUSING_STATUSES = {401, 403, 409, 422}  # unauthenticated, forbidden, conflict, invalid (admission)
UNAVAILABLE_STATUSES = {502, 503, 504}
MISSING_CODES = {"NoSuchKey", "NoSuchBucket"}


def api_message(error: ApiException) -> str:
    """The apiserver's own words (its Status message), not the HTTP dump."""
    try:
        return str(json.loads(error.body)["message"]) if error.body else f"{error.status} {error.reason}"
    except (ValueError, KeyError, TypeError):
        return f"{error.status} {error.reason}"


def _unreachable(error: BaseException) -> str:
    """`cannot reach 127.0.0.1:1 (Connection refused)`, from urllib3's nested reasons."""
    pool = getattr(error, "pool", None)
    where = f"{pool.host}:{pool.port}" if pool is not None else "the server"
    text = str(getattr(error, "reason", None) or error)
    errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    why = errno.group(1).strip() if errno else type(getattr(error, "reason", None) or error).__name__
    return f"cannot reach {where} ({why})"


def classify(error: BaseException) -> tuple[Kind, str] | None:
    """(kind, one-line message) for a failure a person can act on; None for a bug."""
    if isinstance(error, ConfigException):
        return "unreachable", f"no usable kubeconfig ({str(error).strip() or 'none found'}); set KUBECONFIG"
    if isinstance(error, ApiException):
        message = api_message(error)
        if error.status == 404:
            return "not found", message
        if error.status in REFUSING_STATUSES:
            return "refused", message
        if error.status in UNAVAILABLE_STATUSES:
            return "unreachable", f"the apiserver is unavailable: {message}"
        return "error", f"the apiserver answered {error.status}: {message}"
    if isinstance(error, StoreUnavailable):
        return "unreachable", str(error)
    if isinstance(error, StoreRefused):
        return ("not found" if error.code in MISSING_CODES else "refused"), str(error)
    if isinstance(error, S3Error):
        return ("not found" if error.code in MISSING_CODES else "refused"), f"object store: {error.code}"
    if isinstance(error, StoreCredentialsMissing):
        return "error", str(error)
    if isinstance(error, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError):
        return "unreachable", _unreachable(error)
    return None
