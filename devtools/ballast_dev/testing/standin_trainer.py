"""A fast stand-in for `ballast-trainer`, for the load benchmark only (benchmarks/load.py).

It keeps the trainer's contract with the operator — reads the plan, writes the model, its lineage
and a TrainResult (train, rebase), or a GateReport (gate) where the operator reads them — but trains
nothing, so hundreds of runs finish in seconds and the benchmark measures the operator. Its
"model" is a few bytes and every gate says Pass with reason "stand-in".
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

from ballast.adapters.objectstore import ObjectStore, parse_uri
from ballast.api import layout
from ballast.api.common import ModelRef
from ballast.api.contracts import GateReport, GateResult, Lineage, RunPlan, TrainResult, canonical_json, digest_bytes


def train(store: ObjectStore, plan: RunPlan, plan_digest: str) -> None:
    started = datetime.now(UTC)
    files = layout.RunArtifacts(plan.run, plan.run_uid)
    weights = f"stand-in weights for {plan.run} ({plan.new_version})".encode()
    model_digest = store.put(files.model, weights)
    lineage = Lineage(
        model_version=plan.new_version,
        base_version=plan.base_model.version if plan.base_model else None,
        base_digest=plan.base_model.digest if plan.base_model else None,
        plan_digest=plan_digest,
        params={"standIn": True},
        seed=plan.seed,
        libraries={"ballast-stand-in": "1"},
        started_at=started,
        finished_at=datetime.now(UTC),
        seconds={},
    )
    lineage_digest = store.put(files.lineage, canonical_json(lineage), "application/json")
    result = TrainResult(
        run=plan.run,
        model=ModelRef(version=plan.new_version, uri=store.uri(files.model), digest=model_digest),
        lineage_uri=store.uri(files.lineage),
        lineage_digest=lineage_digest,
        epochs=[],
        seconds=(datetime.now(UTC) - started).total_seconds(),
    )
    store.put(files.train_result, canonical_json(result), "application/json")


def gate(store: ObjectStore, plan: RunPlan) -> None:
    if plan.base_model is None:
        raise ValueError("the gates compare against a base model: the plan names none")
    files = layout.RunArtifacts(plan.run, plan.run_uid)
    result = TrainResult.model_validate_json(store.get(files.train_result))
    report = GateReport(
        run=plan.run,
        candidate=result.model,
        base=plan.base_model,
        base_map50=0.9,
        candidate_map50=0.9,
        map50_drop=0.0,
        drop_unit=plan.gates.regression.unit,
        detection_rate=1.0,
        per_class_detection=[],
        gates=[
            GateResult(name="Gate1Regression", verdict="Pass", reason="stand-in"),
            GateResult(name="Gate2NewSamples", verdict="Pass", reason="stand-in"),
        ],
        verdict="Pass",
    )
    store.put(files.gate_report, canonical_json(report), "application/json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ballast-trainer (stand-in)", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("train", "rebase", "gate"))
    parser.add_argument("--plan", required=True)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args(argv)
    bucket, key = parse_uri(args.plan)
    raw = ObjectStore.from_env(bucket, patience=60).get(key)
    plan = RunPlan.model_validate_json(raw)
    store = ObjectStore.from_env(bucket, plan.prefix, patience=60)
    if args.stage == "gate":
        gate(store, plan)
    else:
        train(store, plan, digest_bytes(canonical_json(plan)))
    print(f"stand-in {args.stage} of {plan.run} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
