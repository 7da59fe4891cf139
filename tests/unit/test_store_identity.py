"""Who the object store is spoken to as, and whose certificate is trusted: static keys from a
Secret or the caller's own identity (environment, ~/.aws, IAM role), a region, a private CA."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from minio.credentials import StaticProvider

from ballast.adapters.objectstore import NoCredentials, ObjectStore, StoreRefused
from ballast.adapters.storeidentity import credentials, identity, identity_hosts
from ballast_dev.cluster.pki import CertificateAuthority
from ballast_dev.testing import tlsstore

IDENTITY_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_ACCESS_KEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SECRET_KEY",
    "AWS_SESSION_TOKEN",
    "MINIO_ACCESS_KEY",
    "MINIO_SECRET_KEY",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)
STORE_VARIABLES = (
    "BALLAST_S3_ENDPOINT",
    "BALLAST_S3_SECURE",
    "BALLAST_S3_REGION",
    "BALLAST_S3_CA_FILE",
    "BALLAST_S3_ACCESS_KEY",
    "BALLAST_S3_SECRET_KEY",
)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """No identity anywhere: no variables, an empty home, and an IAM endpoint that refuses at once
    (instead of the instance metadata service, which would take seconds to time out)."""
    for name in IDENTITY_VARIABLES + STORE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{closed_port()}/creds")
    identity.cache_clear()  # a chain keeps what it found: each test starts from its own environment
    yield monkeypatch
    identity.cache_clear()


# ---- which credentials ------------------------------------------------------------------------------------
def test_keys_from_a_secret_are_used_as_they_are(bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("AWS_ACCESS_KEY_ID", "from-env")
    bare_environment.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    provider = credentials("from-secret", "from-secret-key", None)
    assert isinstance(provider, StaticProvider)
    assert provider.retrieve().access_key == "from-secret"


@pytest.mark.parametrize(
    ("variables", "access_key", "session_token"),
    [
        pytest.param(
            {"AWS_ACCESS_KEY_ID": "AKIA1", "AWS_SECRET_ACCESS_KEY": "s1", "AWS_SESSION_TOKEN": "t1"},
            "AKIA1",
            "t1",
            id="without a Secret the AWS variables are picked up, session token included",
        ),
        pytest.param(
            {"MINIO_ACCESS_KEY": "minio1", "MINIO_SECRET_KEY": "s2"},
            "minio1",
            None,
            id="without a Secret or AWS variables the MinIO variables are picked up",
        ),
        pytest.param(
            {
                "AWS_ACCESS_KEY_ID": "AKIA1",
                "AWS_SECRET_ACCESS_KEY": "s1",
                "MINIO_ACCESS_KEY": "m",
                "MINIO_SECRET_KEY": "s",
            },
            "AKIA1",
            None,
            id="the AWS variables come before the MinIO ones",
        ),
    ],
)
def test_without_a_secret_the_environment_provides_the_credentials(
    bare_environment: pytest.MonkeyPatch, variables: dict[str, str], access_key: str, session_token: str | None
) -> None:
    for name, value in variables.items():
        bare_environment.setenv(name, value)
    found = ObjectStore("s3:443", None, None, "bucket").credentials.retrieve()
    assert (found.access_key, found.session_token) == (access_key, session_token)


def test_without_a_secret_or_variables_the_shared_credentials_file_is_read(
    bare_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[default]\naws_access_key_id = FILE1\naws_secret_access_key = s\n")
    assert ObjectStore("s3:443", None, None, "bucket").credentials.retrieve().access_key == "FILE1"


def test_with_no_identity_anywhere_the_error_says_where_it_looked(bare_environment: pytest.MonkeyPatch) -> None:
    store = ObjectStore("s3.example:443", None, None, "bucket", region="eu-west-1")
    with pytest.raises(NoCredentials, match=r"s3\.example:443: no credentials \(no credentialsSecretRef, and none"):
        store.exists("pool/index/a.json")


def test_every_store_of_a_process_shares_one_identity_chain_so_an_iam_role_is_asked_once(
    bare_environment: pytest.MonkeyPatch,
) -> None:
    first = ObjectStore("s3:443", None, None, "bucket", region="eu-west-1")
    again = ObjectStore("s3:443", None, None, "other-bucket", region="eu-west-1")
    assert first.credentials is again.credentials
    assert ObjectStore("s3:443", None, None, "bucket", region="us-east-1").credentials is not first.credentials


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        pytest.param(("a", None), "both the access key and the secret key, or neither", id="an access key alone"),
        pytest.param((None, "s"), "both the access key and the secret key, or neither", id="a secret key alone"),
    ],
)
def test_half_a_key_pair_is_refused(keys: tuple[str | None, str | None], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        credentials(*keys, None)


# ---- pods: the store from the environment --------------------------------------------------------------------
def test_a_pod_with_both_keys_uses_them_and_tls_by_default(bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("BALLAST_S3_ENDPOINT", "s3.example:443")
    bare_environment.setenv("BALLAST_S3_ACCESS_KEY", "k")
    bare_environment.setenv("BALLAST_S3_SECRET_KEY", "s")
    store = ObjectStore.from_env("bucket")
    assert isinstance(store.credentials, StaticProvider)
    assert store.client._base_url.is_https  # TLS unless BALLAST_S3_SECURE says otherwise
    assert store.region is None


def test_a_pod_without_keys_uses_its_own_identity_and_region(bare_environment: pytest.MonkeyPatch) -> None:
    bare_environment.setenv("BALLAST_S3_ENDPOINT", "s3.example:443")
    bare_environment.setenv("BALLAST_S3_REGION", "eu-west-1")
    bare_environment.setenv("BALLAST_S3_SECURE", "false")
    bare_environment.setenv("AWS_ACCESS_KEY_ID", "irsa-like")
    bare_environment.setenv("AWS_SECRET_ACCESS_KEY", "s")
    store = ObjectStore.from_env("bucket")
    assert store.credentials.retrieve().access_key == "irsa-like"
    assert store.region == "eu-west-1" and store.client._base_url.region == "eu-west-1"
    assert not store.client._base_url.is_https


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        pytest.param({}, "set BALLAST_S3_ENDPOINT", id="no endpoint names the variable"),
        pytest.param(
            {"BALLAST_S3_ENDPOINT": "e:1", "BALLAST_S3_ACCESS_KEY": "k"},
            "set BALLAST_S3_SECRET_KEY too, or neither key",
            id="an access key without a secret key names the missing one",
        ),
        pytest.param(
            {"BALLAST_S3_ENDPOINT": "e:1", "BALLAST_S3_CA_FILE": "/nonexistent/ca.crt"},
            "BALLAST_S3_CA_FILE: cannot read /nonexistent/ca.crt",
            id="a CA file that is not there names the variable",
        ),
    ],
)
def test_a_badly_configured_pod_is_told_which_variable(
    bare_environment: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        bare_environment.setenv(name, value)
    with pytest.raises(RuntimeError, match=message):
        ObjectStore.from_env("bucket")


def test_a_ca_file_without_a_certificate_names_the_variable(
    bare_environment: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "ca.crt").write_text("not a certificate\n")
    bare_environment.setenv("BALLAST_S3_ENDPOINT", "e:1")
    bare_environment.setenv("BALLAST_S3_CA_FILE", str(tmp_path / "ca.crt"))
    with pytest.raises(RuntimeError, match=r"BALLAST_S3_CA_FILE: .*ca\.crt holds no PEM certificate"):
        ObjectStore.from_env("bucket")


# ---- the trainer's network audit lets the credential service through -----------------------------------------
@pytest.mark.parametrize(
    ("variables", "region", "hosts"),
    [
        pytest.param({}, None, {"169.254.169.254"}, id="on EC2 the instance metadata service"),
        pytest.param(
            {"AWS_WEB_IDENTITY_TOKEN_FILE": "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"},
            "eu-west-1",
            {"sts.eu-west-1.amazonaws.com"},
            id="with IRSA the regional STS endpoint",
        ),
        pytest.param(
            {"AWS_WEB_IDENTITY_TOKEN_FILE": "/t", "AWS_REGION": "cn-north-1"},
            None,
            {"sts.cn-north-1.amazonaws.com.cn"},
            id="with IRSA in China AWS_REGION's STS endpoint",
        ),
        pytest.param({"AWS_WEB_IDENTITY_TOKEN_FILE": "/t"}, None, {"sts.amazonaws.com"}, id="with IRSA and no region"),
        pytest.param(
            {"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/credentials/x"},
            None,
            {"169.254.170.2"},
            id="on ECS the task metadata endpoint",
        ),
    ],
)
def test_the_credential_service_is_the_only_other_host_a_pod_may_reach(
    bare_environment: pytest.MonkeyPatch, variables: dict[str, str], region: str | None, hosts: set[str]
) -> None:
    bare_environment.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
    for name, value in variables.items():
        bare_environment.setenv(name, value)
    store = ObjectStore("minio.storage:9000", None, None, "bucket", region=region)
    assert store.hosts() == {"minio.storage", *hosts}
    assert identity_hosts(ObjectStore("minio.storage:9000", "k", "s", "bucket").credentials) == set()


# ---- a private CA -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def private_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def https_store(private_ca: CertificateAuthority) -> Iterator[str]:
    """An S3-ish HTTPS endpoint whose certificate a private CA signed."""
    with tlsstore.endpoint(private_ca) as address:
        yield address


@pytest.fixture
def http_store() -> Iterator[str]:
    with tlsstore.endpoint(None) as address:
        yield address


def test_a_store_signed_by_a_private_ca_is_trusted_with_its_bundle(
    https_store: str, private_ca: CertificateAuthority
) -> None:
    store = ObjectStore(https_store, "k", "s", "bucket", region="us-east-1", ca_pem=private_ca.cert_path.read_text())
    assert store.get("models/base_v1/model.pt") == tlsstore.BODY


def test_without_its_bundle_the_store_is_refused_as_untrusted_not_retried_as_down(https_store: str) -> None:
    store = ObjectStore(https_store, "k", "s", "bucket", region="us-east-1", patience=30)
    with pytest.raises(
        StoreRefused, match=r"TLS handshake failed \(certificate verify failed.*name its CA in caBundle"
    ):
        store.get("models/base_v1/model.pt")


def test_another_ca_s_bundle_does_not_make_the_store_trusted(https_store: str, tmp_path: Path) -> None:
    other = CertificateAuthority(tmp_path / "other").cert_path.read_text()
    with pytest.raises(StoreRefused, match="certificate verify failed"):
        ObjectStore(https_store, "k", "s", "bucket", region="us-east-1", ca_pem=other).get("models/base_v1/model.pt")


def test_tls_spoken_to_a_plain_http_store_says_to_set_secure_false(http_store: str) -> None:
    with pytest.raises(StoreRefused, match="a plain-HTTP store needs secure: false"):
        ObjectStore(http_store, "k", "s", "bucket", region="us-east-1").get("models/base_v1/model.pt")
