"""A FineTuneRun's next step, from what is observed: Planning -> Training -> Gating -> terminal.

Level-based: the same observation always gives the same step, so a restarted operator resumes a
run where the cluster says it is, and never creates a second Job for a stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ballast.policy.finetunepool import MIN_SAMPLES_FLOOR


class JobState(StrEnum):
    MISSING = "Missing"
    ACTIVE = "Active"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


class Step(StrEnum):
    REFUSE = "Refuse"  # fail before any Job exists
    PLAN = "Plan"
    CREATE_TRAIN_JOB = "CreateTrainJob"
    WAIT_TRAINING = "WaitTraining"
    READ_TRAIN_RESULT = "ReadTrainResult"
    CREATE_GATE_JOB = "CreateGateJob"
    WAIT_GATING = "WaitGating"
    READ_GATE_REPORT = "ReadGateReport"
    FAIL = "Fail"
    DONE = "Done"


@dataclass(frozen=True)
class RunObservation:
    phase: str
    kind: str
    sample_count: int | None  # the frozen snapshot's size, once known
    plan_written: bool
    train_job: JobState
    train_result_written: bool
    gate_job: JobState
    gate_report_written: bool
    terminal: bool


@dataclass(frozen=True)
class RunStep:
    step: Step
    reason: str = ""
    message: str = ""


def next_step(obs: RunObservation) -> RunStep:
    if obs.terminal:
        return RunStep(Step.DONE)
    if not obs.plan_written:
        if obs.kind == "FineTune" and obs.sample_count is not None and obs.sample_count < MIN_SAMPLES_FLOOR:
            return RunStep(
                Step.REFUSE,
                "TooFewSamples",
                f"the pool snapshot holds {obs.sample_count} verified samples; never fine-tune on fewer than "
                f"{MIN_SAMPLES_FLOOR} (seed section 5)",
            )
        return RunStep(Step.PLAN)
    if not obs.train_result_written:
        if obs.train_job is JobState.MISSING:
            return RunStep(Step.CREATE_TRAIN_JOB)
        if obs.train_job is JobState.FAILED:
            return RunStep(Step.FAIL, "TrainingFailed")
        if obs.train_job is JobState.SUCCEEDED:
            return RunStep(Step.FAIL, "TrainResultMissing", "the training Job succeeded but wrote no TrainResult")
        return RunStep(Step.WAIT_TRAINING)
    if obs.phase in ("Pending", "Planning", "Training"):
        return RunStep(Step.READ_TRAIN_RESULT)
    if not obs.gate_report_written:
        if obs.gate_job is JobState.MISSING:
            return RunStep(Step.CREATE_GATE_JOB)
        if obs.gate_job is JobState.FAILED:
            return RunStep(Step.FAIL, "GatingFailed")
        if obs.gate_job is JobState.SUCCEEDED:
            return RunStep(Step.FAIL, "GateReportMissing", "the gate Job succeeded but wrote no GateReport")
        return RunStep(Step.WAIT_GATING)
    return RunStep(Step.READ_GATE_REPORT)
