"""Running `ballast-trainer` by hand, as the operator's Jobs run it: the plan written where the
layout says, and its digest on the command line (the trainer refuses any other plan)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.common import ModelRef
from ballast.api.contracts import RunPlan, canonical_json
from ballast.api.params import GateThresholds, RebaseParams, TrainingParams
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import TEST_MANIFEST

TRAINER = str(Path(sys.executable).parent / "ballast-trainer")


def put_plan(store: ObjectStore, plan: RunPlan) -> tuple[str, str]:
    """Write `plan` under its run's prefix; return its URI and digest."""
    key = layout.RunArtifacts(plan.run, plan.run_uid).plan
    digest = store.put(key, canonical_json(plan), "application/json")
    return store.uri(key), digest


def trainer_argv(stage: str, plan: tuple[str, str], *extra: str) -> list[str]:
    uri, digest = plan
    return [TRAINER, stage, "--plan", uri, "--plan-digest", digest, *extra]


def bench_plan(run: str, base: ModelRef, training: TrainingParams, **fields: Any) -> RunPlan:
    """A FineTune plan in the `bench` bucket, as benchmarks write one by hand; `fields` override."""
    defaults: dict[str, Any] = {
        "run": run,
        "run_uid": "bench",
        "pool": "bench",
        "kind": "FineTune",
        "bucket": "bench",
        "classes": list(CLASSES),
        "base_model": base,
        "new_version": "ft_v1.1",
        "test_manifest": TEST_MANIFEST,
        "training": training,
        "rebase": RebaseParams(),
        "gates": GateThresholds(),
    }
    return RunPlan(**(defaults | fields))
