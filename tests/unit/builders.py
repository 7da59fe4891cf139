"""Fixture builders: a valid object with the seed's defaults, overridden by keyword."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ballast.api.contracts import SampleRecord
from ballast.api.finetunepool import FineTunePoolSpec

DIGEST = "sha256:" + "ab" * 32
T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def a_pool_spec(**overrides: Any) -> FineTunePoolSpec:
    wire: dict[str, Any] = {
        "classes": ["title", "date", "total"],
        "objectStore": {
            "endpoint": "127.0.0.1:9000",
            "bucket": "ballast",
            "credentialsSecretRef": {"name": "store-credentials"},
        },
        "anchor": {"trainManifest": "anchor/train.txt", "testManifest": "anchor/test.txt"},
        "baseModel": {"version": "base_v1", "uri": "s3://ballast/models/base_v1.pt", "digest": DIGEST},
    }
    wire.update(overrides)
    return FineTunePoolSpec.model_validate(wire)


def a_sample_record(sample_id: str = "doc-1") -> SampleRecord:
    """A valid SampleRecord; only the id varies (it is also the sample's folder name)."""
    return SampleRecord(
        id=sample_id,
        document_id="d",
        reported_by="u",
        reported_at=T0,
        reviewed_by="r",
        reviewed_at=T0,
        label_source="ballast-cli",
        image_file="image.png",
        image_digest=DIGEST,
        label_digest=DIGEST,
        boxes=1,
    )
