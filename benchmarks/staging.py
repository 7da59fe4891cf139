"""Trainer cost: dataset staging from MinIO on loopback, and the trainer's overhead share of a run.

    .venv/bin/python benchmarks/staging.py [--images 3000] [--size 640]

Targets (issue 4): staging >= 50 MB/s for 3,000 images; everything but Ultralytics' own train and
val under 10% of a run's wall time (read from the trainer's lineage timings of a real fine-tune).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minio import Minio

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.contracts import Lineage, digest_bytes
from ballast.api.params import TrainingParams
from ballast.api.samples import SampleRef
from ballast_dev.cluster import plane
from ballast_dev.synth import render
from ballast_dev.testing.datasets import put_base, write_anchor, write_pool_samples
from ballast_dev.testing.trainer import bench_plan, put_plan, trainer_argv

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument(
        "--photo-like",
        action="store_true",
        help="add sensor-like noise so PNGs weigh what scanned pages do (~1 MB) instead of ~11 KB",
    )
    parser.add_argument("--skip-overhead", action="store_true")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "trainer-image"))
    from ballast_trainer import dataset

    report: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster", log=lambda _m: None)
        try:
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("bench")
            store = ObjectStore(
                info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "bench", secure=False
            )
            # A few distinct pages, uploaded under many keys: staging cost does not depend on content.
            pages = [render("classic", i, args.size) for i in range(20)]
            if args.photo_like:
                import numpy as np
                from PIL import Image

                rng = np.random.default_rng(0)
                for page in pages:
                    pixels = np.asarray(page.image, dtype=np.int16) + rng.integers(-12, 13, (args.size, args.size, 3))
                    page.image.paste(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)))
            blobs = [(p.png(), p.label_text().encode()) for p in pages]

            def put(index: int) -> SampleRef:
                image, label = blobs[index % len(blobs)]
                store.put(f"anchor/big/{index:06d}/image.png", image)
                store.put(f"anchor/big/{index:06d}/label.txt", label)
                return SampleRef(
                    image=f"anchor/big/{index:06d}/image.png",
                    image_digest=digest_bytes(image),
                    label_digest=digest_bytes(label),
                )

            with ThreadPoolExecutor(16) as pool:
                refs = list(pool.map(put, range(args.images)))
            staged = dataset.stage(store, refs, Path(scratch) / "stage", "train")
            report["staging"] = {
                "images": staged.images,
                "megabytes": round(staged.bytes / 1e6, 1),
                "seconds": round(staged.seconds, 2),
                "mb_per_second": round(staged.mb_per_second, 1),
            }
            print(json.dumps(report), flush=True)
            if args.skip_overhead:
                return

            # Overhead share: a real fine-tune (3 epochs, 50 new + 400 old at 256 px).
            anchor = write_anchor(store, train=400, test=40)
            failures = write_pool_samples(store, "bench", range(50))
            base = put_base(store)
            plan = bench_plan(
                "overhead",
                base,
                TrainingParams(epochs=3, imgsz=256, gpus=0),
                seed=1,
                new_samples=failures,
                old_samples=anchor.train,
                mixing_rule="bench",
            )
            files = layout.RunArtifacts(plan.run, plan.run_uid)
            planned = put_plan(store, plan)
            env = dict(os.environ, **info.env())
            started = time.monotonic()
            subprocess.run(
                trainer_argv("train", planned),
                env=env,
                check=True,
                capture_output=True,
            )
            process_seconds = time.monotonic() - started
            lineage = Lineage.model_validate_json(store.get(files.lineage))
            run_seconds = (lineage.finished_at - lineage.started_at).total_seconds()
            train = lineage.seconds.get("train", 0.0)
            report["overhead"] = {
                "run_seconds": round(run_seconds, 1),
                "ultralytics_train_seconds": round(train, 1),
                "overhead_seconds": round(run_seconds - train, 1),
                "overhead_share": round((run_seconds - train) / run_seconds, 4),
                "process_seconds_including_python_start": round(process_seconds, 1),
                "stages": lineage.seconds,
            }
        finally:
            plane.down(Path(scratch) / "cluster", log=lambda _m: None)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
