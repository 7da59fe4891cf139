"""`ballast demo`: the whole continuous fine-tuning loop on the local cluster (see ballast.demo)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser("demo", help="run the continuous fine-tuning loop locally", description=__doc__)
    demo.add_argument("--keep", action="store_true", help="leave the cluster up and print how to explore it")
    demo.add_argument("--quick", action="store_true", help="one training epoch and less data (what CI runs)")
    demo.add_argument("--state-dir", type=Path, default=None, help="cluster state (default: a fresh temp dir)")
    demo.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ballast.demo import run as demo

    return demo(args.quick, args.keep, args.state_dir)
