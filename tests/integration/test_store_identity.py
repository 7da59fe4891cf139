"""A pool's object-store identity, as the operator and the CLI build it from the real apiserver:
keys from the named Secret or else the caller's own; the CA bundle read from a ConfigMap or Secret
and trusted; every bad reference refused naming its field; the CRD's defaults and rules."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from ballast.adapters.kube import StoreCredentialsMissing, connect, object_store
from ballast.adapters.objectstore import StoreRefused
from ballast.adapters.storeidentity import identity
from ballast.api.common import ObjectStoreSpec
from ballast_dev.cluster.pki import CertificateAuthority
from ballast_dev.testing import tlsstore
from tests.integration.test_operator import a_pool, create


def a_store(endpoint: str, bucket: str = "ballast", **fields: Any) -> ObjectStoreSpec:
    return ObjectStoreSpec.model_validate({"endpoint": endpoint, "bucket": bucket, **fields})


def test_a_pool_naming_no_secret_reaches_the_store_as_the_caller(
    cluster, namespace, bucket, store, monkeypatch: pytest.MonkeyPatch
):
    # The caller's identity: here AWS_* variables, as an IAM role's credentials would be found.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", cluster.minio_access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", cluster.minio_secret_key)
    identity.cache_clear()  # found afresh in this environment, and forgotten after
    try:
        pool_store = object_store(
            connect(cluster.kubeconfig), namespace, a_store(cluster.minio_endpoint, bucket, secure=False)
        )
        pool_store.put("pool/index/doc-1.json", b"{}")
    finally:
        identity.cache_clear()
    assert store.stat_object(bucket, "pool/index/doc-1.json").size == 2


@pytest.mark.parametrize("kind", ["configMap", "secret"])
def test_a_ca_bundle_read_from_the_cluster_makes_a_privately_signed_store_trusted(
    cluster, kube, namespace, tmp_path, kind: str
):
    ca = CertificateAuthority(tmp_path / "pki")
    body = {"metadata": {"name": "store-ca"}, "data": {"bundle.pem": ca.cert_path.read_text()}}
    core = client.CoreV1Api(kube)
    if kind == "configMap":
        core.create_namespaced_config_map(namespace, body)
    else:
        core.create_namespaced_secret(namespace, {"metadata": body["metadata"], "stringData": body["data"]})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "keys"}, "stringData": {"a": "k", "s": "s"}})
    keys = {"name": "keys", "accessKeyKey": "a", "secretKeyKey": "s"}
    bundle = {kind: {"name": "store-ca", "key": "bundle.pem"}}
    with tlsstore.endpoint(ca) as endpoint:
        spec = a_store(endpoint, region="us-east-1", credentialsSecretRef=keys, caBundle=bundle)
        assert object_store(connect(cluster.kubeconfig), namespace, spec).get("models/m.pt") == tlsstore.BODY
        # The same store, without the pool's bundle: refused as untrusted.
        untrusted = object_store(connect(cluster.kubeconfig), namespace, spec.evolve(ca_bundle=None))
        with pytest.raises(StoreRefused, match="certificate verify failed"):
            untrusted.get("models/m.pt")


@pytest.mark.parametrize(
    ("config_map", "fields", "message"),
    [
        pytest.param(
            None,
            {"caBundle": {"configMap": {"name": "store-ca"}}},
            "spec.objectStore.caBundle.configMap: ConfigMap store-ca not found",
            id="a missing ConfigMap",
        ),
        pytest.param(
            {"other.crt": "x"},
            {"caBundle": {"configMap": {"name": "store-ca"}}},
            "spec.objectStore.caBundle.configMap: ConfigMap store-ca has no key ca.crt",
            id="a ConfigMap without the key",
        ),
        pytest.param(
            {"ca.crt": "not a certificate"},
            {"caBundle": {"configMap": {"name": "store-ca"}}},
            "spec.objectStore.caBundle.configMap: ConfigMap store-ca key ca.crt holds no PEM certificate",
            id="a key that holds no certificate",
        ),
        pytest.param(
            None,
            {"caBundle": {"secret": {"name": "store-ca"}}},
            "spec.objectStore.caBundle.secret: Secret store-ca not found",
            id="a missing Secret",
        ),
        pytest.param(
            None,
            {"credentialsSecretRef": {"name": "store-ca"}},
            "spec.objectStore.credentialsSecretRef: Secret store-ca not found",
            id="a missing credentials Secret",
        ),
    ],
)
def test_a_bad_reference_is_refused_naming_the_field(cluster, kube, namespace, config_map, fields, message):
    if config_map is not None:
        client.CoreV1Api(kube).create_namespaced_config_map(
            namespace, {"metadata": {"name": "store-ca"}, "data": config_map}
        )
    with pytest.raises(StoreCredentialsMissing) as caught:
        object_store(connect(cluster.kubeconfig), namespace, a_store("s3.example:443", **fields))
    assert str(caught.value) == message


def test_the_apiserver_defaults_to_tls_and_refuses_a_ca_bundle_naming_two_sources(kube, namespace):
    pool = a_pool("invoices", "ballast", "sha256:" + "0" * 64)
    pool["spec"]["objectStore"]["endpoint"] = "s3.example:443"
    del pool["spec"]["objectStore"]["secure"]
    del pool["spec"]["objectStore"]["credentialsSecretRef"]
    created = create(kube, namespace, "finetunepools", pool)
    assert created["spec"]["objectStore"]["secure"] is True
    assert "credentialsSecretRef" not in created["spec"]["objectStore"]

    pool["metadata"]["name"] = "two-sources"
    pool["spec"]["objectStore"]["caBundle"] = {"secret": {"name": "a"}, "configMap": {"name": "b"}}
    with pytest.raises(ApiException) as caught:
        create(kube, namespace, "finetunepools", pool)
    assert caught.value.status == 422
    assert "objectStore.caBundle: name exactly one of secret or configMap" in caught.value.body
