"""decide_run: a run's next step from what is observed, and the status it writes."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.api.common import Approval
from ballast.api.conditions import Reason
from ballast.api.contracts import GateReport, GateResult, TrainResult
from ballast.api.finetunerun import FineTuneRunStatus, PlanSummary, SampleSnapshot
from ballast.policy.finetunerun import JobState, JobView, RunObservation, RunStep, decide_run, planned

from .builders import BASE, DIGEST, T0, a_model, a_run_spec

PLAN = PlanSummary(new_samples=50, old_samples=1000, rule="r", seed=1, digest=DIGEST, uri="s3://b/runs/r/u/plan.json")
RESULT = TrainResult(run="r", model=a_model(), lineage_uri="s3://b/l", lineage_digest=DIGEST, epochs=[], seconds=3)
PLANNED = FineTuneRunStatus(phase="Training", plan=PLAN)
TRAINED = FineTuneRunStatus(phase="Gating", plan=PLAN, model=a_model())


def a_report(verdict: str = "Pass", gate2: str = "Pass") -> GateReport:
    return GateReport(
        run="r",
        candidate=a_model(),
        base=BASE,  # type: ignore[arg-type]
        base_map50=0.9,
        candidate_map50=0.9,
        map50_drop=0.0,
        drop_unit="points",
        detection_rate=0.9,
        per_class_detection=[],
        gates=[
            GateResult(name="Gate1Regression", verdict="Pass", reason="drop 0"),
            GateResult(name="Gate2NewSamples", verdict=gate2, reason="rate"),  # type: ignore[arg-type]
        ],
        verdict=verdict,  # type: ignore[arg-type]
    )


def observe(status: FineTuneRunStatus | None = None, spec: Any = None, **fields: Any) -> RunObservation:
    return RunObservation(
        name="r",
        generation=1,
        now=T0,
        spec=spec or a_run_spec(),
        status=status or FineTuneRunStatus(),
        pool_problem=fields.pop("pool_problem", None),
        **fields,
    )


def job(state: JobState, reason: str = "", detail: str = "") -> JobView:
    return JobView(state, reason, detail)


@pytest.mark.parametrize(
    ("observation", "step", "phase", "stage"),
    [
        pytest.param(observe(), RunStep.PLAN, "Planning", None, id="a new run with a snapshot is planned"),
        pytest.param(
            observe(spec=a_run_spec(snapshot=None)),
            RunStep.FREEZE_SNAPSHOT,
            "Pending",
            None,
            id="a hand-made run first freezes the pool's samples",
        ),
        pytest.param(
            observe(spec=a_run_spec(snapshot={"sampleCount": 10, "manifestDigest": DIGEST})),
            RunStep.FAIL,
            "Failed",
            None,
            id="a fine-tune of 10 samples is refused before any Job",
        ),
        pytest.param(
            observe(spec=a_run_spec(kind="Rebase", snapshot={"sampleCount": 10, "manifestDigest": DIGEST})),
            RunStep.PLAN,
            "Planning",
            None,
            id="a rebase is not held to the 50-sample floor",
        ),
        pytest.param(
            observe(PLANNED), RunStep.CREATE_JOB, "Training", "train", id="a planned run creates its training Job"
        ),
        pytest.param(
            observe(PLANNED, spec=a_run_spec(kind="Rebase")),
            RunStep.CREATE_JOB,
            "Training",
            "rebase",
            id="a planned rebase creates its rebase Job",
        ),
        pytest.param(
            observe(PLANNED, train=job(JobState.ACTIVE)),
            RunStep.WAIT,
            "Training",
            None,
            id="a running training Job is waited for",
        ),
        pytest.param(
            observe(PLANNED, train=job(JobState.SUCCEEDED), train_result=RESULT),
            RunStep.RECORD_TRAINED,
            "Gating",
            None,
            id="a finished training Job's result is recorded",
        ),
        pytest.param(
            observe(PLANNED, train=job(JobState.SUCCEEDED)),
            RunStep.FAIL,
            "Failed",
            "train",
            id="a training Job that wrote no result fails the run",
        ),
        pytest.param(
            observe(PLANNED, train=job(JobState.FAILED, "BackoffLimitExceeded", "refused: chained")),
            RunStep.FAIL,
            "Failed",
            "train",
            id="a failed training Job fails the run",
        ),
        pytest.param(observe(TRAINED), RunStep.CREATE_JOB, "Gating", "gate", id="a trained run creates its gate Job"),
        pytest.param(
            observe(TRAINED, gate=job(JobState.ACTIVE)),
            RunStep.WAIT,
            "Gating",
            None,
            id="a running gate Job is waited for",
        ),
        pytest.param(
            observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=a_report()),
            RunStep.RECORD_VERDICT,
            "Succeeded",
            None,
            id="a finished gate Job's verdict is recorded",
        ),
        pytest.param(
            observe(TRAINED, gate=job(JobState.FAILED, "DeadlineExceeded")),
            RunStep.FAIL,
            "Failed",
            "gate",
            id="a failed gate Job fails the run at the gate",
        ),
        pytest.param(
            observe(PLANNED, pool_problem=(Reason.POOL_NOT_FOUND, "FineTunePool p not found")),
            RunStep.FAIL,
            "Failed",
            None,
            id="a run whose pool is gone fails",
        ),
        pytest.param(
            observe(FineTuneRunStatus(phase="Succeeded", verdict="Pass", model=a_model())),
            RunStep.FINISHED,
            "Succeeded",
            None,
            id="a finished run stays finished",
        ),
    ],
)
def test_a_runs_next_step(observation: RunObservation, step: RunStep, phase: str, stage: str | None) -> None:
    action = decide_run(observation)
    assert (action.step, action.status.phase, action.stage) == (step, phase, stage)


def test_the_failing_stage_is_data_and_the_message_says_why() -> None:
    action = decide_run(observe(TRAINED, gate=job(JobState.FAILED, "DeadlineExceeded", "pod r-gate: DeadlineExceeded")))
    assert action.stage == "gate" and action.events[0].reason == "GatingFailed"
    assert action.status.message == "GatingFailed: Job r-gate DeadlineExceeded: pod r-gate: DeadlineExceeded"
    trained = {c.type: c.status for c in action.status.conditions}
    assert "Trained" not in trained  # a gate failure says nothing against training


def test_a_refused_run_says_which_seed_rule_in_its_planned_condition() -> None:
    action = decide_run(observe(spec=a_run_spec(snapshot={"sampleCount": 10, "manifestDigest": DIGEST})))
    planned_condition = next(c for c in action.status.conditions if c.type == "Planned")
    assert (planned_condition.status, planned_condition.reason) == ("False", "PlanRefused")
    assert "never fine-tune on fewer than 50" in action.status.message


@pytest.mark.parametrize(
    ("verdict", "gate2", "approval", "approved"),
    [
        pytest.param("Pass", "Pass", None, ("True", "Pass"), id="a passed run is approved by its gates"),
        pytest.param("Review", "Review", None, ("False", "RunNotApproved"), id="a Review waits for a person"),
        pytest.param("Reject", "Pass", None, ("False", "RunRejected"), id="a rejected run is never approved"),
    ],
)
def test_the_verdict_sets_gate_conditions_and_approved(
    verdict: str, gate2: str, approval: Any, approved: tuple
) -> None:
    action = decide_run(observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=a_report(verdict, gate2)))
    conditions = {c.type: (c.status, c.reason) for c in action.status.conditions}
    assert conditions["Approved"] == approved
    assert conditions["Gate2NewSamples"] == ("True" if gate2 == "Pass" else "False", gate2)
    assert conditions["Gate3ABComparison"] == ("True", "Disabled")
    assert action.status.verdict == verdict and action.status.gates.gate1 == "Pass"


def test_an_approval_given_after_the_verdict_flips_approved_on_a_finished_run() -> None:
    review = FineTuneRunStatus(phase="Succeeded", verdict="Review", model=a_model())
    spec = a_run_spec(approval=Approval(by="ana", at=T0, reason="ok").to_wire())
    action = decide_run(observe(review, spec=spec))
    approved = next(c for c in action.status.conditions if c.type == "Approved")
    assert (action.step, approved.status, approved.reason) == (RunStep.FINISHED, "True", "Approved")


def test_once_planned_the_status_holds_the_plan_and_says_so() -> None:
    snapshot = SampleSnapshot(sample_count=50, manifest_digest=DIGEST)
    action = planned(observe(), PLAN, "ft_v1.1")
    assert action.status.plan == PLAN and action.status.snapshot == snapshot
    assert next(c for c in action.status.conditions if c.type == "Planned").reason == "PlanWritten"
    assert action.status.started_at == T0
