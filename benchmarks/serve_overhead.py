"""`ballast-trainer serve` overhead per image over a bare Ultralytics predict call, on CPU.

    .venv/bin/python benchmarks/serve_overhead.py [--requests 200] [--imgsz 256]

Target (issue 6): overhead < 5 ms at p50. Both paths predict the same PNG with the same model and
settings in turn; the server runs in its own process and is called over loopback HTTP, so the
overhead counts request parsing, image decoding and validation, metrics and JSON encoding.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from minio import Minio

from ballast.adapters.objectstore import ObjectStore
from ballast.api.contracts import digest_bytes
from ballast_dev.cluster import plane
from ballast_dev.synth import render
from ballast_dev.testing.datasets import BASE_KEY
from ballast_trainer import offline

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--imgsz", type=int, default=256)
    args = parser.parse_args()
    png = render("classic", 1, args.imgsz).png()
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster", log=lambda _m: None)
        server = None
        try:
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("bench")
            store = ObjectStore(
                info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "bench", secure=False
            )
            weights = (ROOT / "fixtures/base_v1/model.pt").read_bytes()
            store.put(BASE_KEY, weights)
            port = plane.free_port()
            env = dict(
                os.environ,
                BALLAST_S3_ENDPOINT=info.minio_endpoint,
                BALLAST_S3_SECURE="false",
                BALLAST_S3_ACCESS_KEY=info.minio_access_key,
                BALLAST_S3_SECRET_KEY=info.minio_secret_key,
                BALLAST_MODEL_URI=store.uri(BASE_KEY),
                BALLAST_MODEL_DIGEST=digest_bytes(weights),
                BALLAST_MODEL_VERSION="base_v1",
                BALLAST_POOL="bench",
            )
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "ballast-trainer"),
                    "serve",
                    "--port",
                    str(port),
                    "--imgsz",
                    str(args.imgsz),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    time.sleep(0.5)

            def via_server() -> float:
                request = urllib.request.Request(
                    f"{url}/predict", data=png, method="POST", headers={"Content-Type": "image/png"}
                )
                started = time.perf_counter()
                with urllib.request.urlopen(request, timeout=30) as response:
                    json.loads(response.read())
                return time.perf_counter() - started

            offline.prepare(Path(scratch) / "bare")
            from PIL import Image
            from ultralytics import YOLO

            (Path(scratch) / "model.pt").write_bytes(weights)
            model = YOLO(str(Path(scratch) / "model.pt"))

            def bare() -> float:
                started = time.perf_counter()
                image = Image.open(io.BytesIO(png)).convert("RGB")
                model.predict(image, imgsz=args.imgsz, conf=0.25, verbose=False)
                return time.perf_counter() - started

            for _ in range(10):  # warm both paths
                via_server()
                bare()
            served, direct = [], []
            for _ in range(args.requests):  # interleaved, so drift in machine load hits both alike
                served.append(via_server())
                direct.append(bare())
            overhead = [s - d for s, d in zip(served, direct, strict=True)]
            report = {
                "requests": args.requests,
                "imgsz": args.imgsz,
                "bare_predict_ms": {
                    "p50": round(statistics.median(direct) * 1000, 2),
                    "p95": round(percentile(direct, 0.95) * 1000, 2),
                },
                "served_ms": {
                    "p50": round(statistics.median(served) * 1000, 2),
                    "p95": round(percentile(served, 0.95) * 1000, 2),
                },
                "overhead_ms": {
                    "p50_of_differences": round(statistics.median(overhead) * 1000, 2),
                    "difference_of_p50s": round((statistics.median(served) - statistics.median(direct)) * 1000, 2),
                },
            }
            print(json.dumps(report, indent=2))
        finally:
            if server:
                server.terminate()
                server.wait(timeout=10)
            plane.down(Path(scratch) / "cluster", log=lambda _m: None)


if __name__ == "__main__":
    main()
