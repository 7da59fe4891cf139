"""Shared fixtures. The local cluster is started once per test session, only when a test asks."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ballast.adapters.objectstore import ObjectStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The real local cluster: etcd, kube-apiserver, controllers, scheduler, node agent, MinIO."""
    from ballast_dev.cluster import plane

    state = Path(os.environ["BALLAST_TEST_CLUSTER_DIR"]) if "BALLAST_TEST_CLUSTER_DIR" in os.environ else None
    info = plane.up(state or tmp_path_factory.mktemp("cluster"), log=lambda _m: None)
    yield info
    problems = plane.down(Path(info.state_dir), log=lambda _m: None)
    assert not problems, problems


@pytest.fixture(scope="session")
def kube(cluster):
    """An ApiClient for the cluster admin, with the CRDs from crds/ installed."""
    yield from admin_client(cluster)


def admin_client(cluster) -> Iterator:
    from kubernetes import client, config

    from ballast_dev.testing.kube import apply_manifests, install_crds

    configuration = client.Configuration()
    config.load_kube_config(cluster.kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    install_crds(api, ROOT / "crds")
    # Every test runs with the admission policy the chart installs (approvals, hand-made rebases).
    apply_manifests(cluster.kubeconfig, (ROOT / "charts" / "ballast" / "files" / "admission-policy.yaml").read_text())
    yield api
    api.close()


@pytest.fixture
def namespace(kube) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the namespace controller empties it)."""
    from kubernetes import client

    from ballast_dev.testing.kube import eventually

    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube)
    core.create_namespace({"metadata": {"name": name}})
    # Pods need the namespace's default ServiceAccount, which the controller-manager creates.
    eventually(lambda: core.list_namespaced_service_account(name).items, 30, what="default ServiceAccount")
    yield name
    core.delete_namespace(name)


@pytest.fixture
def store(cluster):
    """A minio client for the cluster's MinIO."""
    from minio import Minio

    return Minio(cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, secure=False)


@pytest.fixture
def bucket(store) -> str:
    """A fresh bucket per test."""
    name = f"t-{uuid.uuid4().hex[:12]}"
    store.make_bucket(name)
    return name


@pytest.fixture
def store_secret(kube, namespace, cluster) -> str:
    """The object-store credentials as a Secret in the test's namespace (how workloads get them)."""
    from kubernetes import client

    client.CoreV1Api(kube).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "store-credentials"},
            "stringData": {"accessKey": cluster.minio_access_key, "secretKey": cluster.minio_secret_key},
        },
    )
    return "store-credentials"


BASE = Path(os.environ.get("BALLAST_BASE_FIXTURE", ROOT / "fixtures" / "base_v1"))
FIXTURES_BUCKET = "ballast-fixtures"
ANCHOR_TRAIN, ANCHOR_TEST = 60, 16


@pytest.fixture(scope="session")
def fixture_data(cluster) -> dict:
    """Anchor set (classic family), its test set, and the shipped base_v1, written once per session."""
    return write_fixture_data(cluster)


def write_fixture_data(cluster) -> dict:
    from minio import Minio

    from ballast_dev.testing.datasets import put_base, write_anchor

    raw = Minio(cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, secure=False)
    if not raw.bucket_exists(FIXTURES_BUCKET):
        raw.make_bucket(FIXTURES_BUCKET)
    store = ObjectStore(
        cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, FIXTURES_BUCKET, secure=False
    )
    write_anchor(store, train=ANCHOR_TRAIN, test=ANCHOR_TEST)
    base = put_base(store, BASE)
    return {"base_digest": base.digest, "keys": list(store.list(""))}


@pytest.fixture
def pool_store(cluster, bucket, fixture_data) -> ObjectStore:
    """The test's bucket, holding a server-side copy of the fixture data."""
    from minio.commonconfig import CopySource

    store = ObjectStore(
        cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, bucket, secure=False
    )
    for key in fixture_data["keys"]:
        store.client.copy_object(bucket, key, CopySource(FIXTURES_BUCKET, key))
    return store


@pytest.fixture
def operator_process(cluster, namespace, tmp_path, request) -> Iterator:
    """The operator in its own process, watching the test's namespace (`@pytest.mark.operator_args(...)`
    adds flags)."""
    from ballast_dev.testing.operator import OperatorProcess

    marker = request.node.get_closest_marker("operator_args")
    extra = list(marker.args) if marker else []
    process = OperatorProcess(cluster.kubeconfig, namespace, tmp_path / "operator.log", extra_args=extra).start()
    yield process
    process.stop()


@pytest.fixture
def documented_operator(cluster, kube, namespace, tmp_path) -> Iterator:
    """The operator as the README installs it: its own namespace, the chart's ServiceAccount and
    RBAC (a Role in the pools' namespace), running under that ServiceAccount's token."""
    from kubernetes import client

    from ballast_dev.testing.install import install

    installed = install(cluster, kube, namespace, tmp_path / "operator.log")
    yield installed
    installed.process.stop()
    client.CoreV1Api(kube).delete_namespace(installed.namespace)
