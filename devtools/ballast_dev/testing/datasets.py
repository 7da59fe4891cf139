"""Fill an object store with synthetic data: the anchor set, its held-out test set, pool samples.

Used by tests, benchmarks and the demo. Anchor samples come from the `classic` family; failure
reports (pool samples) from the `modern` family, which a classic-trained base largely misses.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ballast.adapters.objectstore import ObjectStore
from ballast.adapters.pool import NewSample, add_sample, sample_ref
from ballast.api import layout
from ballast.api.common import BaseModelRef
from ballast.api.contracts import digest_bytes
from ballast.api.samples import SampleRef, render_manifest
from ballast_dev import REPO
from ballast_dev.synth import CLASSES, render

BASE_FIXTURE = REPO / "fixtures" / "base_v1"
TRAIN_MANIFEST = layout.ANCHOR_PREFIX + "train.txt"
TEST_MANIFEST = layout.ANCHOR_PREFIX + "test.txt"
# Where the fixtures keep the shipped base (a pool names its base's URI in its spec).
BASE_KEY = "models/base_v1/model.pt"


@dataclass(frozen=True)
class Anchor:
    train: list[SampleRef]
    test: list[SampleRef]


def _put_anchor_sample(store: ObjectStore, split: str, index: int, size: int) -> SampleRef:
    page = render("classic", seed=index if split == "train" else 1_000_000 + index, size=size)
    image, labels = page.png(), page.label_text().encode()
    key = f"{layout.ANCHOR_PREFIX}{split}/{index:06d}"
    store.put(f"{key}/image.png", image, "image/png")
    store.put(f"{key}/label.txt", labels, "text/plain")
    return SampleRef(image=f"{key}/image.png", image_digest=digest_bytes(image), label_digest=digest_bytes(labels))


def write_anchor(store: ObjectStore, train: int, test: int, size: int = 256, workers: int = 8) -> Anchor:
    """The original dataset and its held-out test set, with their manifests."""
    with ThreadPoolExecutor(workers) as pool:
        train_refs = list(pool.map(lambda i: _put_anchor_sample(store, "train", i, size), range(train)))
        test_refs = list(pool.map(lambda i: _put_anchor_sample(store, "test", i, size), range(test)))
    store.put(TRAIN_MANIFEST, render_manifest(train_refs).encode(), "text/plain")
    store.put(TEST_MANIFEST, render_manifest(test_refs).encode(), "text/plain")
    return Anchor(train_refs, test_refs)


def failure_sample(index: int, size: int = 256, family: str = "modern", reviewer: str | None = "reviewer") -> NewSample:
    page = render(family, seed=500_000 + index, size=size)
    reported = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=index)
    return NewSample(
        sample_id=f"doc-{index:06d}",
        image=page.png(),
        labels=page.label_text(),
        document_id=f"DOC-{index:06d}",
        reported_by="user@example.com",
        reported_at=reported,
        reviewed_by=reviewer,
        reviewed_at=reported + timedelta(hours=2) if reviewer else None,
        label_source="generator",
    )


def write_pool_samples(
    store: ObjectStore, pool: str, indices: range, size: int = 256, workers: int = 8, family: str = "modern"
) -> list[SampleRef]:
    """Human-verified failure reports (modern family by default) added through the validated intake."""

    def add(index: int) -> SampleRef:
        record = add_sample(store, pool, failure_sample(index, size, family), len(CLASSES))
        return sample_ref(pool, record)

    with ThreadPoolExecutor(workers) as executor:
        return list(executor.map(add, indices))


def put_base(store: ObjectStore, fixture: Path = BASE_FIXTURE) -> BaseModelRef:
    """The shipped base_v1 (weights beside their lineage) at BASE_KEY."""
    weights = (fixture / "model.pt").read_bytes()
    store.put(BASE_KEY, weights)
    store.put(layout.beside(BASE_KEY, "lineage.json"), (fixture / "lineage.json").read_bytes())
    return BaseModelRef(version="base_v1", uri=store.uri(BASE_KEY), digest=digest_bytes(weights))
