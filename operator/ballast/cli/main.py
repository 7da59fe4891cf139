"""The `ballast` command.

ballast cluster up|down|env|status|logs POD|build   the local cluster (see `ballast cluster -h`)
ballast demo                                      the whole continuous fine-tuning loop, locally
"""

from __future__ import annotations

import argparse
import sys

from ballast.cli import cluster, demo, operator, people


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ballast", description="Continuous fine-tuning of YOLO detectors, safely.")
    commands = root.add_subparsers(dest="command", required=True)
    cluster.register(commands)
    demo.register(commands)
    operator.register(commands)
    people.register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
