"""`ballast runs retry`: which runs may be retried, and what the retry carries over."""

from __future__ import annotations

import pytest

from ballast.api.finetunepool import FineTunePoolStatus
from ballast.api.finetunerun import FineTuneRunSpec, FineTuneRunStatus, SampleSnapshot
from ballast.policy.retry import LABEL_RETRY_OF, build_retry, retry_name, retry_refusal

from .builders import DIGEST, a_model, a_pool_spec, a_run_spec

SNAPSHOT = SampleSnapshot(sample_count=60, manifest_digest=DIGEST)


@pytest.mark.parametrize(
    ("status", "active", "refused"),
    [
        pytest.param(FineTuneRunStatus(phase="Failed"), (), None, id="a failed run may be retried"),
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Reject"), (), None, id="a rejected run may be retried"
        ),
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Pass"), (), "verdict Pass", id="a passed run is not retried"
        ),
        pytest.param(
            FineTuneRunStatus(phase="Succeeded", verdict="Review"),
            (),
            "verdict Review",
            id="a run in Review is approved or left, not retried",
        ),
        pytest.param(FineTuneRunStatus(phase="Training"), (), "phase Training", id="a running run is not retried"),
        pytest.param(
            FineTuneRunStatus(phase="Failed"), ("p-run-7",), "p-run-7", id="not while the pool has a run in progress"
        ),
    ],
)
def test_which_runs_may_be_retried(status: FineTuneRunStatus, active: tuple, refused: str | None) -> None:
    refusal = retry_refusal("p-run-1", status, True, active)
    if refused is None:
        assert refusal is None
    else:
        assert refusal is not None and refused in refusal


def test_a_run_that_failed_before_freezing_its_samples_has_nothing_to_retry_on() -> None:
    refusal = retry_refusal("p-run-1", FineTuneRunStatus(phase="Failed"), False, ())
    assert refusal is not None and "frozen" in refusal


def test_a_retry_is_a_new_run_on_the_same_snapshot_with_the_pools_recipe_now() -> None:
    spec = a_run_spec(snapshot=None, trigger="Volume", seed=5, training={"batch": 64})
    status = FineTuneRunStatus(phase="Failed", snapshot=SNAPSHOT)
    pool = ("pool-uid", a_pool_spec(), FineTunePoolStatus())
    body = build_retry("p-run-1", spec, status, {"p-run-1", "p-run-1-retry-1"}, pool)
    assert body["metadata"]["name"] == "p-run-1-retry-2"
    assert body["metadata"]["labels"][LABEL_RETRY_OF] == "p-run-1"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "pool-uid"
    retry = FineTuneRunSpec.model_validate(body["spec"])
    assert (retry.trigger, retry.retry_of, retry.snapshot, retry.seed) == ("Retry", "p-run-1", SNAPSHOT, 5)
    assert retry.training is None and retry.approval is None  # the pool's recipe, as fixed since
    assert retry.base_model == a_pool_spec().base_model


def test_a_retry_starts_from_the_base_the_pool_adopted_since() -> None:
    adopted = a_model("base_v2")
    pool = ("pool-uid", a_pool_spec(), FineTunePoolStatus(current_base_model=adopted))
    body = build_retry("p-run-1", a_run_spec(), FineTuneRunStatus(phase="Failed"), (), pool)
    assert FineTuneRunSpec.model_validate(body["spec"]).base_model.version == "base_v2"


def test_retry_names_stay_valid_object_names() -> None:
    assert len(retry_name("x" * 63, ())) <= 63
