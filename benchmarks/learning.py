"""Learning: does a fine-tune learn the new template without forgetting, and what does it take?

    .venv/bin/python benchmarks/learning.py [--sizes 50,100,200,500] [--freeze 10,0] [--mix mixed,only]
        [--anchor 1000] [--unseen 100] [--epochs 10] [--imgsz 256] [--base fixtures/base_v1] [--out benchmarks/results]

For each number of reviewed failures (new samples, `modern` template) x mixed (the seed's table,
limited to the anchor set) or failures only x freeze, one fine-tune from the same base with the
seed's recipe otherwise (10 epochs, SGD lr0 0.001, warmup 1, cosine), run and gated exactly as in
production (`ballast-trainer train`, then `gate`, real MinIO). Measured: detection rate on the new
documents trained on and on `--unseen` new-template pages no run trains on; mAP50 drop on the
original held-out test set. Written as `learning.json`, `learning.md` (a table) and
`learning.png`. A benchmark run by hand (hours of CPU at full size): never a timed test.
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
from ballast.api.params import GateThresholds, Mixing, NewSampleGate, TrainingParams
from ballast.policy.mixing import draw_old_samples, old_sample_count
from ballast_dev.cluster import plane
from ballast_dev.testing.datasets import put_base, write_anchor, write_pool_samples
from ballast_dev.testing.trainer import bench_plan, put_plan, trainer_argv

ROOT = Path(__file__).resolve().parents[1]
UNSEEN_OFFSET = 100_000  # the unseen pages' indices: never among the trained ones


def run_one(store, env, scratch: Path, name: str, plan: RunPlan) -> GateReport:  # type: ignore[no-untyped-def]
    planned = put_plan(store, plan)
    with (scratch / f"{name}.log").open("w") as log:
        for stage in ("train", "gate"):
            # The failures-only rows measure what the seed forbids: the trainer refuses them without this flag.
            extra = ("--unmixed-experiment",) if stage == "train" and not plan.old_samples else ()
            argv = trainer_argv(stage, planned, *extra)
            subprocess.run(argv, env=env, check=True, stdout=log, stderr=subprocess.STDOUT)
    return GateReport.model_validate_json(store.get(layout.RunArtifacts(plan.run, plan.run_uid).gate_report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,100,200,500")
    parser.add_argument("--freeze", default="10,0")
    parser.add_argument("--mix", default="mixed,only", help="mixed (the seed's table), only (failures only)")
    parser.add_argument("--lr0", type=float, default=0.001, help="the seed's 0.001")
    parser.add_argument("--anchor", type=int, default=1000)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--unseen", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--base", type=Path, default=ROOT / "fixtures" / "base_v1")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    freezes = [int(f) for f in args.freeze.split(",")]
    mixes = [m == "mixed" for m in args.mix.split(",")]
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as scratch:
        info = plane.up(Path(scratch) / "cluster", log=lambda _m: None)
        try:
            Minio(info.minio_endpoint, info.minio_access_key, info.minio_secret_key, secure=False).make_bucket("bench")
            store = ObjectStore(
                info.minio_endpoint, info.minio_access_key, info.minio_secret_key, "bench", secure=False
            )
            anchor = write_anchor(store, train=args.anchor, test=args.test, size=args.imgsz)
            failures = write_pool_samples(store, "bench", range(max(sizes)), size=args.imgsz, workers=16)
            unseen = write_pool_samples(
                store, "unseen", range(UNSEEN_OFFSET, UNSEEN_OFFSET + args.unseen), size=args.imgsz, workers=16
            )
            base = put_base(store, args.base)
            env = dict(os.environ, **info.env())
            for freeze in freezes:
                for size in sizes:
                    new = failures[:size]
                    mix = old_sample_count(size, Mixing())
                    count = min(mix.old_samples, len(anchor.train))
                    drawn = set(draw_old_samples([r.image for r in anchor.train], count, seed=size))
                    for mixed in mixes:
                        old = [r for r in anchor.train if r.image in drawn] if mixed else []
                        name = f"n{size}-{'mixed' if mixed else 'only'}-freeze{freeze}"
                        plan = bench_plan(
                            name,
                            base,
                            TrainingParams(
                                epochs=args.epochs, imgsz=args.imgsz, batch=16, gpus=0, freeze=freeze, lr0=args.lr0
                            ),
                            seed=size,
                            new_samples=new,
                            held_out_samples=unseen,
                            old_samples=old,
                            mixing_rule=mix.rule if mixed else "failures only",
                            gates=GateThresholds(new_samples=NewSampleGate(judge_on="heldOut")),
                        )
                        started = time.monotonic()
                        gate = run_one(store, env, Path(scratch), name, plan)
                        row = {
                            "new": size,
                            "mixed": mixed,
                            "old": len(old),
                            "freeze": freeze,
                            "base_map50": gate.base_map50,
                            "map50": gate.candidate_map50,
                            "drop_points": gate.map50_drop,
                            "detection_trained": gate.trained_detection_rate,
                            "detection_unseen": gate.held_out_detection_rate,
                            "base_detection_unseen": gate.base_detection_rate,
                            "gate1": gate.gates[0].verdict,
                            "gate2": gate.gates[1].verdict,
                            "seconds": round(time.monotonic() - started, 1),
                        }
                        rows.append(row)
                        print(json.dumps(row), flush=True)
                        write(args, rows)  # after every row: a long run stopped early keeps what it measured
        except subprocess.CalledProcessError:
            for path in Path(scratch).glob("*.log"):
                print(path.read_text()[-4000:], file=sys.stderr)
            raise
        finally:
            plane.down(Path(scratch) / "cluster", log=lambda _m: None)


def write(args: argparse.Namespace, rows: list[dict[str, object]]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) for k, v in vars(args).items()}
    (args.out / "learning.json").write_text(json.dumps({"args": settings, "rows": rows}, indent=2) + "\n")
    lines = [
        "| new | mix | old | freeze | det. trained | det. unseen | mAP50 drop (pts) | Gate 1 | Gate 2 | s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['new']} | {'mixed' if r['mixed'] else 'failures only'} | {r['old']} | {r['freeze']} | "
            f"{r['detection_trained']:.2f} | {r['detection_unseen']:.2f} | {r['drop_points']:.1f} | "
            f"{r['gate1']} | {r['gate2']} | {r['seconds']:.0f} |"
        )
    (args.out / "learning.md").write_text("\n".join(lines) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for freeze in sorted({int(str(r["freeze"])) for r in rows}):
        for mixed in (True, False):
            chosen = [r for r in rows if r["freeze"] == freeze and r["mixed"] is mixed]
            label = f"{'mixed' if mixed else 'failures only'}, freeze {freeze}"
            sizes = [r["new"] for r in chosen]
            axes[0].plot(sizes, [r["detection_unseen"] for r in chosen], marker="o", label=label)
            axes[1].plot(sizes, [r["drop_points"] for r in chosen], marker="o", label=label)
    axes[0].axhline(0.8, linestyle="--", color="black")
    axes[0].set_title("Detection rate on unseen new-template pages")
    axes[1].axhline(1.0, linestyle="--", color="black")
    axes[1].set_title("mAP50 drop on the original test set (points)")
    for axis in axes:
        axis.set_xlabel("reviewed failures (new samples)")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(args.out / "learning.png", dpi=110)


if __name__ == "__main__":
    main()
