"""What a training or gate Job is told about the object store: keys only from a named Secret (else
the pod's own identity, through its ServiceAccount), the region, TLS, and the private CA mounted."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ballast.api.common import ObjectStoreSpec
from ballast.api.params import TrainingParams
from ballast.policy.manifests import STORE_CA_FILE, build_job


def a_store(**fields: Any) -> ObjectStoreSpec:
    return ObjectStoreSpec.model_validate({"endpoint": "s3.example:443", "bucket": "ballast", **fields})


def pod_of(store: ObjectStoreSpec) -> dict[str, Any]:
    job = build_job(
        run="r",
        run_uid="u",
        pool="p",
        stage="train",
        training=TrainingParams(gpus=0),
        image="trainer:1",
        store=store,
        plan_uri="s3://ballast/plan.json",
        plan_digest="sha256:" + "0" * 64,
    )
    return dict(job["spec"]["template"]["spec"])


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"] if "S3" in e["name"]}


@pytest.mark.parametrize(
    ("fields", "env"),
    [
        pytest.param(
            {"credentialsSecretRef": {"name": "store", "accessKeyKey": "id", "secretKeyKey": "key"}},
            {
                "BALLAST_S3_ENDPOINT": "s3.example:443",
                "BALLAST_S3_SECURE": "true",
                "BALLAST_S3_ACCESS_KEY": {"secretKeyRef": {"name": "store", "key": "id"}},
                "BALLAST_S3_SECRET_KEY": {"secretKeyRef": {"name": "store", "key": "key"}},
            },
            id="a named Secret gives the keys, through secretKeyRef only, and TLS by default",
        ),
        pytest.param(
            {},
            {"BALLAST_S3_ENDPOINT": "s3.example:443", "BALLAST_S3_SECURE": "true"},
            id="without a Secret the Job gets no keys at all: its identity finds them",
        ),
        pytest.param(
            {"region": "eu-west-1", "secure": False},
            {"BALLAST_S3_ENDPOINT": "s3.example:443", "BALLAST_S3_SECURE": "false", "BALLAST_S3_REGION": "eu-west-1"},
            id="a region and plain HTTP are passed on as said",
        ),
        pytest.param(
            {"caBundle": {"configMap": {"name": "store-ca"}}},
            {"BALLAST_S3_ENDPOINT": "s3.example:443", "BALLAST_S3_SECURE": "true", "BALLAST_S3_CA_FILE": STORE_CA_FILE},
            id="a CA bundle is pointed at where it is mounted",
        ),
    ],
)
def test_the_job_is_told_the_store_as_the_pool_names_it(fields: dict[str, Any], env: dict[str, Any]) -> None:
    assert env_of(pod_of(a_store(**fields))) == env


@pytest.mark.parametrize(
    ("ca_bundle", "volume"),
    [
        pytest.param(
            {"configMap": {"name": "store-ca"}},
            {"name": "store-ca", "configMap": {"name": "store-ca", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            id="a ConfigMap's ca.crt by default",
        ),
        pytest.param(
            {"secret": {"name": "private-ca", "key": "bundle.pem"}},
            {
                "name": "store-ca",
                "secret": {"secretName": "private-ca", "items": [{"key": "bundle.pem", "path": "ca.crt"}]},
            },
            id="a Secret's named key",
        ),
    ],
)
def test_the_ca_bundle_is_mounted_read_only_where_the_env_points(
    ca_bundle: dict[str, Any], volume: dict[str, Any]
) -> None:
    pod = pod_of(a_store(caBundle=ca_bundle))
    assert volume in pod["volumes"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "store-ca")
    assert mount == {"name": "store-ca", "mountPath": "/etc/ballast/store-ca", "readOnly": True}
    # the bundle is the volume's only file, ca.crt, and the env names exactly that file
    assert env_of(pod)["BALLAST_S3_CA_FILE"] == "/etc/ballast/store-ca/ca.crt"


def test_without_a_ca_bundle_nothing_is_mounted() -> None:
    pod = pod_of(a_store())
    assert [v["name"] for v in pod["volumes"]] == ["scratch"]


@pytest.mark.parametrize(
    ("fields", "service_account"),
    [
        pytest.param({}, None, id="by default the Job runs as the namespace's default ServiceAccount"),
        pytest.param({"serviceAccountName": "trainer-s3"}, "trainer-s3", id="a named one carries its IAM role"),
    ],
)
def test_the_job_runs_as_the_named_service_account_without_an_api_token(
    fields: dict[str, Any], service_account: str | None
) -> None:
    pod = pod_of(a_store(**fields))
    assert pod.get("serviceAccountName") == service_account
    assert pod["automountServiceAccountToken"] is False


def test_tls_is_the_default() -> None:
    assert a_store().secure is True


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"caBundle": {}}, "objectStore.caBundle: name exactly one of secret or configMap", id="neither"),
        pytest.param(
            {"caBundle": {"secret": {"name": "a"}, "configMap": {"name": "b"}}},
            "objectStore.caBundle: name exactly one of secret or configMap",
            id="both a Secret and a ConfigMap",
        ),
        pytest.param({"caBundle": {"secrets": {"name": "a"}}}, "caBundle.secrets", id="a misspelt source"),
        pytest.param(
            {"caBundle": {"configMap": {"name": "a", "path": "x"}}}, "caBundle.configMap.path", id="an unknown key"
        ),
        pytest.param(
            {"caBundle": {"configMap": {"name": "a", "key": "../x"}}}, "caBundle.configMap.key", id="a bad key"
        ),
        pytest.param({"caBundle": {"configMap": {"name": "Bad_Name"}}}, "caBundle.configMap.name", id="a bad name"),
        pytest.param({"region": "EU West"}, "region", id="a region that is not a region name"),
        pytest.param({"serviceAccountName": "Not A Name"}, "serviceAccountName", id="a bad ServiceAccount name"),
        pytest.param({"credentialsSecretRef": {}}, "credentialsSecretRef.name", id="a Secret ref without a name"),
    ],
)
def test_bad_store_settings_are_refused_naming_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
        a_store(**fields)
