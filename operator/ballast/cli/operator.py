"""`ballast operator`: run the reconcilers (out of cluster with a kubeconfig, or in a pod).

The trainer image (`--trainer-image` / BALLAST_TRAINER_IMAGE, the chart's `trainer.image`, pinned by
digest in production) is the only code the training and gate Jobs run: no resource chooses it.

Timing (each also from the environment, as the chart sets it):
  --workers / BALLAST_WORKERS                       reconciles in parallel (default 4)
  --pool-resync-seconds / BALLAST_POOL_RESYNC_SECONDS  re-list each pool's object store this often, for
                                                    samples written without `ballast samples` (default 300)
  --store-retry-seconds / BALLAST_STORE_RETRY_SECONDS  retry an unreachable object store this soon (default 5)
Nothing else is periodic: the operator reacts to watch events and wakes only for what waits on time.
"""

from __future__ import annotations

import argparse
import os

from ballast.cli import logs
from ballast.handlers import Settings, run_operator


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "operator", help="run the operator", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
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
    run.add_argument(
        "--http-host", default="0.0.0.0", help="listen here (and --liveness's host): 0.0.0.0, or the pod's own IP"
    )
    defaults = Settings()
    run.add_argument("--trainer-image", default=os.environ.get("BALLAST_TRAINER_IMAGE", defaults.trainer_image))
    run.add_argument("--workers", type=int, default=int(_env("BALLAST_WORKERS", defaults.workers)))
    run.add_argument(
        "--pool-resync-seconds", type=float, default=_env("BALLAST_POOL_RESYNC_SECONDS", defaults.pool_resync_seconds)
    )
    run.add_argument(
        "--store-retry-seconds", type=float, default=_env("BALLAST_STORE_RETRY_SECONDS", defaults.store_retry_seconds)
    )
    run.add_argument("--log-level", choices=list(logs.LEVELS), default="info")
    run.add_argument("--log-format", choices=list(logs.FORMATS), default="text", help="json: one object per line")
    run.add_argument("--verbose", action="store_true", help="the same as --log-level=debug")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    logs.configure("debug" if args.verbose else args.log_level, args.log_format)
    run_operator(
        namespaces=args.namespace,
        clusterwide=args.all_namespaces or not args.namespace,
        standalone=args.standalone,
        peering=args.peering,
        liveness=args.liveness,
        http_port=args.http_port,
        http_host=args.http_host,
        settings=Settings(
            trainer_image=args.trainer_image,
            workers=args.workers,
            pool_resync_seconds=args.pool_resync_seconds,
            store_retry_seconds=args.store_retry_seconds,
        ),
    )
    return 0
