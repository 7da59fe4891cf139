"""decide_pool: what one reconcile of a pool does, from what it observed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ballast.api.finetunepool import FineTunePoolStatus, RejectedSample
from ballast.policy.finetunepool import IndexCount, PoolObservation, PoolStep, decide_pool

from .builders import T0, a_model, a_pool_spec, a_run_summary


def observe(
    verified: int = 0, runs: tuple = (), status: FineTunePoolStatus | None = None, **spec: Any
) -> PoolObservation:
    return PoolObservation(
        name="p",
        generation=3,
        now=T0,
        spec=a_pool_spec(**spec),
        status=status or FineTunePoolStatus(),
        index=IndexCount(total=verified, cursor=None, settled=verified),
        new_rejections=(),
        rejection_cursor=None,
        runs=runs,
    )


def conditions(status: FineTunePoolStatus) -> dict[str, tuple[str, str]]:
    return {c.type: (c.status, c.reason) for c in status.conditions}


@pytest.mark.parametrize(
    ("observation", "step", "started"),
    [
        pytest.param(observe(49), PoolStep.UPDATE_STATUS, None, id="49 verified samples only update the status"),
        pytest.param(
            observe(50), PoolStep.START_RUN, ("p-run-1", "FineTune", "Volume"), id="the 50th sample starts run 1"
        ),
        pytest.param(
            observe(100, runs=(a_run_summary("p-run-1", sample_count=50),)),
            PoolStep.START_RUN,
            ("p-run-2", "FineTune", "Volume"),
            id="50 more samples after run 1 start run 2",
        ),
        pytest.param(
            observe(99, runs=(a_run_summary("p-run-1", sample_count=50),)),
            PoolStep.UPDATE_STATUS,
            None,
            id="49 samples since the last run start nothing",
        ),
        pytest.param(
            observe(200, runs=(a_run_summary("p-run-1", phase="Training", verdict=None, model=None),)),
            PoolStep.UPDATE_STATUS,
            None,
            id="an active run holds the next one back",
        ),
        pytest.param(
            observe(2000, rebase={"threshold": 2000}),
            PoolStep.START_RUN,
            ("p-run-1", "Rebase", "RebaseDue"),
            id="2000 samples since the base start a rebase",
        ),
        pytest.param(observe(60, suspend=True), PoolStep.UPDATE_STATUS, None, id="a suspended pool starts nothing"),
    ],
)
def test_when_a_pool_starts_a_run(observation: PoolObservation, step: PoolStep, started: tuple | None) -> None:
    action = decide_pool(observation)
    assert action.step is step
    if started is None:
        assert action.start is None
    else:
        assert action.start is not None
        assert (action.start.name, action.start.kind, action.start.trigger) == started
        assert action.status.active_run == started[0] and action.status.last_run == started[0]
        assert action.events[0].reason == "CreatedRun"


def test_a_started_run_starts_from_the_pools_base_and_its_numbers_never_repeat() -> None:
    # Run 3 was deleted; the counter in status remembers it, so the next run is 4, not 3.
    status = FineTunePoolStatus(run_counter=3)
    action = decide_pool(observe(150, runs=(a_run_summary("p-run-2", sample_count=100),), status=status))
    assert action.start is not None and action.start.name == "p-run-4"
    assert action.start.base.version == "base_v1" and action.status.run_counter == 4


@pytest.mark.parametrize(
    ("run", "adopted"),
    [
        pytest.param(
            a_run_summary(kind="Rebase", model=a_model("base_v2")),
            True,
            id="a passed Rebase run's model becomes the base",
        ),
        pytest.param(
            a_run_summary(kind="Rebase", verdict="Review", model=a_model("base_v2")),
            False,
            id="a Rebase under review is not adopted",
        ),
        pytest.param(
            a_run_summary(
                kind="Rebase",
                verdict="Review",
                model=a_model("base_v2"),
                approved_by="ana",
            ),
            True,
            id="an approved Rebase under review is adopted",
        ),
        pytest.param(
            a_run_summary(kind="Rebase", verdict="Reject", model=a_model("base_v2")),
            False,
            id="a rejected Rebase is never adopted",
        ),
        pytest.param(a_run_summary(model=a_model("ft_v1.1")), False, id="a fine-tune is never adopted as a base"),
    ],
)
def test_which_rebase_becomes_the_base(run: Any, adopted: bool) -> None:
    action = decide_pool(observe(100, runs=(run,)))
    assert (action.step is PoolStep.ADOPT_BASE) is adopted
    if adopted:
        assert action.adopt == run.model
        assert action.adopted is not None and action.adopted.uri == "s3://ballast/models/p/base_v2/model.pt"
        assert action.status.current_base_model == action.adopted
        assert action.status.base_sample_count == run.sample_count


def test_after_adopting_a_base_the_next_runs_start_from_it_and_count_samples_since_it() -> None:
    rebase = a_run_summary(kind="Rebase", model=a_model("base_v2"), sample_count=2000)
    adopted = decide_pool(observe(2000, runs=(rebase,))).status
    action = decide_pool(observe(2050, runs=(rebase,), status=adopted))
    assert action.status.current_base == "base_v2" and action.status.samples_since_base == 50
    assert action.start is not None and action.start.base.version == "base_v2"


def test_the_status_reports_counts_conditions_and_rejections() -> None:
    observation = observe(49)
    observation = PoolObservation(
        **{
            **observation.__dict__,
            "new_rejections": (RejectedSample(id="x", reason="bad label"),),
            "rejection_cursor": "k",
        }
    )
    status = decide_pool(observation).status
    assert (status.verified_samples, status.samples_since_last_run, status.rejected_samples) == (49, 49, 1)
    assert status.recent_rejections[-1].reason == "bad label" and status.rejection_cursor == "k"
    assert conditions(status) == {
        "Ready": ("True", "SamplesListed"),
        "RunDue": ("False", "TooFewSamples"),
        "RebaseRecommended": ("False", "BelowRebaseThreshold"),
    }
    assert status.observed_generation == 3


def test_a_pool_waiting_on_a_schedule_wakes_at_the_cron_time_and_one_waiting_on_samples_does_not() -> None:
    scheduled = decide_pool(observe(10, triggers={"minNewSamples": 50, "schedule": "0 3 * * *"}))
    assert scheduled.wake_at == T0.replace(hour=3) + timedelta(days=1)
    assert decide_pool(observe(10)).wake_at is None


def test_an_alert_inside_its_cooldown_wakes_the_pool_when_the_cooldown_ends() -> None:
    status = FineTunePoolStatus(
        pending_alert="Drift", pending_alert_time=T0, last_alert_action_time=T0 - timedelta(minutes=10)
    )
    action = decide_pool(observe(60, status=status, triggers={"minNewSamples": 100, "alertCooldownSeconds": 3600}))
    assert action.start is None
    assert action.wake_at == T0 + timedelta(minutes=50)


def test_an_invalid_cron_is_reported_not_raised() -> None:
    action = decide_pool(observe(60, triggers={"schedule": "every tuesday"}))
    assert action.step is PoolStep.UPDATE_STATUS and action.start is None
    assert conditions(action.status)["Ready"] == ("False", "SpecInvalid")


def a_rebase(name: str = "p-run-1", sample_count: int = 2000, **overrides: Any) -> Any:
    fields: dict[str, Any] = {"kind": "Rebase", "sample_count": sample_count, "model": a_model("base_v2")}
    return a_run_summary(name, **(fields | overrides))


@pytest.mark.parametrize(
    ("verified", "last_rebase", "starts", "reason"),
    [
        pytest.param(
            2100,
            a_rebase(verdict="Review"),
            "FineTune",
            "RebaseAwaitingApproval",
            id="a Rebase in Review waits for its approval: fine-tunes go on, no second Rebase",
        ),
        pytest.param(
            2049,
            a_rebase(verdict="Reject"),
            "FineTune",
            "RebaseRetryWaiting",
            id="a rejected Rebase is not retried before minNewSamples more samples arrive: fine-tunes go on",
        ),
        pytest.param(
            2050,
            a_rebase(verdict="Reject"),
            "Rebase",
            "RebaseThresholdReached",
            id="a rejected Rebase is retried once minNewSamples more samples arrived",
        ),
        pytest.param(
            2049,
            a_rebase(phase="Failed", verdict=None, model=None),
            "FineTune",
            "RebaseRetryWaiting",
            id="a failed Rebase waits for minNewSamples more samples too",
        ),
        pytest.param(
            2000,
            None,
            "Rebase",
            "RebaseThresholdReached",
            id="the first crossing of the threshold starts one Rebase",
        ),
    ],
)
def test_exactly_one_rebase_per_crossing_of_the_threshold(
    verified: int, last_rebase: Any, starts: str | None, reason: str
) -> None:
    # The pool's last fine-tune took 1950 samples; a Rebase that was not adopted consumed none of them.
    runs = (a_run_summary("p-run-0", sample_count=1950, created=T0 - timedelta(days=1)),)
    runs += (last_rebase,) if last_rebase else ()
    action = decide_pool(observe(verified, runs=runs, rebase={"threshold": 2000}))
    assert (action.start.kind if action.start else None) == starts
    assert conditions(action.status)["RebaseRecommended"] == ("True", reason)


def test_a_rebase_started_while_another_waits_for_approval_is_never_started_by_the_pool() -> None:
    runs = (a_rebase(verdict="Review"), a_run_summary("p-run-2", sample_count=2100))
    for verified in (2100, 2500, 5000):
        action = decide_pool(observe(verified, runs=runs, rebase={"threshold": 2000}))
        assert action.start is None or action.start.kind == "FineTune"


def test_a_rejected_rebase_leaves_its_samples_waiting_for_a_fine_tune() -> None:
    runs = (a_run_summary("p-run-0", sample_count=1990), a_rebase(verdict="Reject", sample_count=2040))
    action = decide_pool(observe(2040, runs=runs, rebase={"threshold": 2000}))
    assert action.start is not None and action.start.kind == "FineTune"
    # ...which a fine-tune that took them ends: 49 more do not start another run.
    runs += (a_run_summary("p-run-3", sample_count=2040),)
    assert decide_pool(observe(2089, runs=runs, rebase={"threshold": 2000})).start is None


def test_an_adopted_base_records_the_samples_merged_into_it() -> None:
    snapshot = {"sampleCount": 2000, "manifestDigest": "sha256:" + "a" * 64}
    from ballast.api.finetunerun import SampleSnapshot

    rebase = a_rebase(snapshot=SampleSnapshot.model_validate(snapshot))
    action = decide_pool(observe(2000, runs=(rebase,)))
    assert action.step is PoolStep.ADOPT_BASE
    assert action.status.base_snapshot == rebase.snapshot and action.status.base_sample_count == 2000
