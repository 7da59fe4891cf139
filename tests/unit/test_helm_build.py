"""The local cluster's helm is stamped as Helm's release is: its version, and the Kubernetes version
its client-go implies (unstamped, `helm template` assumes v1.20 and fails `kubeVersion: >=1.30`)."""

from __future__ import annotations

import pytest

from ballast_dev.cluster import build

GOMOD = "module helm.sh/helm/v3\n\nrequire (\n\tk8s.io/api v0.37.0\n\tk8s.io/client-go v0.37.2\n)\n"


@pytest.mark.parametrize(
    ("flag"),
    [
        "-X helm.sh/helm/v3/internal/version.version=v3.22.0",
        "-X helm.sh/helm/v3/internal/version.metadata=",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37",
    ],
    ids=[
        "the helm version is stamped in full",
        "no 'unreleased' metadata is added",
        "templates see Kubernetes major 1",
        "templates see the minor version of helm's client-go",
        "lint sees Kubernetes major 1",
        "lint sees the minor version of helm's client-go",
    ],
)
def test_helm_is_built_with_the_release_version_stamps(flag: str) -> None:
    assert flag in build.helm_ldflags("v3.22.0", GOMOD)


def test_a_helm_go_mod_without_client_go_is_refused_naming_it() -> None:
    with pytest.raises(RuntimeError, match="k8s.io/client-go"):
        build.helm_ldflags("v3.22.0", "module helm.sh/helm/v3\n")


def test_the_stamped_helm_has_a_cache_name_of_its_own_so_old_caches_rebuild() -> None:
    assert build.binary("helm").name != f"helm-{build.HELM_VERSION}"
