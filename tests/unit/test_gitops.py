"""Which releases Git owns (ballast.policy.gitops): the CLI must not patch what Argo CD or Flux puts back."""

from __future__ import annotations

import pytest

from ballast.policy.gitops import git_change, git_owner

ARGO_SSA = {"manager": "argocd-controller", "operation": "Apply", "fieldsV1": {"f:spec": {"f:model": {}}}}
KUBECTL = {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsV1": {"f:spec": {"f:model": {}}}}
STATUS_ONLY = {"manager": "kustomize-controller", "operation": "Update", "fieldsV1": {"f:metadata": {}}}


@pytest.mark.parametrize(
    ("metadata", "tool", "source"),
    [
        (
            {"annotations": {"argocd.argoproj.io/tracking-id": "invoices:ballast.dev/ModelRelease:ml/detector"}},
            "Argo CD",
            "Application invoices (argocd.argoproj.io/tracking-id)",
        ),
        ({"labels": {"argocd.argoproj.io/instance": "invoices"}}, "Argo CD", "Application invoices"),
        (
            {"labels": {"kustomize.toolkit.fluxcd.io/name": "ml", "kustomize.toolkit.fluxcd.io/namespace": "flux"}},
            "Flux",
            "Kustomization flux/ml",
        ),
        ({"labels": {"helm.toolkit.fluxcd.io/name": "serving"}}, "Flux", "HelmRelease serving"),
        ({"managedFields": [KUBECTL, ARGO_SSA]}, "Argo CD", "field manager argocd-controller owns spec"),
    ],
    ids=[
        "an Argo CD tracking annotation means Argo CD applies it",
        "an Argo CD instance label means Argo CD applies it",
        "a Flux Kustomization label means Flux applies it",
        "a Flux HelmRelease label means Flux applies it",
        "a GitOps controller owning spec by server-side apply means it applies it",
    ],
)
def test_a_release_applied_by_a_gitops_tool_is_recognised_and_says_by_what(metadata, tool, source):
    owner = git_owner(metadata)
    assert owner is not None and owner.tool == tool and source in owner.source


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"labels": {"app.kubernetes.io/instance": "ballast", "app.kubernetes.io/managed-by": "Helm"}},
        {"managedFields": [KUBECTL]},
        {"managedFields": [STATUS_ONLY]},
        {"annotations": {"argocd.argoproj.io/tracking-id": ""}},
    ],
    ids=[
        "an object without marks is nobody's",
        "Helm's instance label alone is not GitOps",
        "kubectl owning spec is a person",
        "a GitOps controller owning only metadata does not own spec",
        "an empty tracking annotation is no tracking",
    ],
)
def test_a_release_nothing_marks_as_gitops_is_left_to_the_cli(metadata):
    assert git_owner(metadata) is None


def test_the_git_change_names_the_object_the_field_and_both_versions_as_yaml():
    change = git_change("ModelRelease", "ml", "detector", "spec.model", "ft_v1.2", "ft_v1.1")
    assert "ModelRelease ml/detector" in change and "spec.model: ft_v1.2  ->  ft_v1.1" in change
    assert change.endswith("spec:\n  model: ft_v1.1\n")
