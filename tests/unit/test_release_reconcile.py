"""decide_release: when a serving Deployment moves, and what the release records."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from ballast.api.finetunepool import FineTunePoolStatus
from ballast.api.modelrelease import ModelReleaseSpec, ModelReleaseStatus, ReleaseRecord
from ballast.policy.modelrelease import DeploymentView, ReleaseObservation, ReleaseStep, decide_release
from ballast.policy.servingconfig import ModelConfigView, ModelSource, PodView

from .builders import DIGEST, T0, a_model, a_pool_spec, a_run_summary

APPROVER = "ana"  # a Review approval the operator verified
READS_RELEASE = ModelSource(config_maps=("rel-model",))


def deployment(
    rollout: str = "Available",
    containers: tuple = ("serve",),
    release: str | None = "rel",
    source: ModelSource = READS_RELEASE,
) -> DeploymentView:
    """The target Deployment; by default its owner opted in to release `rel` (the label) and its
    container reads the release's ConfigMap."""
    return DeploymentView(
        name="d",
        release=release,
        containers=containers,
        rollout=rollout,  # type: ignore[arg-type]
        detail="1/1 available",
        sources={name: source for name in containers},
    )


def a_config(version: str, release: str = "rel") -> ModelConfigView:
    """The release's ConfigMap holding `version` (its published copy), written a minute ago."""
    uri = f"s3://ballast/models/p/{version}/model.pt"
    return ModelConfigView(version, uri, DIGEST, T0 - timedelta(minutes=1), release)


def observe(
    model: str = "ft_v1.1",
    runs: tuple = (),
    dep: DeploymentView | None = None,
    status: ModelReleaseStatus | None = None,
    pool: bool = True,
    container: str | None = None,
    serving: str | None = None,
    **fields: Any,
) -> ReleaseObservation:
    """`serving`: the model in the release's ConfigMap (None: no ConfigMap yet), and the pods rolled
    for it (the template's checksum) unless `rolled=False`."""
    config = a_config(serving) if serving else None
    dep = dep if dep is not None else deployment()
    if config is not None and fields.pop("rolled", True):
        dep = replace(dep, checksum=config.checksum())
    return ReleaseObservation(
        name="rel",
        generation=2,
        now=fields.pop("now", T0),
        spec=ModelReleaseSpec.model_validate(
            {"pool": "p", "deployment": {"name": "d", "container": container}, "model": model}
        ),
        status=status or ModelReleaseStatus(),
        deployment=dep,
        pool=a_pool_spec() if pool else None,
        pool_status=FineTunePoolStatus(),
        runs=runs,
        last_editor="argocd",
        model_config=fields.pop("model_config", config),
        pods=fields.pop("pods", ()),
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
    action = decide_release(observe(runs=(a_run_summary(verdict="Review", approved_by=APPROVER),), serving="base_v1"))
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
    action = decide_release(observe(serving="ft_v1.1", status=rolling))
    assert action.step is ReleaseStep.UPDATE_STATUS and action.status.phase == "Released"
    assert action.status.history == [record] and action.status.pending is None
    settled = decide_release(observe(serving="ft_v1.1", status=action.status))
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
        observe(serving="ft_v1.1", dep=deployment(rollout=rollout), status=rolling, now=T0 + timedelta(minutes=minutes))
    )
    assert action.step is step
    if step is ReleaseStep.ROLL_BACK:
        assert action.target == earlier.model and action.status.failed_model == "ft_v1.1"
        assert action.status.phase == "RolledBack" and action.status.rollbacks == 1
    else:
        assert action.wake_at == T0 + timedelta(minutes=10)


def test_a_model_that_failed_to_roll_out_is_not_retried_until_spec_changes() -> None:
    failed = ModelReleaseStatus(phase="RolledBack", failed_model="ft_v1.1", current_model="base_v1")
    first = decide_release(observe(runs=(a_run_summary(),), serving="base_v1", status=failed))
    # A status written before the summary conditions existed gets them; the Deployment is not touched.
    assert first.step is ReleaseStep.UPDATE_STATUS and first.target is None
    assert [c.type for c in first.status.conditions] == ["Ready", "Stalled"]
    action = decide_release(observe(runs=(a_run_summary(),), serving="base_v1", status=first.status))
    assert action.step is ReleaseStep.NOTHING


