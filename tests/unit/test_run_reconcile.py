"""decide_run: a run's next step from what is observed, and the status it writes."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.api.common import Approval, ModelRef
from ballast.api.conditions import Reason
from ballast.api.contracts import BaseEvaluation, GateReport, GateResult, RunPlan, ServingComparison, TrainResult
from ballast.api.finetunerun import FineTuneRunStatus, PlanSummary, SampleSnapshot
from ballast.api.params import GateThresholds, NewSampleGate, RebaseParams, TrainingParams
from ballast.api.samples import SampleRef
from ballast.policy.finetunerun import JobState, JobView, RunAction, RunObservation, RunStep, decide_run, planned

from .builders import BASE, DIGEST, T0, a_pool_spec, a_run_spec

PLAN = PlanSummary(new_samples=50, old_samples=1000, rule="r", seed=1, digest=DIGEST, uri="s3://b/runs/r/u/plan.json")
# The plan the operator wrote (read back against PLAN.digest): run r, uid u, bucket b, the seed's gates.
PLAN_DOC = RunPlan(
    run="r",
    run_uid="u",
    pool="p",
    kind="FineTune",
    bucket="b",
    classes=["title"],
    base_model=BASE,  # type: ignore[arg-type]
    new_version="ft_v1.1",
    seed=1,
    new_samples=[],
    old_samples=[],
    test_manifest="anchor/test.txt",
    test_manifest_digest=DIGEST,
    mixing_rule="r",
    training=TrainingParams(),
    rebase=RebaseParams(),
    gates=GateThresholds(),
)
CANDIDATE = ModelRef(version="ft_v1.1", uri="s3://b/runs/r/u/model.pt", digest="sha256:" + "cd" * 32)
RESULT = TrainResult(
    run="r", model=CANDIDATE, lineage_uri="s3://b/runs/r/u/lineage.json", lineage_digest=DIGEST, epochs=[], seconds=3
)
OTHER = CANDIDATE.evolve(digest="sha256:" + "ef" * 32)
PLANNED = FineTuneRunStatus(phase="Training", plan=PLAN)
TRAINED = FineTuneRunStatus(phase="Gating", plan=PLAN, model=CANDIDATE)


def a_report(verdict: str = "Pass", gate2: str = "Pass", **figures: Any) -> GateReport:
    """A gate report about this run's candidate; its own verdicts are what the trainer claims."""
    fields: dict[str, Any] = {
        "run": "r",
        "candidate": CANDIDATE,
        "base": BASE,
        "base_map50": 0.9,
        "candidate_map50": 0.9,
        "map50_drop": 0.0,
        "drop_unit": "points",
        "detection_rate": 0.9 if gate2 == "Pass" else 0.5,
        "per_class_detection": [],
        "gates": [
            GateResult(name="Gate1Regression", verdict="Pass", reason="drop 0"),
            GateResult(name="Gate2NewSamples", verdict=gate2, reason="rate"),  # type: ignore[arg-type]
        ],
        "verdict": verdict,
    }
    fields.update(figures)
    return GateReport(**fields)


def observe(status: FineTuneRunStatus | None = None, spec: Any = None, **fields: Any) -> RunObservation:
    fields.setdefault("plan", PLAN_DOC if (status or FineTuneRunStatus()).plan else None)
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
            observe(FineTuneRunStatus(phase="Succeeded", verdict="Pass", model=CANDIDATE)),
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
    ("verdict", "gate2", "candidate_map50", "approved"),
    [
        pytest.param("Pass", "Pass", None, ("True", "Pass"), id="a passed run is approved by its gates"),
        pytest.param("Review", "Review", None, ("False", "RunNotApproved"), id="a Review waits for a person"),
        pytest.param("Reject", "Pass", 0.8, ("False", "RunRejected"), id="a rejected run is never approved"),
    ],
)
def test_the_verdict_sets_gate_conditions_and_approved(
    verdict: str, gate2: str, candidate_map50: float | None, approved: tuple
) -> None:
    figures = {"candidate_map50": candidate_map50} if candidate_map50 else {}  # a 10-point drop: Gate 1 rejects
    report = a_report(verdict, gate2, **figures)
    action = decide_run(observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=report))
    conditions = {c.type: (c.status, c.reason) for c in action.status.conditions}
    assert conditions["Approved"] == approved
    assert conditions["Gate2NewSamples"] == ("True" if gate2 == "Pass" else "False", gate2)
    assert conditions["Gate3ABComparison"] == ("True", "Disabled")
    assert action.status.verdict == verdict
    assert action.status.gates.gate1 == ("Reject" if candidate_map50 else "Pass")


