"""Fixtures for the operator tests: a shared anchor set and base model, copied into each test's bucket."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ballast.adapters.objectstore import ObjectStore
from ballast.api.contracts import digest_bytes

ROOT = Path(__file__).resolve().parents[2]
BASE = Path(os.environ.get("BALLAST_BASE_FIXTURE", ROOT / "fixtures" / "base_v1"))
FIXTURES_BUCKET = "ballast-fixtures"
ANCHOR_TRAIN, ANCHOR_TEST = 60, 16


@pytest.fixture(scope="session")
def fixture_data(cluster) -> dict:
    """Anchor set (classic family), its test set, and the shipped base_v1, written once per session."""
    from minio import Minio

    from ballast.testing.datasets import write_anchor

    raw = Minio(cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, secure=False)
    if not raw.bucket_exists(FIXTURES_BUCKET):
        raw.make_bucket(FIXTURES_BUCKET)
    store = ObjectStore(cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, FIXTURES_BUCKET)
    write_anchor(store, train=ANCHOR_TRAIN, test=ANCHOR_TEST)
    weights = (BASE / "model.pt").read_bytes()
    store.put("models/base_v1/model.pt", weights)
    store.put("models/base_v1/lineage.json", (BASE / "lineage.json").read_bytes())
    return {"base_digest": digest_bytes(weights), "keys": list(store.list(""))}


@pytest.fixture
def pool_store(cluster, bucket, fixture_data) -> ObjectStore:
    """The test's bucket, holding a server-side copy of the fixture data."""
    from minio.commonconfig import CopySource

    store = ObjectStore(cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, bucket)
    for key in fixture_data["keys"]:
        store.client.copy_object(bucket, key, CopySource(FIXTURES_BUCKET, key))
    return store


@pytest.fixture
def operator_process(cluster, namespace, tmp_path) -> Iterator:
    from ballast.testing.operator import OperatorProcess

    process = OperatorProcess(cluster.kubeconfig, namespace, tmp_path / "operator.log").start()
    yield process
    process.stop()
