"""`ballast serve`: the reference inference server (see ballast.serve.server)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="serve a model: /predict, /feedback, /metrics", add_help=False)
    serve.add_argument("rest", nargs=argparse.REMAINDER)
    serve.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from ballast.serve.server import main

    return main(args.rest)