REVIEWED = FineTuneRunStatus(phase="Succeeded", verdict="Review", model=CANDIDATE)


def approval(model_digest: str = CANDIDATE.digest) -> dict:
    return Approval(by="ana", at=T0, reason="ok", model_digest=model_digest).to_wire()


@pytest.mark.parametrize(
    ("spec_approval", "authorized", "approved"),
    [
        pytest.param(approval(), True, ("True", "Approved"), id="an approval of this model by an approver approves"),
        pytest.param(
            approval(), False, ("False", "ApproverNotAuthorized"), id="an approval by a user without the verb does not"
        ),
        pytest.param(
            approval(DIGEST), True, ("False", "ApprovalStale"), id="an approval of another model digest does not"
        ),
        pytest.param(None, None, ("False", "RunNotApproved"), id="a Review without approval waits"),
    ],
)
def test_an_approval_counts_only_when_verified(spec_approval: Any, authorized: bool | None, approved: tuple) -> None:
    action = decide_run(observe(REVIEWED, spec=a_run_spec(approval=spec_approval), approval_authorized=authorized))
    condition = next(c for c in action.status.conditions if c.type == "Approved")
    assert (action.step, (condition.status, condition.reason)) == (RunStep.FINISHED, approved)


def test_the_operator_judges_the_figures_and_never_reads_the_reports_own_verdict() -> None:
    # The report claims Pass, but its figures drop 5 points: the seed's Gate 1 rejects.
    forged = a_report("Pass", candidate_map50=0.85)
    action = decide_run(observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=forged))
    assert action.status.verdict == "Reject" and action.status.gates.gate1 == "Reject"
    assert action.status.gates.map50_drop == pytest.approx(5.0)


def test_the_base_figure_comes_from_the_plan_when_a_verified_gate_measured_it_before() -> None:
    known = BaseEvaluation(base_digest=DIGEST, test_manifest_digest=DIGEST, imgsz=640, map50=0.95)
    plan = PLAN_DOC.evolve(base_evaluation=known)
    report = a_report("Pass", base_map50=0.5, base_measured=False)  # whatever the report says of the base
    action = decide_run(observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=report, plan=plan))
    assert action.status.gates.base_map50 == 0.95 and action.status.verdict == "Reject"
    assert action.status.gates.base_evaluation is None  # nothing new measured to keep


def test_a_measured_base_figure_is_kept_in_the_runs_evidence_for_the_pool() -> None:
    action = decide_run(observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=a_report()))
    evaluation = action.status.gates.base_evaluation
    assert evaluation is not None and (evaluation.base_digest, evaluation.map50) == (BASE["digest"], 0.9)


HELD_OUT = [
    SampleRef(image=f"pool/p/samples/h{i}/image.png", image_digest=DIGEST, label_digest=DIGEST) for i in range(10)
]
SERVING = ModelRef(version="ft_v1.1", uri="s3://b/models/p/ft_v1.1/model.pt", digest="sha256:" + "12" * 32)
WITH_HELD_OUT = PLAN_DOC.evolve(held_out_samples=HELD_OUT)
WITH_SERVING = WITH_HELD_OUT.evolve(serving_model=SERVING)


def serving(rate: float, held_out: float | None) -> ServingComparison:
    return ServingComparison(model=SERVING, map50=0.9, detection_rate=rate, held_out_detection_rate=held_out)


