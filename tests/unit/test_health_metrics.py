"""The metrics Ballast's own health alerts read: a Review waiting for approval, a release's phase;
and every alert's runbook_url names a section of README.md."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ballast.adapters.metrics import OperatorMetrics
from ballast.api.common import Condition
from ballast.api.conditions import RunCondition
from ballast.api.finetunerun import FineTuneRunStatus
from ballast.api.modelrelease import ModelReleaseStatus
from ballast.codegen import rules
from ballast.handlers import finetunerun, modelrelease
from ballast.handlers.common import RELEASES, RUNS
from ballast.handlers.runtime import Key

from .builders import T0, a_run_spec

README = Path(__file__).resolve().parents[2] / "README.md"
RUN = Key(RUNS, "ml", "invoices-3")
RELEASE = Key(RELEASES, "ml", "invoices-detector")
APPROVED = Condition(type=RunCondition.APPROVED, status="True", reason="Approved", last_transition_time=T0)
UNAPPROVED = Condition(type=RunCondition.APPROVED, status="False", reason="ApprovalRequired", last_transition_time=T0)


def waiting_since(metrics: OperatorMetrics, run: str = "invoices-3") -> float | None:
    return metrics.registry.get_sample_value(
        "ballast_run_review_waiting_since_seconds", {"namespace": "ml", "pool": "invoices", "run": run}
    )


def context() -> Any:
    return SimpleNamespace(metrics=OperatorMetrics())


@pytest.mark.parametrize(
    ("status", "since"),
    [
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Review", finished_at=T0, conditions=[UNAPPROVED]),
            T0.timestamp(),
            id="a Review verdict without a verified approval waits since the run finished",
        ),
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Review", finished_at=T0, conditions=[APPROVED]),
            None,
            id="a verified approval ends the wait",
        ),
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Pass", finished_at=T0), None, id="a Pass waits for nobody"
        ),
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Reject", finished_at=T0), None, id="a Reject waits for nobody"
        ),
        pytest.param(FineTuneRunStatus(phase="Gating"), None, id="a run still gating waits for nobody yet"),
    ],
)
def test_a_run_waits_for_review_only_with_a_review_verdict_and_no_verified_approval(
    status: FineTuneRunStatus, since: float | None
) -> None:
    ctx = context()
    finetunerun.record_review_waiting(ctx, RUN, a_run_spec(pool="invoices"), status)
    assert waiting_since(ctx.metrics) == since


def test_the_wait_ends_when_the_run_is_approved_or_deleted() -> None:
    ctx = context()
    review = FineTuneRunStatus(phase="Succeeded", verdict="Review", finished_at=T0, conditions=[UNAPPROVED])
    finetunerun.record_review_waiting(ctx, RUN, a_run_spec(pool="invoices"), review)
    finetunerun.record_review_waiting(ctx, RUN, a_run_spec(pool="invoices"), review.evolve(conditions=[APPROVED]))
    assert waiting_since(ctx.metrics) is None
    later = review.evolve(finished_at=T0 + timedelta(hours=1))
    for run in ("invoices-3", "invoices-4"):
        finetunerun.record_review_waiting(ctx, Key(RUNS, "ml", run), a_run_spec(pool="invoices"), later)
    ctx.metrics.review_waiting("ml", "", "invoices-3", None)  # deleted: the pool is unknown
    assert waiting_since(ctx.metrics) is None
    assert waiting_since(ctx.metrics, "invoices-4") == (T0 + timedelta(hours=1)).timestamp()


def phases(metrics: OperatorMetrics) -> dict[str, float]:
    samples = next(iter(metrics.release_phase.collect())).samples
    return {s.labels["phase"]: s.value for s in samples if s.labels["release"] == RELEASE.name}


@pytest.mark.parametrize("phase", ["Blocked", "RolledBack", "Released", "Pending"])
def test_a_release_reports_its_current_phase_as_one_and_the_others_as_zero(phase: str) -> None:
    ctx = context()
    modelrelease.record_metrics(ctx, RELEASE, ModelReleaseStatus(phase="Released"))
    modelrelease.record_metrics(ctx, RELEASE, ModelReleaseStatus(phase=phase))
    reported = phases(ctx.metrics)
    assert reported[phase] == 1 and sum(reported.values()) == 1
    assert set(reported) == {"Pending", "Progressing", "Released", "Blocked", "RolledBack", "Failed"}


def test_a_deleted_release_reports_no_phase() -> None:
    ctx = context()
    modelrelease.record_metrics(ctx, RELEASE, ModelReleaseStatus(phase="Blocked"))
    modelrelease.forget_metrics(ctx, RELEASE)
    assert phases(ctx.metrics) == {}


def test_a_release_counts_its_rollbacks_from_zero_and_a_deleted_one_has_no_series() -> None:
    ctx = context()
    modelrelease.record_metrics(ctx, RELEASE, ModelReleaseStatus(phase="Released"))
    labels = {"namespace": "ml", "release": RELEASE.name}
    assert ctx.metrics.registry.get_sample_value("ballast_release_rollbacks_total", labels) == 0
    modelrelease.forget_metrics(ctx, RELEASE)
    assert ctx.metrics.registry.get_sample_value("ballast_release_rollbacks_total", labels) is None


def test_a_release_reports_model_drift_while_its_condition_is_true() -> None:
    ctx = context()
    labels = {"namespace": "ml", "release": RELEASE.name}
    drift = Condition(
        type="ModelDrift", status="True", reason="ModelDrift", message="d-1 runs ft_v0.9", last_transition_time=T0
    )
    modelrelease.record_metrics(ctx, RELEASE, ModelReleaseStatus(phase="Released", conditions=[drift]))
    assert ctx.metrics.registry.get_sample_value("ballast_release_model_drift", labels) == 1
    ended = drift.model_copy(update={"status": "False"})
    modelrelease.record_metrics(ctx, RELEASE, ModelReleaseStatus(phase="Released", conditions=[ended]))
    assert ctx.metrics.registry.get_sample_value("ballast_release_model_drift", labels) == 0


def test_error_and_store_request_counters_exist_at_zero_for_every_kind_from_the_start() -> None:
    metrics = OperatorMetrics()
    metrics.start_at_zero(["FineTunePool", "FineTuneRun", "ModelRelease"])
    for name in ("ballast_reconcile_errors_total", "ballast_object_store_requests_total"):
        for kind in ("FineTunePool", "FineTuneRun", "ModelRelease"):
            assert metrics.registry.get_sample_value(name, {"kind": kind}) == 0


def github_anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"^#{1,6} (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize(
    "alert", [r for g in rules.rules()["groups"] for r in g["rules"]], ids=lambda rule: rule["alert"]
)
def test_every_alert_has_a_runbook_url_whose_anchor_is_a_readme_section(alert: dict) -> None:
    base, _, anchor = alert["annotations"]["runbook_url"].partition("#")
    assert base == "README.md"
    assert anchor in github_anchors(README.read_text()), f"README.md has no section for #{anchor}"
