"""Forgetting: fine-tune one base on the failure samples alone versus failures plus the seed's mix.

    .venv/bin/python benchmarks/forgetting.py [--failures 60] [--anchor 1200] [--epochs 10] [--imgsz 256]

Both fine-tunes start from fixtures/base_v1 (trained on the `classic` family) with the seed's
recipe (10 epochs, SGD lr0 0.001, freeze 10, warmup 1, cosine LR) on `modern` failure samples; the
mixed one adds the seed's old-sample draw from the anchor set. Each is gated exactly as in
production (`ballast-trainer train` then `gate`, real MinIO). Expected shape: the unmixed fine-tune
forgets the original documents (Gate 1 rejects); the mixed one passes both gates.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minio import Minio

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.contracts import GateReport, RunPlan
from ballast.api.params import GateThresholds, Mixing, RebaseParams, TrainingParams
from ballast.policy.mixing import draw_old_samples, old_sample_count
from ballast_dev.cluster import plane
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import TEST_MANIFEST, put_base, write_anchor, write_pool_samples
from ballast_dev.testing.trainer import put_plan, trainer_argv

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failures", type=int, default=60)
    parser.add_argument("--anchor", type=int, default=1200)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=256)
    args = parser.parse_args()
    report: dict[str, object] = {"args": vars(args)}
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster", log=lambda _m: None)
        try:
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("bench")
            store = ObjectStore(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "bench")
            anchor = write_anchor(store, train=args.anchor, test=args.test)
            failures = write_pool_samples(store, "bench", range(args.failures))
            base = put_base(store)
            mix = old_sample_count(args.failures, Mixing())
            count = min(mix.old_samples, len(anchor.train))
            drawn = set(draw_old_samples([r.image for r in anchor.train], count, seed=1))
            env = dict(os.environ, **info.env())
            for name, old in (("failures-only", []), ("seed-mix", [r for r in anchor.train if r.image in drawn])):
                plan = RunPlan(
                    run=name,
                    run_uid="bench",
                    pool="bench",
                    kind="FineTune",
                    bucket="bench",
                    classes=list(CLASSES),
                    base_model=base,
                    new_version="ft_v1.1",
                    seed=1,
                    new_samples=failures,
                    old_samples=old,
                    test_manifest=TEST_MANIFEST,
                    mixing_rule=mix.rule if old else "no old data",
                    training=TrainingParams(epochs=args.epochs, imgsz=args.imgsz, batch=16, gpus=0),
                    rebase=RebaseParams(),
                    gates=GateThresholds(),
                )
                files = layout.RunArtifacts(plan.run, plan.run_uid)
                planned = put_plan(store, plan)
                started = time.monotonic()
                log = (Path(scratch) / f"{name}.log").open("w")
                for stage in ("train", "gate"):
                    subprocess.run(
                        trainer_argv(stage, planned),
                        env=env,
                        check=True,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                gate = GateReport.model_validate_json(store.get(files.gate_report))
                report[name] = {
                    "new": len(failures),
                    "old": len(old),
                    "seconds": round(time.monotonic() - started, 1),
                    "base_map50": gate.base_map50,
                    "candidate_map50": gate.candidate_map50,
                    "gate1_drop_points": gate.map50_drop,
                    "gate1": gate.gates[0].verdict,
                    "detection_rate": gate.detection_rate,
                    "base_detection_rate": gate.base_detection_rate,
                    "gate2": gate.gates[1].verdict,
                    "verdict": gate.verdict,
                }
                print(json.dumps({name: report[name]}), flush=True)
        except subprocess.CalledProcessError:
            for path in Path(scratch).glob("*.log"):
                print(path.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            plane.down(Path(scratch) / "cluster", log=lambda _m: None)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
