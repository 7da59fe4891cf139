from __future__ import annotations

import pytest

from ballast.policy.eligibility import release_eligibility
from ballast.policy.versions import finetune_version, next_base_version, parse_version, start_model_refusal

from .builders import DIGEST


def test_version_names_follow_the_seed() -> None:
    assert finetune_version("base_v1", 1) == "ft_v1.1"
    assert finetune_version("base_v1", 2) == "ft_v1.2"
    assert next_base_version("base_v1") == "base_v2"
    assert finetune_version(next_base_version("base_v1"), 1) == "ft_v2.1"


def test_a_fine_tune_is_never_the_start_of_another() -> None:
    with pytest.raises(ValueError, match="never chain fine-tunes"):
        finetune_version("ft_v1.1", 2)
    assert "never chain fine-tunes" in (start_model_refusal("ft_v1.1", None) or "")


def test_a_base_with_a_parent_in_its_lineage_is_not_a_base() -> None:
    assert start_model_refusal("base_v1", lineage_base_digest=DIGEST) is not None


def test_a_true_base_may_start_a_fine_tune() -> None:
    assert start_model_refusal("base_v3", lineage_base_digest=None) is None


@pytest.mark.parametrize("bad", ["v1", "base_v0", "ft_v1", "ft_v1.0", "base_v1.pt"])
def test_malformed_version_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a model version"):
        parse_version(bad)


APPROVER = "ana"  # a verified approval of a Review


@pytest.mark.parametrize(
    ("phase", "verdict", "approval", "allowed", "reason"),
    [
        pytest.param("Succeeded", "Pass", None, True, "Pass", id="a Pass model may be released"),
        pytest.param("Succeeded", "Review", None, False, "RunNotApproved", id="a Review model is blocked"),
        pytest.param("Succeeded", "Review", APPROVER, True, "Approved", id="an approved Review model may go"),
        pytest.param("Succeeded", "Reject", None, False, "RunRejected", id="a Reject model never deploys"),
        pytest.param("Succeeded", "Reject", APPROVER, False, "RunRejected", id="not even when approved"),
        pytest.param("Gating", None, None, False, "RunNotFinished", id="a run still gating blocks the release"),
    ],
)
def test_release_eligibility(phase: str, verdict: str | None, approval: str | None, allowed: bool, reason: str) -> None:
    decision = release_eligibility("ft_v1.1", "p-run-1", phase, verdict, approval)  # type: ignore[arg-type]
    assert (decision.allowed, decision.reason) == (allowed, reason)


def test_a_model_no_run_produced_is_blocked() -> None:
    decision = release_eligibility("ft_v1.9", None, None, None, None)
    assert not decision.allowed and "ft_v1.9" in decision.message


@pytest.mark.parametrize(
    ("base", "attempt", "version"),
    [
        pytest.param("base_v1", 1, "base_v2", id="the first Rebase from base_v1 trains base_v2"),
        pytest.param("base_v1", 2, "base_v3", id="a second attempt after a rejected base_v2 trains base_v3"),
        pytest.param("base_v4", 1, "base_v5", id="attempts count from the current base"),
    ],
)
def test_every_rebase_attempt_gets_its_own_version(base: str, attempt: int, version: str) -> None:
    assert next_base_version(base, attempt) == version
