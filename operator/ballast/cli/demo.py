"""`ballast demo`: the whole continuous fine-tuning loop on the local cluster."""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the continuous fine-tuning loop locally", description=__doc__)
    demo.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    demo.set_defaults(handler=run)


def run(_args: argparse.Namespace) -> int:
    print(
        "ballast demo is not built yet: it needs the operator and trainer (issues 4, 5 and 8).\n"
        "What works today: `ballast cluster up` starts the local cluster.",
        file=sys.stderr,
    )
    return 2
