"""`ballast-trainer`: the entrypoints run inside Ballast's training and gate Jobs.

    ballast-trainer train  --plan s3://.../plan.json --plan-digest sha256:...   fine-tune from the base
    ballast-trainer rebase --plan ... --plan-digest ...                         train a new base
    ballast-trainer gate   --plan ... --plan-digest ...                         Gates 1-3 -> GateReport
    ballast-trainer serve  [--host H --port P --imgsz N]                  the reference inference server

The object store comes from BALLAST_S3_ENDPOINT, BALLAST_S3_SECURE (default true), BALLAST_S3_REGION,
BALLAST_S3_CA_FILE and the keys BALLAST_S3_ACCESS_KEY, BALLAST_S3_SECRET_KEY (without them: the pod's
IAM role or AWS_* variables). The trainer never touches any other network address than the store's
(and, with an IAM role, its credential service's).
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the server parses its own flags
        from ballast_trainer.serve import main as serve

        return serve(argv[1:])
    parser = argparse.ArgumentParser(prog="ballast-trainer", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("train", "rebase", "gate"))
    parser.add_argument("--plan", required=True, help="s3:// URI of the run's plan.json")
    parser.add_argument("--plan-digest", required=True, help="the plan's digest: any other plan is refused")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space (default: a temp dir)")
    parser.add_argument(
        "--unmixed-experiment",
        action="store_true",
        help="train: accept a plan without old samples (research only; Ballast's Jobs never pass it)",
    )
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"ballast-{args.stage}-", dir=os.environ.get("TMPDIR")))
    # Imported after argument parsing: they are heavy, and `--help` should be instant.
    from ballast_trainer import gate, train
    from ballast_trainer.common import main_guard

    body = {
        "train": functools.partial(train.train, unmixed_experiment=args.unmixed_experiment),
        "rebase": train.rebase,
        "gate": gate.gate,
    }[args.stage]
    return main_guard(args.stage, body, args.plan, args.plan_digest, workdir)


if __name__ == "__main__":
    sys.exit(main())
