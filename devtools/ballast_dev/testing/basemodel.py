"""Reproduce the small base checkpoint shipped in `fixtures/base_v1/` with the project's own trainer.

    .venv/bin/python -m ballast_dev.testing.basemodel [--epochs 40] [--images 240] [--out fixtures/base_v1]

It starts a throw-away local cluster (for MinIO), writes a synthetic `classic` anchor set, runs
`ballast-trainer rebase` on it (yolo11n.yaml from scratch, CPU), and copies the resulting weights
and lineage out. Tests and the demo start from this base instead of spending minutes training one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.contracts import RunPlan
from ballast.api.params import GateThresholds, RebaseParams, TrainingParams
from ballast_dev.cluster import plane
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import TEST_MANIFEST, write_anchor
from ballast_dev.testing.trainer import put_plan, trainer_argv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("fixtures/base_v1"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster")
        try:
            from minio import Minio

            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("base")
            store = ObjectStore(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "base", secure=False)
            anchor = write_anchor(store, train=args.images, test=16, size=args.imgsz)
            plan = RunPlan(
                run="base-v1",
                run_uid="fixture",
                pool="fixtures",
                kind="Rebase",
                bucket="base",
                classes=list(CLASSES),
                new_version="base_v1",
                seed=0,
                new_samples=[],
                old_samples=anchor.train,
                test_manifest=TEST_MANIFEST,
                mixing_rule="all anchor samples (base training)",
                training=TrainingParams(imgsz=args.imgsz, batch=16, gpus=0),
                rebase=RebaseParams(epochs=args.epochs, lr0=0.01),
                gates=GateThresholds(),
            )
            files = layout.RunArtifacts(plan.run, plan.run_uid)
            planned = put_plan(store, plan)
            env = dict(os.environ, **info.env())
            started = time.monotonic()
            subprocess.run(trainer_argv("rebase", planned), env=env, check=True)
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "model.pt").write_bytes(store.get(files.model))
            (args.out / "lineage.json").write_bytes(store.get(files.lineage))
            print(json.dumps({"seconds": round(time.monotonic() - started, 1), "out": str(args.out)}))
        finally:
            plane.down(Path(scratch) / "cluster")


if __name__ == "__main__":
    main()
