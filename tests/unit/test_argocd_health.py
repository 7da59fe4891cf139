"""Argo CD's health checks (deploy/argocd/argocd-cm.yaml), run by a real Lua 5.1 interpreter
(Argo CD's gopher-lua speaks 5.1) the way Argo CD runs them: `obj` is the object, the script
returns `hs` with `status` and `message`. The sample statuses come from the operator's own summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa.lua51 import LuaRuntime

from ballast.api.common import API_VERSION
from ballast.api.finetunepool import FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunStatus
from ballast.api.modelrelease import ModelReleaseStatus
from ballast.codegen import argocd
from ballast.policy.conditions import set_condition
from ballast.policy.finetunepool import spec_invalid, store_unreachable
from ballast.policy.summary import summarize_pool, summarize_release, summarize_run

from .builders import T0

ROOT = Path(__file__).resolve().parents[2]
CONFIGMAP = yaml.safe_load((ROOT / "deploy" / "argocd" / "argocd-cm.yaml").read_text())


def health(obj: dict[str, Any]) -> tuple[str, str]:
    """What Argo CD would show for `obj`: the script its ConfigMap holds for the object's kind."""
    script = CONFIGMAP["data"][argocd.health_key(obj["kind"])]
    lua = LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    return hs["status"], hs["message"]


def an_object(kind: str, status: Any, generation: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": "x", "namespace": "ml", "generation": generation},
        "spec": {},
        "status": status.to_wire() if status is not None else None,
    }


def a_pool(status: FineTunePoolStatus) -> dict[str, Any]:
    return an_object("FineTunePool", status)


def listed_pool() -> FineTunePoolStatus:
    conditions = set_condition([], "Ready", True, "SamplesListed", "120 verified samples", T0, 2)
    return summarize_pool(FineTunePoolStatus(observed_generation=2, conditions=conditions), T0)


def a_run(phase: str, verdict: str | None = None, approved: bool | None = None, message: str = "") -> dict[str, Any]:
    conditions = []
    if approved is not None:
        conditions = set_condition([], "Approved", approved, "Approved" if approved else "RunNotApproved", "", T0, 2)
    status = FineTuneRunStatus(
        observed_generation=2,
        phase=phase,  # type: ignore[arg-type]
        verdict=verdict,  # type: ignore[arg-type]
        message=message,
        conditions=conditions,
    )
    return an_object("FineTuneRun", summarize_run(status, T0))


def a_release(phase: str, blocked: str | None = None, current: str | None = "ft_v1.1", message: str = ""):
    conditions = set_condition([], "Blocked", True, blocked, message, T0, 2) if blocked else []
    status = ModelReleaseStatus(
        observed_generation=2,
        phase=phase,  # type: ignore[arg-type]
        current_model=current,
        desired_model="ft_v1.1",
        message=message,
        conditions=conditions,
    )
    return an_object("ModelRelease", summarize_release(status, T0))


