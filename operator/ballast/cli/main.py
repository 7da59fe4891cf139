"""The `ballast` command.

ballast cluster up|down|env|status|logs POD|build   the local cluster (see `ballast cluster -h`)
ballast demo                                      the whole continuous fine-tuning loop, locally
"""

from __future__ import annotations

import argparse
import sys

from ballast.cli import cluster, demo, operator, people, serve


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="ballast", description="Continuous fine-tuning of YOLO detectors, safely.")
    commands = root.add_subparsers(dest="command", required=True)
    cluster.register(commands)
    demo.register(commands)
    operator.register(commands)
    people.register(commands)
    serve.register(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the server parses its own flags
        from ballast.serve.server import main as serve_main

        return serve_main(argv[1:])
    args = parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
