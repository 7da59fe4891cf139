"""The `ballast` command: the operator itself, and the commands people use.

    ballast operator [-n NS | -A]        run the reconcilers
    ballast samples add|import ...       add human-verified samples to a pool
    ballast inbox export POOL ...        failure reports out as review tasks (Label Studio, CVAT)
    ballast runs approve RUN ...         approve a Review verdict
    ballast release rollback RELEASE     go back to an earlier released model
    ballast status [-o table|json|yaml]  pools, runs and releases at a glance
    ballast models import-base POOL ...  bring your own base weights (checked, with lineage)

Failures are one line on stderr with an exit code (ballast.cli.errors: 2 usage, 3 not found,
4 refused, 5 unreachable, 1 anything else); `--debug` shows the traceback instead.

The development tools (local cluster, demo) are `ballast-dev`; the trainer and `serve` are
`ballast-trainer`, in the trainer image.
"""

from __future__ import annotations

import argparse
import sys

from ballast.cli import inbox, models, operator, people
from ballast.cli.errors import EPILOG, describe


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="ballast",
        description="Continuous fine-tuning of YOLO detectors, safely.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    root.add_argument("--debug", action="store_true", help="show the traceback of a failure, not one line")
    commands = root.add_subparsers(dest="command", required=True)
    operator.register(commands)
    people.register(commands)
    inbox.register(commands)
    models.register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.handler(args) or 0)
    except Exception as error:  # the one place a failure becomes a line and an exit code
        described = None if args.debug else describe(error)
        if described is None:
            raise  # a bug (or --debug): the traceback is what helps
        code, line = described
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
