"""`ballast runs retry RUN`: a failed or rejected run, tried again on the same samples."""

from __future__ import annotations

import argparse
from typing import Any


def runs_retry(args: argparse.Namespace, kube: Any, namespace: str) -> int:
    from ballast.adapters.kube import ApiException, create_custom, get_custom, list_custom
    from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
    from ballast.api.finetunerun import TERMINAL_PHASES, FineTuneRunSpec, FineTuneRunStatus
    from ballast.cli.people import _api_message
    from ballast.policy.retry import build_retry, retry_refusal

    run = get_custom(kube, namespace, "finetuneruns", args.run)
    if run is None:
        raise SystemExit(f"error: FineTuneRun {args.run} not found in namespace {namespace}")
    spec = FineTuneRunSpec.model_validate(run["spec"])
    status = FineTuneRunStatus.model_validate(run.get("status") or {})
    pool = get_custom(kube, namespace, "finetunepools", spec.pool)
    if pool is None:
        raise SystemExit(f"error: FineTunePool {spec.pool} not found in namespace {namespace}")
    runs = list_custom(kube, namespace, "finetuneruns")
    active = [
        r["metadata"]["name"]
        for r in runs
        if r.get("spec", {}).get("pool") == spec.pool and (r.get("status") or {}).get("phase") not in TERMINAL_PHASES
    ]
    refusal = retry_refusal(args.run, status, (spec.snapshot or status.snapshot) is not None, active)
    if refusal:
        raise SystemExit(f"refused: {refusal}")
    pool_state = (
        pool["metadata"]["uid"],
        FineTunePoolSpec.model_validate(pool["spec"]),
        FineTunePoolStatus.model_validate(pool.get("status") or {}),
    )
    body = build_retry(args.run, spec, status, {r["metadata"]["name"] for r in runs}, pool_state)
    try:
        create_custom(kube, namespace, "finetuneruns", body)
    except ApiException as error:
        raise SystemExit(f"refused: the apiserver did not accept the retry: {_api_message(error)}") from None
    snapshot = spec.snapshot or status.snapshot
    assert snapshot is not None
    print(f"created {body['metadata']['name']}: retries {args.run} on the same {snapshot.sample_count} samples")
    return 0
