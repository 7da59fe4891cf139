"""A run whose Job waits suspended in a Kueue queue is reported as Queued, not running: the
message, status.queued (a printer column), the Trained condition, and one event."""

from __future__ import annotations

from ballast.api.conditions import Reason
from ballast.api.finetunerun import FineTuneRunStatus
from ballast.policy.finetunerun import JobState, JobView, RunStep, decide_run

from .builders import a_pool_spec
from .test_run_reconcile import PLANNED, TRAINED, observe

QUEUED = JobView(JobState.ACTIVE, suspended=True, queue="gpu")
RUNNING = JobView(JobState.ACTIVE)


def trained(status: FineTuneRunStatus) -> tuple[str, str, str]:
    condition = next(c for c in status.conditions if c.type == "Trained")
    return condition.status, condition.reason, condition.message


def test_a_run_whose_training_job_waits_in_a_queue_reports_queued_not_running() -> None:
    action = decide_run(observe(PLANNED, train=QUEUED))
    assert action.step is RunStep.WAIT and action.status.phase == "Training"
    assert action.status.queued == "gpu"
    assert action.status.message == "Queued: Job r-train is suspended in Kueue queue gpu until it is admitted"
    assert trained(action.status) == ("False", "Queued", action.status.message)
    assert [(e.reason, e.warning) for e in action.events] == [(Reason.QUEUED, False)]


def test_the_queued_event_is_posted_once_while_the_job_waits() -> None:
    waiting = decide_run(observe(PLANNED, train=QUEUED)).status
    assert decide_run(observe(waiting, train=QUEUED)).events == ()


def test_an_admitted_job_clears_queued_and_the_run_trains() -> None:
    waiting = decide_run(observe(PLANNED, train=QUEUED)).status
    action = decide_run(observe(waiting, train=RUNNING))
    assert action.status.queued is None and action.status.phase == "Training"
    assert action.status.message == "Job r-train running"
    assert trained(action.status)[:2] == ("False", "JobRunning")
    assert action.events == ()


def test_a_run_of_a_queued_pool_creates_its_job_already_queued() -> None:
    pool = a_pool_spec(jobs={"queueName": "gpu"})
    action = decide_run(observe(PLANNED, pool=pool))
    assert action.step is RunStep.CREATE_JOB and action.status.queued == "gpu"
    assert [e.reason for e in action.events] == [Reason.CREATED_JOB, Reason.QUEUED]
    # The Job it created is then observed suspended: nothing more is said.
    assert decide_run(observe(action.status, pool=pool, train=QUEUED)).events == ()


def test_a_gate_job_waiting_in_a_queue_is_reported_without_touching_trained() -> None:
    action = decide_run(observe(TRAINED, gate=QUEUED))
    assert action.status.phase == "Gating" and action.status.queued == "gpu"
    assert action.status.message.startswith("Queued: Job r-gate is suspended")
    assert all(c.type != "Trained" for c in action.status.conditions)


def test_a_job_suspended_by_hand_without_a_queue_is_still_not_running() -> None:
    action = decide_run(observe(PLANNED, train=JobView(JobState.ACTIVE, suspended=True)))
    assert action.status.queued == "(no queue)"
    assert "suspended (it names no Kueue queue)" in action.status.message


def test_a_run_failing_while_queued_no_longer_shows_a_queue() -> None:
    waiting = decide_run(observe(PLANNED, train=QUEUED)).status
    action = decide_run(observe(waiting, train=JobView(JobState.FAILED, "DeadlineExceeded")))
    assert action.status.phase == "Failed" and action.status.queued is None
