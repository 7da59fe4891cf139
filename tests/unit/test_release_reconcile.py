"""decide_release: when a serving Deployment moves, and what the release records."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ballast.api.finetunepool import FineTunePoolStatus
from ballast.api.modelrelease import ModelReleaseSpec, ModelReleaseStatus, ReleaseRecord
from ballast.policy.modelrelease import DeploymentView, ReleaseObservation, ReleaseStep, decide_release

from .builders import T0, a_model, a_pool_spec, a_run_summary

APPROVER = "ana"  # a Review approval the operator verified


def deployment(
    serving: str | None = None, rollout: str = "Available", containers: tuple = ("serve",), release: str | None = "rel"
) -> DeploymentView:
    """The target Deployment; by default its owner opted in to release `rel` (the label)."""
    return DeploymentView(
        name="d",
        release=release,
        containers=containers,
        serving=serving,
        rollout=rollout,
        detail="1/1 available",  # type: ignore[arg-type]
    )


def observe(
    model: str = "ft_v1.1",
    runs: tuple = (),
    dep: DeploymentView | None = None,
    status: ModelReleaseStatus | None = None,
    pool: bool = True,
    container: str | None = None,
    **fields: Any,
) -> ReleaseObservation:
    return ReleaseObservation(
        name="rel",
        generation=2,
        now=fields.pop("now", T0),
        spec=ModelReleaseSpec.model_validate(
            {"pool": "p", "deployment": {"name": "d", "container": container}, "model": model}
        ),
        status=status or ModelReleaseStatus(),
        deployment=dep if dep is not None else deployment(),
        pool=a_pool_spec() if pool else None,
        pool_status=FineTunePoolStatus(),
        runs=runs,
        last_editor="argocd",
    )


@pytest.mark.parametrize(
    ("observation", "step", "reason"),
    [
        pytest.param(observe(runs=(a_run_summary(),)), ReleaseStep.ROLL_OUT, None, id="a Pass model rolls out"),
        pytest.param(
            observe(runs=(a_run_summary(verdict="Review"),)),
            ReleaseStep.BLOCK,
            "RunNotApproved",
            id="a Review model without approval is blocked",
        ),
        pytest.param(
            observe(runs=(a_run_summary(verdict="Review", approved_by=APPROVER),)),
            ReleaseStep.ROLL_OUT,
            None,
            id="an approved Review model rolls out",
        ),
        pytest.param(
            observe(runs=(a_run_summary(verdict="Reject", approved_by=APPROVER),)),
            ReleaseStep.BLOCK,
            "RunRejected",
            id="a rejected model is blocked even when approved",
        ),
        pytest.param(
            observe(runs=(a_run_summary(phase="Gating", verdict=None),)),
            ReleaseStep.BLOCK,
            "RunNotFinished",
            id="a model still being gated is blocked",
        ),
        pytest.param(
            observe(model="ft_v1.7"), ReleaseStep.BLOCK, "ModelNotFound", id="a model no run produced is blocked"
        ),
        pytest.param(observe(model="base_v1"), ReleaseStep.ROLL_OUT, None, id="the pool's base may always serve"),
        pytest.param(
            observe(pool=False), ReleaseStep.BLOCK, "ModelNotFound", id="a release of a missing pool is blocked"
        ),
        pytest.param(
            observe(runs=(a_run_summary(),), container="sidecar"),
            ReleaseStep.BLOCK,
            "DeploymentNotFound",
            id="a container the Deployment lacks blocks the release",
        ),
    ],
)
def test_when_a_deployment_may_move(observation: ReleaseObservation, step: ReleaseStep, reason: str | None) -> None:
    action = decide_release(observation)
    assert action.step is step
    if reason is not None:
        blocked = next(c for c in action.status.conditions if c.type == "Blocked")
        assert (action.status.phase, blocked.status, blocked.reason) == ("Blocked", "True", reason)


@pytest.mark.parametrize(
    ("label", "step"),
    [
        pytest.param(None, ReleaseStep.BLOCK, id="a Deployment without the opt-in label is never moved"),
        pytest.param(
            "someone-else", ReleaseStep.BLOCK, id="a Deployment that opted in to another release is not moved"
        ),
        pytest.param("rel", ReleaseStep.ROLL_OUT, id="a Deployment that names this release may be moved"),
    ],
)
def test_a_deployment_moves_only_when_its_owner_opted_in(label: str | None, step: ReleaseStep) -> None:
    action = decide_release(observe(runs=(a_run_summary(),), dep=deployment(release=label)))
    assert action.step is step
    if step is ReleaseStep.BLOCK:
        blocked = next(c for c in action.status.conditions if c.type == "Blocked")
        assert blocked.reason == "DeploymentNotOptedIn" and "ballast.dev/model-release=rel" in blocked.message


def test_a_missing_deployment_blocks_and_a_repeated_block_posts_no_second_event() -> None:
    missing = ReleaseObservation(**{**observe().__dict__, "deployment": None})
    first = decide_release(missing)
    assert first.status.message == "Deployment d not found" and len(first.events) == 1
    again = decide_release(ReleaseObservation(**{**missing.__dict__, "status": first.status}))
    assert again.step is ReleaseStep.BLOCK and again.events == ()


def test_a_roll_out_points_at_the_published_copy_and_records_who_and_why() -> None:
    action = decide_release(
        observe(runs=(a_run_summary(verdict="Review", approved_by=APPROVER),), dep=deployment("base_v1"))
    )
    assert action.target is not None and action.target.uri == "s3://ballast/models/p/ft_v1.1/model.pt"
    assert action.model is not None and action.model.uri == a_model().uri  # published from the run's copy
    assert action.container == "serve" and not action.rollback
    pending = action.status.pending
    assert pending is not None and (pending.run, pending.verdict, pending.approved_by) == ("p-run-1", "Review", "ana")
    assert pending.released_by == "argocd" and action.status.previous_model == "base_v1"
    assert action.wake_at == T0 + timedelta(seconds=600)


def test_an_available_rollout_is_recorded_in_history_once() -> None:
    record = ReleaseRecord(model=a_model(), run="p-run-1", verdict="Pass", released_at=T0)
    rolling = ModelReleaseStatus(phase="Progressing", pending=record, rollout_started_at=T0)
    action = decide_release(observe(dep=deployment("ft_v1.1"), status=rolling))
    assert action.step is ReleaseStep.UPDATE_STATUS and action.status.phase == "Released"
    assert action.status.history == [record] and action.status.pending is None
    settled = decide_release(observe(dep=deployment("ft_v1.1"), status=action.status))
    assert settled.step is ReleaseStep.NOTHING


@pytest.mark.parametrize(
    ("rollout", "minutes", "step"),
    [
        pytest.param("Progressing", 5, ReleaseStep.UPDATE_STATUS, id="a rollout inside its deadline keeps waiting"),
        pytest.param("Progressing", 11, ReleaseStep.ROLL_BACK, id="a rollout past its deadline is rolled back"),
        pytest.param("Failed", 1, ReleaseStep.ROLL_BACK, id="a failed rollout is rolled back at once"),
    ],
)
def test_a_rollout_that_does_not_become_available(rollout: str, minutes: int, step: ReleaseStep) -> None:
    earlier = ReleaseRecord(model=a_model("base_v1"), released_at=T0 - timedelta(days=1))
    rolling = ModelReleaseStatus(phase="Progressing", rollout_started_at=T0, history=[earlier])
    action = decide_release(
        observe(dep=deployment("ft_v1.1", rollout), status=rolling, now=T0 + timedelta(minutes=minutes))
    )
    assert action.step is step
    if step is ReleaseStep.ROLL_BACK:
        assert action.target == earlier.model and action.status.failed_model == "ft_v1.1"
        assert action.status.phase == "RolledBack" and action.status.rollbacks == 1
    else:
        assert action.wake_at == T0 + timedelta(minutes=10)


def test_a_model_that_failed_to_roll_out_is_not_retried_until_spec_changes() -> None:
    failed = ModelReleaseStatus(phase="RolledBack", failed_model="ft_v1.1", current_model="base_v1")
    first = decide_release(observe(runs=(a_run_summary(),), dep=deployment("base_v1"), status=failed))
    # A status written before the summary conditions existed gets them; the Deployment is not touched.
    assert first.step is ReleaseStep.UPDATE_STATUS and first.target is None
    assert [c.type for c in first.status.conditions] == ["Ready", "Stalled"]
    action = decide_release(observe(runs=(a_run_summary(),), dep=deployment("base_v1"), status=first.status))
    assert action.step is ReleaseStep.NOTHING


def test_going_back_to_a_model_released_before_counts_as_a_rollback() -> None:
    history = [ReleaseRecord(model=a_model("ft_v1.2"), released_at=T0), ReleaseRecord(model=a_model(), released_at=T0)]
    status = ModelReleaseStatus(phase="Released", current_model="ft_v1.2", history=history)
    runs = (a_run_summary(), a_run_summary("p-run-2", model=a_model("ft_v1.2")))
    action = decide_release(observe(runs=runs, dep=deployment("ft_v1.2"), status=status))
    assert action.step is ReleaseStep.ROLL_OUT and action.rollback and action.status.rollbacks == 1
    assert action.events[0].reason == "RollingBack"


def test_a_version_two_runs_produced_differently_is_never_released() -> None:
    # Before versions were unique, a rejected and a passed Rebase could both be called base_v2.
    rejected = a_run_summary("p-run-1", kind="Rebase", verdict="Reject", model=a_model("base_v2", "sha256:" + "1" * 64))
    passed = a_run_summary("p-run-2", kind="Rebase", model=a_model("base_v2", "sha256:" + "2" * 64))
    action = decide_release(observe("base_v2", runs=(rejected, passed)))
    assert action.step is ReleaseStep.BLOCK
    blocked = next(c for c in action.status.conditions if c.type == "Blocked")
    assert blocked.reason == "ModelAmbiguous" and "p-run-1" in blocked.message and "p-run-2" in blocked.message


def test_a_blocked_release_is_stalled_with_the_reason_it_is_blocked() -> None:
    action = decide_release(observe(runs=(a_run_summary(verdict="Review"),)))
    summary = {c.type: (c.status, c.reason, c.observed_generation) for c in action.status.conditions}
    assert summary["Ready"] == ("False", "RunNotApproved", 2)
    assert summary["Stalled"] == ("True", "RunNotApproved", 2)
    assert "Reconciling" not in summary


def test_a_spec_change_that_moves_nothing_still_records_the_generation_it_saw() -> None:
    # kstatus (Flux) waits while status.observedGeneration lags metadata.generation: historyLimit edited.
    settled = decide_release(observe(dep=deployment("ft_v1.1"), status=ModelReleaseStatus(phase="Released")))
    released = settled.status.evolve(observed_generation=1)
    action = decide_release(observe(dep=deployment("ft_v1.1"), status=released))
    assert action.step is ReleaseStep.UPDATE_STATUS and action.target is None
    assert action.status.observed_generation == 2
    assert {c.type: c.observed_generation for c in action.status.conditions}["Ready"] == 2
    again = decide_release(observe(dep=deployment("ft_v1.1"), status=action.status))
    assert again.step is ReleaseStep.NOTHING