def test_going_back_to_a_model_released_before_counts_as_a_rollback() -> None:
    history = [ReleaseRecord(model=a_model("ft_v1.2"), released_at=T0), ReleaseRecord(model=a_model(), released_at=T0)]
    status = ModelReleaseStatus(phase="Released", current_model="ft_v1.2", history=history)
    runs = (a_run_summary(), a_run_summary("p-run-2", model=a_model("ft_v1.2")))
    action = decide_release(observe(runs=runs, serving="ft_v1.2", status=status))
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
    settled = decide_release(observe(serving="ft_v1.1", status=ModelReleaseStatus(phase="Released")))
    released = settled.status.evolve(observed_generation=1)
    action = decide_release(observe(serving="ft_v1.1", status=released))
    assert action.step is ReleaseStep.UPDATE_STATUS and action.target is None
    assert action.status.observed_generation == 2
    assert {c.type: c.observed_generation for c in action.status.conditions}["Ready"] == 2
    again = decide_release(observe(serving="ft_v1.1", status=action.status))
    assert again.step is ReleaseStep.NOTHING


# ---- the release's ConfigMap, and what the pods run ---------------------------------------------
# Released, as the operator left it (with its summary conditions and the generation it saw).
RELEASED = decide_release(
    observe(
        serving="ft_v1.1",
        status=ModelReleaseStatus(
            phase="Released",
            current_model="ft_v1.1",
            desired_model="ft_v1.1",
            observed_generation=2,
            history=[ReleaseRecord(model=a_model(), run="p-run-1", verdict="Pass", released_at=T0)],
        ),
    )
).status


def a_pod(
    name: str = "d-1", ready: bool = True, started: timedelta = timedelta(0), checksum: str | None = None, **source: Any
) -> PodView:
    return PodView(name, ready, T0 + started, ModelSource(**source) if source else READS_RELEASE, checksum)


@pytest.mark.parametrize(
    ("source", "says"),
    [
        pytest.param(
            ModelSource(),
            "envFrom: [{configMapRef: {name: rel-model}}]",
            id="a container that does not read the release's ConfigMap is not moved",
        ),
        pytest.param(
            ModelSource(("rel-model",), (("BALLAST_MODEL_URI", "s3://b/old.pt"),)),
            "remove its env BALLAST_MODEL_URI",
            id="a container that sets its model itself is not moved (env wins over envFrom)",
        ),
    ],
)
def test_a_deployment_that_does_not_take_its_model_from_the_release_is_blocked_with_the_fix(
    source: ModelSource, says: str
) -> None:
    action = decide_release(observe(runs=(a_run_summary(),), dep=deployment(source=source)))
    blocked = next(c for c in action.status.conditions if c.type == "Blocked")
    assert action.step is ReleaseStep.BLOCK and blocked.reason == "DeploymentNotReadingModel"
    assert says in blocked.message


def test_a_config_map_of_that_name_which_is_not_the_releases_is_never_overwritten() -> None:
    foreign = a_config("ft_v0.9", release="")  # someone's own ConfigMap, without the release's label
    action = decide_release(observe(runs=(a_run_summary(),), model_config=foreign))
    blocked = next(c for c in action.status.conditions if c.type == "Blocked")
    assert action.step is ReleaseStep.BLOCK and blocked.reason == "ConfigMapNotOwned"


@pytest.mark.parametrize(
    ("pods", "drift"),
    [
        pytest.param(
            (a_pod("d-1"), a_pod("d-2")), None, id="pods that read the ConfigMap since it changed run the release"
        ),
        pytest.param(
            (a_pod("d-1"), a_pod("d-2", literal=(("BALLAST_MODEL_VERSION", "ft_v0.9"), ("BALLAST_MODEL_URI", "x")))),
            "d-2 runs ft_v0.9 (env in the pod spec)",
            id="a pod whose spec sets another model drifts (a Git sync restored the old env)",
        ),
        pytest.param(
            (a_pod("d-1", config_maps=()),),
            "d-1 does not read ConfigMap rel-model",
            id="a pod that stopped reading the ConfigMap drifts",
        ),
        pytest.param(
            (a_pod("d-1", started=-timedelta(minutes=5)),),
            "d-1 started before ft_v1.1 was written",
            id="a pod that started before the ConfigMap got the model runs an earlier one",
        ),
        pytest.param(
            (a_pod("d-1", ready=False, literal=(("BALLAST_MODEL_VERSION", "ft_v0.9"),)),),
            None,
            id="a pod that is not ready serves nothing and is not counted",
        ),
    ],
)
def test_a_released_model_is_checked_against_what_the_ready_pods_run(pods: tuple, drift: str | None) -> None:
    action = decide_release(observe(serving="ft_v1.1", status=RELEASED, pods=pods))
    if drift is None:
        assert action.step is ReleaseStep.NOTHING
        return
    condition = next(c for c in action.status.conditions if c.type == "ModelDrift")
    assert action.step is ReleaseStep.UPDATE_STATUS and (condition.status, condition.reason) == ("True", "ModelDrift")
    assert drift in condition.message and action.events[0].warning
    assert action.status.phase == "Released"  # the release is not undone: the pods are what is wrong


