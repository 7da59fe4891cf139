"""Who Ballast is to the object store, and whom it trusts: static keys from a Secret or the
caller's own identity (the AWS SDKs' chain: variables, shared file, IAM role), and a private CA.

Shared by the operator, the CLI, the trainer and `ballast serve` through `ObjectStore`.
"""

from __future__ import annotations

import functools
import os
import ssl
from pathlib import Path

import urllib3
from minio.credentials import (
    AWSConfigProvider,
    ChainedProvider,
    Credentials,
    EnvAWSProvider,
    EnvMinioProvider,
    IamAwsProvider,
    Provider,
    StaticProvider,
)


class IdentityNotFound(RuntimeError):
    """No Secret was named and no credentials were found where the chain looks."""


class _Identity(Provider):
    """Credentials found by whoever runs this process, as the AWS SDKs look for them: AWS_* then
    MINIO_* variables, the shared credentials file, then an IAM role (IRSA's web identity token
    file and role ARN, or ECS/EC2 metadata). A failure names what was missing."""

    def __init__(self, region: str | None) -> None:
        # The metadata service and STS use public certificates: the store's CA bundle is not theirs.
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3, read=20),
            retries=urllib3.Retry(total=2, backoff_factor=0.2, status_forcelist=(500, 502, 503, 504)),
        )
        self.chain = ChainedProvider(
            [EnvAWSProvider(), EnvMinioProvider(), AWSConfigProvider(), IamAwsProvider(http_client=http, region=region)]
        )

    def retrieve(self) -> Credentials:
        try:
            return self.chain.retrieve()
        except (ValueError, OSError, urllib3.exceptions.HTTPError) as error:
            raise IdentityNotFound(
                "no credentials (no credentialsSecretRef, and none from AWS_* or MINIO_* variables, "
                f"~/.aws/credentials or an IAM role: {type(error).__name__})"
            ) from error


@functools.cache
def identity(region: str | None) -> Provider:
    """One identity chain per process and region: it keeps what it found until it expires, so the
    operator's reconciles do not each ask STS or the metadata service again."""
    return _Identity(region)


def credentials(access_key: str | None, secret_key: str | None, region: str | None) -> Provider:
    """Static keys when both are given, else the caller's identity chain."""
    if (access_key is None) != (secret_key is None):
        raise ValueError("object store: give both the access key and the secret key, or neither")
    if access_key is not None and secret_key is not None:
        return StaticProvider(access_key, secret_key)
    return identity(region)


def identity_hosts(provider: Provider, region: str | None = None) -> set[str]:
    """Hosts `provider` may contact to get credentials (for the trainer's network audit): none for
    static keys; for the identity chain, the one service the environment points it at."""
    if not isinstance(provider, _Identity):
        return set()
    region = os.environ.get("AWS_REGION") or region
    if os.environ.get("AWS_WEB_IDENTITY_TOKEN_FILE"):
        suffix = ".cn" if region and region.startswith("cn-") else ""
        return {f"sts.{region}.amazonaws.com{suffix}" if region else "sts.amazonaws.com"}
    if os.environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return {"169.254.170.2"}
    full = os.environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    if full:
        return {urllib3.util.parse_url(full).host or ""} - {""}
    return {"169.254.169.254"}


def ca_problem(pem: str) -> str | None:
    """Why `pem` is not a usable CA bundle (None when it is)."""
    if "-----BEGIN CERTIFICATE-----" not in pem:
        return "holds no PEM certificate"
    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError) as error:
        return f"is not a valid PEM bundle ({error})"
    return None


def read_ca_file(path: str) -> str:
    """The PEM bundle at `path` (BALLAST_S3_CA_FILE), or an error naming the variable."""
    try:
        pem = Path(path).read_text()
    except OSError as error:
        raise RuntimeError(f"BALLAST_S3_CA_FILE: cannot read {path}: {error.strerror}") from None
    problem = ca_problem(pem)
    if problem:
        raise RuntimeError(f"BALLAST_S3_CA_FILE: {path} {problem}")
    return pem