def judged(report: GateReport, plan: RunPlan) -> RunAction:
    return decide_run(observe(TRAINED, gate=job(JobState.SUCCEEDED), gate_report=report, plan=plan))


@pytest.mark.parametrize(
    ("report", "plan"),
    [
        pytest.param(
            a_report(held_out_detection_rate=0.9), PLAN_DOC, id="a held-out figure when the plan held none out"
        ),
        pytest.param(a_report(), WITH_HELD_OUT, id="no held-out figure when the plan held some out"),
        pytest.param(
            a_report(detection_rate=0.9, held_out_detection_rate=0.7),
            WITH_HELD_OUT.evolve(gates=GateThresholds(new_samples=NewSampleGate(judge_on="heldOut"))),
            id="judging all documents when the pool judges the held-out ones",
        ),
        pytest.param(
            a_report(serving=serving(0.5, None)), PLAN_DOC, id="figures for a serving model the plan did not name"
        ),
        pytest.param(
            a_report(held_out_detection_rate=0.9), WITH_SERVING, id="no figures for the serving model the plan named"
        ),
        pytest.param(
            a_report(held_out_detection_rate=0.9, serving=serving(0.5, None)),
            WITH_SERVING,
            id="the serving model measured on other documents than the candidate",
        ),
    ],
)
def test_a_gate_report_that_does_not_fit_its_plan_is_refused(report: GateReport, plan: RunPlan) -> None:
    action = judged(report, plan)
    assert (action.step, action.events[0].reason) == (RunStep.FAIL, "ResultUnverified")


@pytest.mark.parametrize(
    ("candidate_held_out", "serving_figures", "verdict"),
    [
        pytest.param(0.7, (0.6, 0.85), "Review", id="worse than serving on the held-out documents: Review at best"),
        pytest.param(0.9, (0.95, 0.85), "Pass", id="better on the held-out documents, though worse on all: Pass"),
    ],
)
def test_a_candidate_is_compared_with_the_serving_model_on_documents_neither_trained_on(
    candidate_held_out: float, serving_figures: tuple, verdict: str
) -> None:
    report = a_report(detection_rate=0.9, held_out_detection_rate=candidate_held_out, serving=serving(*serving_figures))
    action = judged(report, WITH_SERVING)
    assert action.status.verdict == verdict and action.status.gates.gate2 == verdict
    assert action.status.gates.serving_held_out_detection_rate == serving_figures[1]
    gate2 = next(c for c in action.status.conditions if c.type == "Gate2NewSamples")
    assert "(10 held out of training)" in gate2.message
    assert ("serves now" in gate2.message) is (verdict == "Review")


@pytest.mark.parametrize(
    ("observation", "reason"),
    [
        pytest.param(
            observe(PLANNED, train=job(JobState.SUCCEEDED), result_problem="its digest differs"),
            "ResultUnverified",
            id="a train result whose bytes differ from the reported digest is not read",
        ),
        pytest.param(
            observe(
                PLANNED,
                train=job(JobState.SUCCEEDED),
                train_result=RESULT.evolve(model=CANDIDATE.evolve(uri="s3://b/x.pt")),
            ),
            "ResultUnverified",
            id="a train result naming a model outside the run's prefix is refused",
        ),
        pytest.param(
            observe(PLANNED, train=job(JobState.SUCCEEDED), train_result=RESULT.evolve(run="other")),
            "ResultUnverified",
            id="a train result of another run is refused",
        ),
        pytest.param(
            observe(
                TRAINED, gate=job(JobState.SUCCEEDED), gate_report=a_report(candidate=BASE | {"version": "ft_v1.1"})
            ),
            "ResultUnverified",
            id="a gate report about another model is refused",
        ),
        pytest.param(
            observe(TRAINED, gate=job(JobState.SUCCEEDED), result_problem="no digest reported"),
            "ResultUnverified",
            id="a gate report its Job did not vouch for is refused",
        ),
        pytest.param(
            observe(PLANNED, train=JobView(JobState.ACTIVE, foreign="its container's image differs")),
            "JobNotOurs",
            id="a Job under the run's name that the operator did not build fails the run",
        ),
    ],
)
def test_results_are_trusted_only_as_the_operators_own_jobs_reported_them(
    observation: RunObservation, reason: str
) -> None:
    action = decide_run(observation)
    assert (action.step, action.status.phase, action.events[0].reason) == (RunStep.FAIL, "Failed", reason)


