"""The real node: these tests get a cluster of their own whose node is a kubelet on containerd and
runc, with the images `scripts/build-images` built imported (no registry, no pull). Every pod here
is a real container, with the chart's security context enforced by the runtime.

The fixtures of tests/conftest.py that depend on the cluster are redefined here with the package's
scope, so that nothing cached for the node agent's cluster is reused against this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import admin_client, write_fixture_data


@pytest.fixture(scope="package")
def images() -> dict:
    """Both images, built once (a cached build takes a fraction of a second)."""
    from ballast_dev.images import build as images
    from ballast_dev.images import recipe

    return {name: images.build(recipe.RECIPES[name]) for name in recipe.RECIPES}


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory, images) -> Iterator:
    from ballast_dev.cluster import plane

    info = plane.up(
        tmp_path_factory.mktemp("kubelet-cluster"),
        node_kind="kubelet",
        capacity={"nvidia.com/gpu": "1"},
        log=lambda _m: None,
    )
    yield info
    problems = plane.down(Path(info.state_dir), log=lambda _m: None)
    assert not problems, problems


@pytest.fixture(scope="package")
def kube(cluster):
    yield from admin_client(cluster)


@pytest.fixture(scope="package")
def fixture_data(cluster) -> dict:
    return write_fixture_data(cluster)
