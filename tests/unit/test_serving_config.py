"""The release's ConfigMap and the one Deployment field the operator owns (ballast.policy.servingconfig)."""

from __future__ import annotations

from ballast.policy.servingconfig import checksum, config_map_name, deployment_roll, model_config_map

from .builders import T0, a_model


def test_the_config_map_holds_the_models_variables_and_names_its_release_without_owning_references() -> None:
    body = model_config_map("detector", a_model(), T0, {"ballast.dev/model-release": "detector"})
    assert body["metadata"]["name"] == config_map_name("detector") == "detector-model"
    assert body["data"] == {
        "BALLAST_MODEL_URI": a_model().uri,
        "BALLAST_MODEL_DIGEST": a_model().digest,
        "BALLAST_MODEL_VERSION": "ft_v1.1",
    }
    assert body["metadata"]["labels"] == {"ballast.dev/model-release": "detector"}
    # No ownerReference: deleting the release (a prune, a rename) must not take the model from the pods.
    assert "ownerReferences" not in body["metadata"]
    assert body["metadata"]["annotations"]["ballast.dev/written-at"] == T0.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_operator_owns_only_two_pod_template_annotations_of_the_deployment() -> None:
    body = deployment_roll("detector", a_model())
    assert body["spec"] == {
        "template": {
            "metadata": {
                "annotations": {"ballast.dev/model": "ft_v1.1", "ballast.dev/model-checksum": checksum(a_model())}
            }
        }
    }


def test_the_checksum_changes_with_the_model_so_the_pods_roll() -> None:
    assert checksum(a_model("ft_v1.1")) != checksum(a_model("ft_v1.2"))
    assert checksum(a_model("ft_v1.1", "sha256:" + "1" * 64)) != checksum(a_model("ft_v1.1", "sha256:" + "2" * 64))
    assert checksum(a_model()) == checksum(a_model())
