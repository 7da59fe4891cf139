"""Where a serving container's model comes from, read from its spec as the kubelet resolves it
(ballast.adapters.kube.model_source), and which pods are the Deployment's own."""

from __future__ import annotations

import pytest
from kubernetes import client

from ballast.adapters.kube import _owned_by, label_selector, model_source
from ballast.policy.servingconfig import ModelSource

FROM_RELEASE = client.V1EnvFromSource(config_map_ref=client.V1ConfigMapEnvSource(name="rel-model"))


def container(env_from=(), env=()) -> client.V1Container:
    return client.V1Container(name="serve", env_from=list(env_from), env=list(env))


def key_ref(name: str, config_map: str, key: str) -> client.V1EnvVar:
    source = client.V1EnvVarSource(config_map_key_ref=client.V1ConfigMapKeySelector(name=config_map, key=key))
    return client.V1EnvVar(name=name, value_from=source)


@pytest.mark.parametrize(
    ("spec", "reads"),
    [
        pytest.param(container([FROM_RELEASE]), True, id="envFrom of the release's ConfigMap reads it"),
        pytest.param(
            container(
                [client.V1EnvFromSource(prefix="X_", config_map_ref=client.V1ConfigMapEnvSource(name="rel-model"))]
            ),
            False,
            id="envFrom with a prefix gives other variable names and does not read it",
        ),
        pytest.param(
            container(
                env=[
                    key_ref(k, "rel-model", k)
                    for k in ("BALLAST_MODEL_URI", "BALLAST_MODEL_DIGEST", "BALLAST_MODEL_VERSION")
                ]
            ),
            True,
            id="each variable mapped from its own key reads it",
        ),
        pytest.param(
            container([FROM_RELEASE], [key_ref("BALLAST_MODEL_URI", "rel-model", "BALLAST_MODEL_DIGEST")]),
            False,
            id="a variable mapped from another key does not",
        ),
        pytest.param(
            container([FROM_RELEASE], [client.V1EnvVar(name="BALLAST_MODEL_URI", value="s3://b/old.pt")]),
            False,
            id="a variable set in the spec wins over envFrom",
        ),
        pytest.param(container(), False, id="a container without any of it does not"),
    ],
)
def test_a_container_reads_the_release_only_when_nothing_else_sets_its_model(spec, reads: bool) -> None:
    assert model_source(spec).reads("rel-model") is reads


def test_a_selector_with_expressions_still_selects_pods() -> None:
    selector = client.V1LabelSelector(
        match_labels={"app": "d"},
        match_expressions=[client.V1LabelSelectorRequirement(key="tier", operator="In", values=["serve", "canary"])],
    )
    assert label_selector(selector) == "app=d,tier in (serve,canary)"


@pytest.mark.parametrize(
    ("owner", "mine"),
    [("d-5d8f7c9b6", True), ("d-canary-5d8f7c9b6", False), ("other-5d8f7c9b6", False)],
    ids=[
        "a pod of the Deployment's ReplicaSet is its own",
        "a pod of a canary with the same labels is not",
        "another's is not",
    ],
)
def test_only_the_deployments_own_pods_are_checked(owner: str, mine: bool) -> None:
    reference = client.V1OwnerReference(api_version="apps/v1", kind="ReplicaSet", name=owner, uid="u")
    pod = client.V1Pod(metadata=client.V1ObjectMeta(name="p", owner_references=[reference]))
    assert _owned_by(pod, "d") is mine


def test_model_source_is_a_plain_value() -> None:
    assert model_source(container([FROM_RELEASE])) == ModelSource(("rel-model",), (), False)