def stale(obj: dict[str, Any]) -> dict[str, Any]:
    """The same object after someone changed its spec, before the operator saw the change."""
    return {**obj, "metadata": {**obj["metadata"], "generation": obj["metadata"]["generation"] + 1}}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        pytest.param(
            a_pool(listed_pool()), ("Healthy", "SamplesListed: 120 verified samples"), id="a listed pool is healthy"
        ),
        pytest.param(
            a_pool(spec_invalid(FineTunePoolStatus(), "spec.classes: too short", T0, 2)),
            ("Degraded", "SpecInvalid: spec.classes: too short"),
            id="a pool with an invalid spec is degraded and names the field",
        ),
        pytest.param(
            a_pool(store_unreachable(FineTunePoolStatus(), "store down; retrying every 30 s", T0, 2)),
            ("Progressing", "ObjectStoreUnreachable: store down; retrying every 30 s"),
            id="a pool retrying its store is progressing",
        ),
        pytest.param(
            an_object("FineTunePool", None),
            ("Progressing", "Waiting for the Ballast operator"),
            id="a pool without a status waits for the operator",
        ),
        pytest.param(
            stale(a_pool(listed_pool())),
            ("Progressing", "Waiting for the operator to observe generation 3"),
            id="a pool whose spec changed since its status is progressing",
        ),
        pytest.param(a_run("Pending"), ("Progressing", "RunInProgress: Pending"), id="a pending run is progressing"),
        pytest.param(
            a_run("Planning", message="plan written"),
            ("Progressing", "RunInProgress: Planning: plan written"),
            id="a planning run is progressing",
        ),
        pytest.param(
            a_run("Training", message="Job r-train running"),
            ("Progressing", "RunInProgress: Training: Job r-train running"),
            id="a training run is progressing and says which Job",
        ),
        pytest.param(a_run("Gating"), ("Progressing", "RunInProgress: Gating"), id="a gating run is progressing"),
        pytest.param(
            a_run("Succeeded", "Pass", approved=True),
            ("Healthy", "RunSucceeded: verdict Pass"),
            id="a passed run is healthy",
        ),
        pytest.param(
            a_run("Succeeded", "Reject", approved=False),
            ("Healthy", "RunSucceeded: verdict Reject"),
            id="a rejected run is healthy: its verdict is its result",
        ),
        pytest.param(
            a_run("Succeeded", "Review", approved=False),
            ("Suspended", "RunSucceeded: verdict Review, waiting for approval (`ballast runs approve`)"),
            id="a run in review waiting for a person is suspended",
        ),
        pytest.param(
            a_run("Succeeded", "Review", approved=True),
            ("Healthy", "RunSucceeded: verdict Review, approved"),
            id="an approved review is healthy",
        ),
        pytest.param(
            a_run("Failed", message="TrainingFailed: Job r-train BackoffLimitExceeded"),
            ("Degraded", "RunFailed: TrainingFailed: Job r-train BackoffLimitExceeded"),
            id="a failed run is degraded with its failure",
        ),
        pytest.param(
            stale(a_run("Succeeded", "Review", approved=False)),
            ("Progressing", "Waiting for the operator to observe generation 3"),
            id="a run just approved is progressing until the operator sees the approval",
        ),
        pytest.param(
            a_release("Released", message="1/1 available"),
            ("Healthy", "RolledOut: 1/1 available"),
            id="a release running its model is healthy",
        ),
        pytest.param(
            a_release("Progressing", current="base_v1", message="rolling out ft_v1.1"),
            ("Progressing", "Progressing: rolling out ft_v1.1"),
            id="a release rolling out is progressing",
        ),
        pytest.param(
            a_release("Pending", current=None),
            ("Progressing", "NotReconciled: not reconciled yet"),
            id="a pending release is progressing",
        ),
        pytest.param(
            a_release("Blocked", "RunNotApproved", None, "ft_v1.1 needs review: ballast runs approve r"),
            ("Degraded", "RunNotApproved: ft_v1.1 needs review: ballast runs approve r"),
            id="a release blocked on an approval is degraded",
        ),
        pytest.param(
            a_release("Blocked", "RunRejected", None, "ft_v1.1 was rejected"),
            ("Degraded", "RunRejected: ft_v1.1 was rejected"),
            id="a release of a rejected model is degraded",
        ),
        pytest.param(
            a_release("Blocked", "RunNotFinished", None, "r is Gating"),
            ("Progressing", "RunNotFinished: r is Gating"),
            id="a release waiting for its run to finish is progressing",
        ),
        pytest.param(
            a_release("RolledBack", current="base_v1", message="rollout of ft_v1.1 failed"),
            ("Degraded", "RolloutFailed: rollout of ft_v1.1 failed"),
            id="a rolled-back release is degraded",
        ),
        pytest.param(
            a_release("Failed", current=None, message="failed"),
            ("Degraded", "RolloutFailed: failed"),
            id="a failed release is degraded",
        ),
        pytest.param(
            stale(a_release("Released", message="1/1 available")),
            ("Progressing", "Waiting for the operator to observe generation 3"),
            id="a release whose spec.model just changed is progressing, not healthy",
        ),
    ],
)
def test_argo_cd_health(obj: dict[str, Any], expected: tuple[str, str]) -> None:
    assert health(obj) == expected


def test_a_ready_condition_older_than_the_generation_is_progressing() -> None:
    obj = a_release("Released", message="1/1 available")
    obj["status"]["observedGeneration"] = 3
    obj["metadata"]["generation"] = 3
    assert health(obj) == ("Progressing", "Ready is stale: RolledOut: 1/1 available")


def test_the_configmap_holds_the_script_for_each_kind() -> None:
    script = (ROOT / "deploy" / "argocd" / "health.lua").read_text()
    assert CONFIGMAP["metadata"]["name"] == "argocd-cm"
    assert CONFIGMAP["data"] == {
        f"resource.customizations.health.ballast.dev_{kind}": script
        for kind in ("FineTunePool", "FineTuneRun", "ModelRelease")
    }
