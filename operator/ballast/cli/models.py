"""`ballast models import-base`: bring a team's own base (say, trained on their 25K documents) into a
pool, through the one verified path besides a gated Rebase.

    ballast models import-base POOL --weights best.pt --version base_v1 [--source "25K training, 2026-10"]

The weights are checked without being unpickled (only model classes may appear in them), stored
once under `models/<pool>/<version>/` with a lineage that says they were imported, by whom, and
from what; the command prints the `baseModel` block to put in the pool's spec (in Git).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from ballast.api import layout
from ballast.api.common import BASE_VERSION_PATTERN
from ballast.api.contracts import Lineage, canonical_json, digest_bytes
from ballast.cli.errors import UsageError
from ballast.policy.checkpoints import checkpoint_refusal


def register(commands: argparse._SubParsersAction) -> None:
    models = commands.add_parser("models", help="models of a pool").add_subparsers(dest="verb", required=True)
    base = models.add_parser("import-base", help="store your own base weights (checked) for a pool")
    base.add_argument("pool")
    base.add_argument("--weights", type=Path, required=True, help="an Ultralytics checkpoint (.pt)")
    base.add_argument("--version", required=True, help="its version name, base_v<N>")
    base.add_argument("--source", default="imported", help="where the weights come from (recorded in the lineage)")
    base.add_argument("-n", "--namespace", default=None)
    base.set_defaults(handler=_import_base)


def _import_base(args: argparse.Namespace) -> int:
    import re

    from ballast.cli.people import _kube, _namespace, _pool

    if not re.fullmatch(BASE_VERSION_PATTERN, args.version):
        print(f"refused: --version {args.version!r} is not base_v<N>", file=sys.stderr)
        return 1
    try:
        data = args.weights.read_bytes()
    except OSError as error:
        raise UsageError(f"--weights {args.weights}: cannot be read ({error.strerror or error})") from None
    refusal = checkpoint_refusal(data)
    if refusal:
        print(f"refused: {args.weights}: {refusal}", file=sys.stderr)
        return 1
    kube = _kube()
    from ballast.adapters.kube import whoami

    _, _spec, store = _pool(kube, _namespace(args), args.pool)
    key = layout.released_model(args.pool, args.version)
    if store.exists(key):
        print(f"refused: {args.version} already exists for pool {args.pool}; models are immutable", file=sys.stderr)
        return 1
    digest = digest_bytes(data)
    now = datetime.now(UTC)
    lineage = Lineage(
        model_version=args.version,
        plan_digest=None,
        params={"imported": True, "source": args.source[:256], "importedBy": whoami(kube).username},
        seed=0,
        libraries={},
        started_at=now,
        finished_at=now,
        seconds={},
    )
    store.put(layout.beside(key, "lineage.json"), canonical_json(lineage), "application/json")
    store.put(key, data)  # last: the weights' presence means the folder is complete
    print(_base_model_block(args.version, store.uri(key), digest))
    return 0


def _base_model_block(version: str, uri: str, digest: str) -> str:
    block = ["# put this in the FineTunePool's spec (in Git):", "baseModel:", f"  version: {version}"]
    return "\n".join([*block, f"  uri: {uri}", f"  digest: {digest}"])
