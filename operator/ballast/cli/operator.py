"""`ballast operator`: run the reconcilers (out of cluster with a kubeconfig, or in a pod)."""

from __future__ import annotations

import argparse
import logging


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("operator", help="run the operator", description=__doc__)
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace")
    run.add_argument(
        "--standalone",
        action="store_true",
        help="no peering: run even if another operator is active (out-of-cluster development)",
    )
    run.add_argument("--peering", default="ballast", help="KopfPeering name that elects one active replica")
    run.add_argument("--liveness", default=None, help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--http-port",
        type=int,
        default=None,
        help="serve /metrics and the Alertmanager webhook (/alerts) on this port (0: any free port)",
    )
    run.add_argument("--http-host", default="0.0.0.0")
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    import kopf

    import ballast.handlers  # noqa: F401  (registers the handlers)

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    kopf.run(
        standalone=args.standalone,
        peering_name=None if args.standalone else args.peering,
        clusterwide=args.all_namespaces or not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(http_port=args.http_port, http_host=args.http_host),
    )
    return 0
