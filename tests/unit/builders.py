"""Fixture builders: a valid object with the seed's defaults, overridden by keyword."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ballast.api.common import ModelRef
from ballast.api.contracts import SampleRecord
from ballast.api.finetunepool import FineTunePoolSpec
from ballast.api.finetunerun import FineTuneRunSpec
from ballast.policy.finetunepool import run_number
from ballast.policy.finetunerun import RunSummary

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


BASE = {"version": "base_v1", "uri": "s3://ballast/models/base_v1.pt", "digest": DIGEST}


def a_model(version: str = "ft_v1.1", digest: str = DIGEST) -> ModelRef:
    return ModelRef(version=version, uri=f"s3://ballast/runs/r/{version}/model.pt", digest=digest)


def a_run_summary(name: str = "p-run-1", **overrides: Any) -> RunSummary:
    """A run of pool `p`: a finished, passed fine-tune of 50 samples unless overridden."""
    fields: dict[str, Any] = {
        "name": name,
        "number": run_number("p", name),
        "kind": "FineTune",
        "phase": "Succeeded",
        "verdict": "Pass",
        "approved_by": None,
        "sample_count": 50,
        "model": a_model(),
        "base_version": "base_v1",
        "created": T0,
        "report_uri": "s3://ballast/runs/r/gate-report.json",
    }
    fields.update(overrides)
    return RunSummary(**fields)


def a_run_spec(**overrides: Any) -> FineTuneRunSpec:
    wire: dict[str, Any] = {
        "pool": "p",
        "baseModel": BASE,
        "snapshot": {"sampleCount": 50, "manifestDigest": DIGEST},
    }
    wire.update(overrides)
    return FineTuneRunSpec.model_validate(wire)