def test_drift_is_reported_once_and_its_end_is_reported_too() -> None:
    drifted = (a_pod("d-2", literal=(("BALLAST_MODEL_VERSION", "ft_v0.9"),)),)
    first = decide_release(observe(serving="ft_v1.1", status=RELEASED, pods=drifted))
    again = decide_release(observe(serving="ft_v1.1", status=first.status, pods=drifted))
    assert again.step is ReleaseStep.NOTHING
    healed = decide_release(observe(serving="ft_v1.1", status=first.status, pods=(a_pod("d-3"),)))
    condition = next(c for c in healed.status.conditions if c.type == "ModelDrift")
    assert healed.step is ReleaseStep.UPDATE_STATUS and condition.status == "False"
    assert healed.events[0].reason == "PodsRunReleasedModel"


@pytest.mark.parametrize("rollout", ["Progressing", "Failed"])
def test_a_rollout_of_gits_own_after_the_release_is_never_timed_out_or_undone(rollout: str) -> None:
    released = RELEASED.evolve(rollout_started_at=T0 - timedelta(hours=2))  # long past its deadline
    action = decide_release(observe(serving="ft_v1.1", status=released, dep=deployment(rollout=rollout)))
    assert action.step is ReleaseStep.NOTHING


def test_a_write_that_failed_halfway_is_written_again_and_not_counted_as_a_rollback() -> None:
    # The ConfigMap got ft_v1.1, then the Deployment's annotation could not be written: pods never rolled.
    base = ReleaseRecord(model=a_model("base_v1"), released_at=T0 - timedelta(days=1))
    rolling = ModelReleaseStatus(phase="Progressing", current_model="base_v1", history=[base])
    action = decide_release(observe(runs=(a_run_summary(),), serving="ft_v1.1", status=rolling, rolled=False))
    assert action.step is ReleaseStep.ROLL_OUT and not action.rollback


def test_a_release_whose_first_model_failed_to_roll_out_does_not_roll_back_again_and_again() -> None:
    # Nothing served before: the failed model stays in the ConfigMap; the release must stay put.
    failed = decide_release(
        observe(
            runs=(a_run_summary(),),
            serving="ft_v1.1",
            dep=deployment(rollout="Failed"),
            status=ModelReleaseStatus(phase="Progressing", rollout_started_at=T0),
        )
    )
    assert failed.step is ReleaseStep.ROLL_BACK and failed.status.rollbacks == 1
    again = decide_release(
        observe(runs=(a_run_summary(),), serving="ft_v1.1", dep=deployment(rollout="Failed"), status=failed.status)
    )
    assert again.step in (ReleaseStep.NOTHING, ReleaseStep.UPDATE_STATUS) and again.status.rollbacks == 1
    assert again.events == ()


def test_model_drift_does_not_outlive_the_released_state() -> None:
    drifted = decide_release(
        observe(serving="ft_v1.1", status=RELEASED, pods=(a_pod(literal=(("BALLAST_MODEL_VERSION", "x"),)),))
    )
    blocked = decide_release(observe("ft_v1.7", serving="ft_v1.1", status=drifted.status))
    assert blocked.step is ReleaseStep.BLOCK
    assert "ModelDrift" not in {c.type for c in blocked.status.conditions}


@pytest.mark.parametrize(
    ("pod", "drifts"),
    [
        pytest.param(
            a_pod(checksum="0" * 16, started=timedelta(minutes=5)),
            True,
            id="a pod started for another model's checksum drifts",
        ),
        pytest.param(a_pod(started=-timedelta(seconds=3)), False, id="a few seconds of clock skew are not drift"),
        pytest.param(
            replace(a_pod(), source=ModelSource(("rel-model",), (), overridden=True)),
            True,
            id="a pod whose model keys come from elsewhere too drifts",
        ),
    ],
)
def test_what_a_pod_runs_is_read_from_its_checksum_first_then_its_start(pod: PodView, drifts: bool) -> None:
    action = decide_release(observe(serving="ft_v1.1", status=RELEASED, pods=(pod,)))
    condition = next((c for c in action.status.conditions if c.type == "ModelDrift"), None)
    assert (condition is not None and condition.status == "True") is drifts
