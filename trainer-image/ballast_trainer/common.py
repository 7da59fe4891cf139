"""What every trainer entrypoint shares: the plan, the store, the offline set-up, errors."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ballast.adapters.objectstore import ObjectStore, parse_uri
from ballast.api import layout
from ballast.api.common import Model
from ballast.api.contracts import RunPlan, StageError, TerminationReport, canonical_json, digest_bytes
from ballast_trainer import offline

# How long a stage waits out an object store that stops answering (a restart, a network blip)
# before it fails: losing a finished training to a one-minute outage at upload time is worse.
STORE_PATIENCE_SECONDS = float(os.environ.get("BALLAST_S3_PATIENCE_SECONDS", "300"))


class Refused(RuntimeError):
    """The plan asks for something the seed's rules forbid; the run fails with this reason."""


class PlanRefused(Refused):
    """The plan in the bucket is not the one on the Job's command line. Nothing in it is trusted,
    so the error is recorded beside the plan's key rather than where the plan says."""

    def __init__(self, message: str, store: ObjectStore, plan_key: str) -> None:
        super().__init__(message)
        self.store = store
        self.plan_key = plan_key


def log(message: str) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} {message}", flush=True)


def artifacts(plan: RunPlan) -> layout.RunArtifacts:
    return layout.RunArtifacts(plan.run, plan.run_uid)


@dataclass
class Context:
    plan: RunPlan
    plan_digest: str
    store: ObjectStore
    workdir: Path
    audit: offline.NetworkAudit
    timings: dict[str, float] = field(default_factory=dict)

    def put_json(self, relative: str, document: Model) -> str:
        return self.store.put(relative, canonical_json(document), "application/json")

    def report_result(self, relative: str, document: Model) -> None:
        """Write the stage's result document, then its key and digest to the container's termination
        message: the operator reads the result only when the bytes it finds match this digest."""
        report = TerminationReport(document=relative, digest=self.put_json(relative, document))
        path = os.environ.get("BALLAST_TERMINATION_LOG")
        if path:
            Path(path).write_bytes(canonical_json(report))
        log(f"result {relative} ({report.digest[:19]}...)")

    def timed(self, stage: str, started: float) -> None:
        self.timings[stage] = round(self.timings.get(stage, 0.0) + time.monotonic() - started, 3)


def open_plan(plan_uri: str, plan_digest: str, workdir: Path) -> Context:
    """Prepare the offline environment, then read the plan and check it is the one the operator
    named on the Job's command line (a plan rewritten in the bucket is refused)."""
    workdir.mkdir(parents=True, exist_ok=True)
    offline.prepare(workdir)
    bucket, key = parse_uri(plan_uri)
    raw_store = ObjectStore.from_env(bucket, patience=STORE_PATIENCE_SECONDS, log=log)
    # The store, and the credential service (STS, instance metadata) when the pod uses its IAM role.
    network = offline.audit(raw_store.hosts())
    raw = raw_store.get(key)
    if digest_bytes(raw) != plan_digest:
        raise PlanRefused(
            f"the plan at {plan_uri} is not the one this Job was given (digest {plan_digest[:19]}...)", raw_store, key
        )
    plan = RunPlan.model_validate(json.loads(raw))
    store = ObjectStore.from_env(bucket, plan.prefix, patience=STORE_PATIENCE_SECONDS, log=log)
    log(
        f"plan {plan.run}: {plan.kind} -> {plan.new_version}, {len(plan.new_samples)} new + "
        f"{len(plan.old_samples)} old samples, seed {plan.seed} ({plan.mixing_rule})"
    )
    return Context(plan, digest_bytes(canonical_json(plan)), store, workdir, network)


def library_versions() -> dict[str, str]:
    import torch
    import ultralytics

    from ballast import __version__

    return {
        "ultralytics": ultralytics.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "ballast": __version__,
    }


def fail(context: Context | None, stage: str, error: BaseException) -> int:
    """Record why the stage failed where the operator reads it, and exit non-zero."""
    message = f"{type(error).__name__}: {error}"
    log(f"{stage} failed: {message}")
    document = StageError(stage=stage, reason="Refused" if isinstance(error, Refused) else "Error", message=message)  # type: ignore[arg-type]
    try:
        if context is not None:
            context.put_json(artifacts(context.plan).error(stage), document)
        elif isinstance(error, PlanRefused):
            error_key = layout.beside(error.plan_key, f"{stage}-error.json")
            error.store.put(error_key, canonical_json(document), "application/json")
    except Exception as upload_error:  # the store may be what failed
        log(f"could not record the error: {upload_error}")
    return 3 if isinstance(error, Refused) else 1


def main_guard(stage: str, body, plan_uri: str, plan_digest: str, workdir: Path) -> int:  # type: ignore[no-untyped-def]
    context = None
    try:
        context = open_plan(plan_uri, plan_digest, workdir)
        body(context)
    except Exception as error:
        return fail(context, stage, error)
    log(
        f"network audit: {len(context.audit.attempts)} connection(s), all to the object store"
        f" (or its credential service); "
        f"refused: {context.audit.refused}"
    )
    return 0


def exit_with(code: int) -> None:
    sys.stdout.flush()
    sys.exit(code)
