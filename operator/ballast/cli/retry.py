"""`ballast runs retry RUN`: a failed or rejected run, tried again on the same samples."""

from __future__ import annotations

import argparse
from typing import Any

from ballast.cli.errors import NotFound, Refused, from_failure


def runs_retry(args: argparse.Namespace, kube: Any, namespace: str) -> int:
    from ballast.adapters.kube import ApiException, create_custom, get_custom, list_custom
    from ballast.api.finetunepool import FineTunePoolSpec, FineTunePoolStatus
    from ballast.api.finetunerun import TERMINAL_PHASES, FineTuneRunSpec, FineTuneRunStatus
    from ballast.policy.retry import build_retry, retry_refusal

    run = get_custom(kube, namespace, "finetuneruns", args.run)
    if run is None:
        raise NotFound(f"FineTuneRun {args.run} not found in namespace {namespace}")
    spec = FineTuneRunSpec.model_validate(run["spec"])
    status = FineTuneRunStatus.model_validate(run.get("status") or {})
    pool = get_custom(kube, namespace, "finetunepools", spec.pool)
    if pool is None:
        raise NotFound(f"FineTunePool {spec.pool} not found in namespace {namespace}")
    runs = list_custom(kube, namespace, "finetuneruns")
    active = [
        r["metadata"]["name"]
        for r in runs
        if r.get("spec", {}).get("pool") == spec.pool and (r.get("status") or {}).get("phase") not in TERMINAL_PHASES
    ]
    refusal = retry_refusal(args.run, status, (spec.snapshot or status.snapshot) is not None, active)
    if refusal:
        raise Refused(refusal)
    pool_state = (
        pool["metadata"]["uid"],
        FineTunePoolSpec.model_validate(pool["spec"]),
        FineTunePoolStatus.model_validate(pool.get("status") or {}),
    )
    body = build_retry(args.run, spec, status, {r["metadata"]["name"] for r in runs}, pool_state)
    try:
        create_custom(kube, namespace, "finetuneruns", body)
    except ApiException as error:
        raise from_failure(error, "the apiserver did not accept the retry") from None
    snapshot = spec.snapshot or status.snapshot
    assert snapshot is not None
    print(f"created {body['metadata']['name']}: retries {args.run} on the same {snapshot.sample_count} samples")
    return 0