@pytest.mark.parametrize(
    ("gates", "mixing", "refused"),
    [
        pytest.param(
            {"regression": {"passBelow": 1000, "rejectAbove": 1001}}, None, True, id="looser Gate 1 is refused"
        ),
        pytest.param({"newSamples": {"minDetectionRate": 0.0}}, None, True, id="a lower detection rate is refused"),
        pytest.param({"regression": {"passBelow": 0.5, "rejectAbove": 2}}, None, False, id="stricter gates are fine"),
        pytest.param({"newSamples": {"holdoutShare": 0.0}}, None, True, id="holding out fewer new samples is refused"),
        pytest.param(
            {"newSamples": {"judgeOn": "heldOut"}}, None, False, id="judging only the held-out documents is stricter"
        ),
        pytest.param(
            None, {"table": [{"newSamples": 10, "multiplier": 1}]}, True, id="a smaller anchor draw is refused"
        ),
        pytest.param(None, None, False, id="a run that names no gates takes the pool's"),
    ],
)
def test_a_hand_made_run_may_not_be_judged_more_loosely_than_its_pool(gates: Any, mixing: Any, refused: bool) -> None:
    spec = a_run_spec(gates=gates, mixing=mixing)
    action = decide_run(observe(spec=spec, pool=a_pool_spec()))
    assert (action.step is RunStep.FAIL) is refused
    if refused:
        assert action.events[0].reason == "LooserThanPool" and "pool" in action.status.message


def test_once_planned_the_status_holds_the_plan_and_says_so() -> None:
    snapshot = SampleSnapshot(sample_count=50, manifest_digest=DIGEST)
    action = planned(observe(), PLAN, "ft_v1.1")
    assert action.status.plan == PLAN and action.status.snapshot == snapshot
    assert next(c for c in action.status.conditions if c.type == "Planned").reason == "PlanWritten"
    assert action.status.started_at == T0


@pytest.mark.parametrize("stage", ["train", "rebase", "gate"])
def test_the_operators_jobs_never_ask_the_trainer_to_accept_an_unmixed_plan(stage: str) -> None:
    from ballast.api.params import TrainingParams
    from ballast.policy.manifests import build_job

    from .builders import a_pool_spec

    job = build_job(
        run="p-run-1",
        run_uid="uid",
        pool="p",
        stage=stage,
        training=TrainingParams(),
        image="trainer:1",
        store=a_pool_spec().object_store,
        plan_uri="s3://ballast/runs/p-run-1/uid/plan.json",
        plan_digest="sha256:" + "0" * 64,
    )
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert "--unmixed-experiment" not in container["command"] + container.get("args", [])


def test_a_failed_run_is_stalled_and_a_judged_one_is_ready() -> None:
    failed = decide_run(observe(TRAINED, gate=job(JobState.FAILED, "DeadlineExceeded")))
    summary = {c.type: (c.status, c.reason) for c in failed.status.conditions if c.type in ("Ready", "Stalled")}
    assert summary == {"Ready": ("False", "RunFailed"), "Stalled": ("True", "RunFailed")}
    finished = decide_run(observe(FineTuneRunStatus(phase="Succeeded", verdict="Pass", model=CANDIDATE)))
    ready = [(c.type, c.status, c.observed_generation) for c in finished.status.conditions if c.type == "Ready"]
    assert ready == [("Ready", "True", 1)]
    assert not {"Reconciling", "Stalled"} & {c.type for c in finished.status.conditions}
