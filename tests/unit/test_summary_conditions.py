"""The kstatus summary (Ready, Reconciling, Stalled) each kind derives from its status, and how
the decisions carry it: what Flux, Argo CD and `kubectl wait --for=condition=Ready` read."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ballast.api.conditions import PoolCondition, ReleaseCondition, RunCondition
from ballast.api.finetunepool import FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunStatus
from ballast.api.modelrelease import ModelReleaseStatus
from ballast.policy.conditions import set_condition
from ballast.policy.finetunepool import spec_invalid, store_unreachable
from ballast.policy.summary import (
    Health,
    pool_health,
    release_health,
    run_health,
    summarize_release,
    summarize_run,
    summarized,
)

from .builders import T0


def with_conditions(*conditions: tuple[str, bool, str]) -> list:
    result: list = []
    for type_, ok, reason in conditions:
        result = set_condition(result, type_, ok, reason, f"{reason} message", T0, 3)
    return result


def a_pool(*conditions: tuple[str, bool, str]) -> FineTunePoolStatus:
    return FineTunePoolStatus(observed_generation=3, conditions=with_conditions(*conditions))


def a_run(phase: str = "Succeeded", verdict: str | None = None, approved: bool = False, message: str = ""):
    conditions = with_conditions((RunCondition.APPROVED, approved, "Approved" if approved else "RunNotApproved"))
    return FineTuneRunStatus(phase=phase, verdict=verdict, message=message, conditions=conditions)  # type: ignore[arg-type]


def a_release(phase: str, current: str | None = "ft_v1.1", desired: str = "ft_v1.1", *conditions, message: str = ""):
    return ModelReleaseStatus(
        phase=phase,  # type: ignore[arg-type]
        current_model=current,
        desired_model=desired,
        message=message,
        conditions=with_conditions(*conditions),
    )


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(a_pool(), ("InProgress", "NotReconciled"), id="a pool never reconciled is in progress"),
        pytest.param(
            a_pool((PoolCondition.READY, True, "SamplesListed")),
            ("Current", "SamplesListed"),
            id="a pool whose last reconcile listed its store is ready",
        ),
        pytest.param(
            a_pool((PoolCondition.READY, False, "SpecInvalid")),
            ("Failed", "SpecInvalid"),
            id="a pool with an invalid spec is stalled until a person fixes it",
        ),
        pytest.param(
            a_pool((PoolCondition.READY, False, "ObjectStoreUnreachable")),
            ("InProgress", "ObjectStoreUnreachable"),
            id="a pool whose store or credentials cannot be read is reconciling, as it retries",
        ),
    ],
)
def test_pool_health(status: FineTunePoolStatus, expected: tuple[str, str]) -> None:
    health = pool_health(status)
    assert (health.state, health.reason) == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(a_run("Pending"), ("InProgress", "RunInProgress"), id="a pending run is reconciling"),
        pytest.param(a_run("Planning"), ("InProgress", "RunInProgress"), id="a planning run is reconciling"),
        pytest.param(
            a_run("Training", message="Job x running"),
            ("InProgress", "RunInProgress", "Training: Job x running"),
            id="a training run is reconciling and says which Job runs",
        ),
        pytest.param(a_run("Gating"), ("InProgress", "RunInProgress"), id="a gating run is reconciling"),
        pytest.param(
            a_run("Succeeded", "Pass"),
            ("Current", "RunSucceeded", "verdict Pass"),
            id="a passed run is ready",
        ),
        pytest.param(
            a_run("Succeeded", "Reject"),
            ("Current", "RunSucceeded", "verdict Reject"),
            id="a rejected run is ready too: the verdict is its result, releases decide what deploys",
        ),
        pytest.param(
            a_run("Succeeded", "Review"),
            ("Current", "RunSucceeded", "verdict Review, waiting for approval (`ballast runs approve`)"),
            id="a run in review says it waits for an approval",
        ),
        pytest.param(
            a_run("Succeeded", "Review", approved=True),
            ("Current", "RunSucceeded", "verdict Review, approved"),
            id="an approved review says so",
        ),
        pytest.param(
            a_run("Failed", message="TrainingFailed: Job x BackoffLimitExceeded"),
            ("Failed", "RunFailed", "TrainingFailed: Job x BackoffLimitExceeded"),
            id="a failed run is stalled with its failure as the message",
        ),
    ],
)
def test_run_health(status: FineTuneRunStatus, expected: tuple[str, ...]) -> None:
    health = run_health(status)
    assert (health.state, health.reason, health.message)[: len(expected)] == expected


BLOCKED = ReleaseCondition.BLOCKED
AVAILABLE = ReleaseCondition.AVAILABLE


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        pytest.param(
            a_release("Released", "ft_v1.1", "ft_v1.1"),
            ("Current", "RolledOut"),
            id="a release that runs the desired model is ready",
        ),
        pytest.param(
            a_release("Released", "ft_v1.1", "ft_v1.2"),
            ("InProgress", "Progressing"),
            id="a released model that is no longer the desired one is not ready",
        ),
        pytest.param(
            a_release("Pending", None), ("InProgress", "NotReconciled"), id="a pending release is reconciling"
        ),
        pytest.param(
            a_release("Progressing"), ("InProgress", "Progressing"), id="a release rolling out is reconciling"
        ),
        pytest.param(
            a_release("Blocked", None, "ft_v1.1", (BLOCKED, True, "RunNotApproved")),
            ("Failed", "RunNotApproved"),
            id="a release blocked on a missing approval is stalled with that reason",
        ),
        pytest.param(
            a_release("Blocked", None, "ft_v1.1", (BLOCKED, True, "RunRejected")),
            ("Failed", "RunRejected"),
            id="a release of a rejected model is stalled",
        ),
        pytest.param(
            a_release("Blocked", None, "ft_v1.1", (BLOCKED, True, "DeploymentNotFound")),
            ("Failed", "DeploymentNotFound"),
            id="a release without its Deployment is stalled",
        ),
        pytest.param(
            a_release("Blocked", None, "ft_v1.1", (BLOCKED, True, "RunNotFinished")),
            ("InProgress", "RunNotFinished"),
            id="a release waiting for its model's run to finish is reconciling, not stalled",
        ),
        pytest.param(
            a_release("Blocked", None), ("Failed", "Blocked"), id="a blocked release without its condition is stalled"
        ),
        pytest.param(
            a_release("RolledBack", "base_v1", "ft_v1.1", (AVAILABLE, False, "RolloutFailed")),
            ("Failed", "RolloutFailed"),
            id="a rolled-back release is stalled",
        ),
        pytest.param(a_release("Failed", None), ("Failed", "RolloutFailed"), id="a failed release is stalled"),
        pytest.param(
            a_release("Released", "ft_v1.1", "ft_v1.1", (ReleaseCondition.MODEL_DRIFT, True, "ModelDrift")),
            ("Failed", "ModelDrift"),
            id="a release whose pods run another model is stalled, not ready",
        ),
        pytest.param(
            a_release("Released", "ft_v1.1", "ft_v1.1", (ReleaseCondition.MODEL_DRIFT, False, "PodsRunReleasedModel")),
            ("Current", "RolledOut"),
            id="a release whose drift ended is ready again",
        ),
    ],
)
def test_release_health(status: ModelReleaseStatus, expected: tuple[str, str]) -> None:
    health = release_health(status)
    assert (health.state, health.reason) == expected


def types_and_statuses(conditions: list) -> dict[str, str]:
    return {c.type: c.status for c in conditions}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        pytest.param("Current", {"Ready": "True"}, id="a current object is ready and neither reconciling nor stalled"),
        pytest.param(
            "InProgress", {"Ready": "False", "Reconciling": "True"}, id="an object in progress is reconciling"
        ),
        pytest.param("Failed", {"Ready": "False", "Stalled": "True"}, id="a failed object is stalled"),
    ],
)
def test_abnormal_conditions_are_present_only_while_true(state: str, expected: dict[str, str]) -> None:
    earlier = FineTuneRunStatus(
        observed_generation=4,
        conditions=with_conditions(("Reconciling", True, "RunInProgress"), ("Stalled", True, "RunFailed")),
    )
    status = summarized(earlier, Health(state, "SomeReason", "m"), T0)  # type: ignore[arg-type]
    assert types_and_statuses(status.conditions) == expected
    assert {c.observed_generation for c in status.conditions} == {4}


def test_summary_conditions_carry_the_generation_the_status_was_computed_for() -> None:
    status = summarize_run(a_run("Training").evolve(observed_generation=7), T0)
    assert [(c.type, c.observed_generation) for c in status.conditions][1:] == [("Ready", 7), ("Reconciling", 7)]


def test_the_summary_keeps_its_transition_time_while_its_status_holds() -> None:
    first = summarize_release(a_release("Progressing"), T0)
    later = summarize_release(first.evolve(message="2/3 available"), T0 + timedelta(minutes=1))
    ready = next(c for c in later.conditions if c.type == "Ready")
    assert ready.last_transition_time == T0 and ready.message == "2/3 available"


def test_an_invalid_pool_spec_stalls_the_generation_it_names() -> None:
    status = spec_invalid(FineTunePoolStatus(observed_generation=1), "spec.classes: too short", T0, 2)
    assert status.observed_generation == 2
    assert types_and_statuses(status.conditions) == {"Ready": "False", "Stalled": "True"}
    assert all(c.observed_generation == 2 for c in status.conditions)


def test_an_unreachable_store_leaves_the_pool_reconciling() -> None:
    status = store_unreachable(FineTunePoolStatus(), "object store down; retrying every 30 s", T0, 2)
    assert types_and_statuses(status.conditions) == {"Ready": "False", "Reconciling": "True"}


def test_every_kind_spells_the_summary_conditions_alike() -> None:
    for kind in (PoolCondition, RunCondition, ReleaseCondition):
        assert (kind.READY, kind.RECONCILING, kind.STALLED) == ("Ready", "Reconciling", "Stalled")
