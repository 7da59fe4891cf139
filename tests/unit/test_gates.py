from __future__ import annotations

import pytest

from ballast.api.params import ABGate, NewSampleGate, RegressionGate
from ballast.policy.gates import ClassAP, ab_gate, map50_drop, new_sample_gate, overall_verdict, regression_gate

POINTS = RegressionGate()

AUDIT = "audit/p/manifest.txt"


@pytest.mark.parametrize(
    ("base", "candidate", "verdict"),
    [
        # Seed section 4, Gate 1: drop < 1% PASS, 1-3% REVIEW, > 3% REJECT (points of mAP50 by default).
        pytest.param(0.80, 0.80001, "Pass", id="a better candidate passes"),
        pytest.param(0.80, 0.79001, "Pass", id="a drop of 0.999 points passes"),
        pytest.param(0.80, 0.79, "Review", id="a drop of exactly 1.0 point needs review"),
        pytest.param(0.85, 0.84, "Review", id="1.0 point despite float noise needs review"),
        pytest.param(0.80, 0.78, "Review", id="a drop of 2 points needs review"),
        pytest.param(0.80, 0.77, "Review", id="a drop of exactly 3.0 points needs review"),
        pytest.param(0.80, 0.76999, "Reject", id="a drop of 3.001 points is rejected"),
        pytest.param(0.80, 0.50, "Reject", id="a forgetting model is rejected"),
    ],
)
def test_gate1_regression_in_points(base: float, candidate: float, verdict: str) -> None:
    assert regression_gate(base, candidate, POINTS).verdict == verdict


@pytest.mark.parametrize(
    ("drop", "verdict"),
    [(0.999, "Pass"), (1.0, "Review"), (3.0, "Review"), (3.001, "Reject")],
    ids=["0.999 passes", "1.0 reviews", "3.0 reviews", "3.001 rejects"],
)
def test_gate1_boundaries_exactly(drop: float, verdict: str) -> None:
    assert regression_gate(0.5, 0.5 - drop / 100, POINTS).verdict == verdict


def test_gate1_in_percent_is_relative_to_the_base() -> None:
    percent = RegressionGate(unit="percent")
    assert map50_drop(0.50, 0.49, "percent") == 2.0
    assert regression_gate(0.50, 0.49, percent).verdict == "Review"
    assert regression_gate(0.50, 0.496, percent).verdict == "Pass"
    assert "percent" in regression_gate(0.50, 0.49, percent).reason


def test_the_gate1_reason_shows_both_numbers_and_the_unit() -> None:
    reason = regression_gate(0.80, 0.78, POINTS).reason
    assert "0.8000 -> 0.7800" in reason and "2 points" in reason


@pytest.mark.parametrize(
    ("rate", "verdict"),
    [(0.8001, "Pass"), (0.80, "Review"), (0.5, "Review"), (1.0, "Pass")],
    ids=["0.8001 passes", "exactly 0.80 needs review", "half needs review", "all found passes"],
)
def test_gate2_new_sample_detection_rate(rate: float, verdict: str) -> None:
    # Seed section 4, Gate 2: > 80% correct PASS, < 80% REVIEW.
    assert new_sample_gate(rate, NewSampleGate()).verdict == verdict


def test_gate3_is_a_pass_when_disabled() -> None:
    assert ab_gate([ClassAP("date", 0.9, 0.1)], ABGate()).verdict == "Pass"


def test_gate3_reviews_a_class_that_got_worse() -> None:
    decision = ab_gate(
        [ClassAP("title", 0.9, 0.95), ClassAP("date", 0.9, 0.85)], ABGate(enabled=True, audit_manifest=AUDIT)
    )
    assert decision.verdict == "Review"
    assert "date" in decision.reason and "title" not in decision.reason


def test_gate3_tolerates_a_drop_within_tolerance() -> None:
    gate = ABGate(enabled=True, audit_manifest=AUDIT, per_class_tolerance=5.0)
    assert ab_gate([ClassAP("date", 0.90, 0.85)], gate).verdict == "Pass"
    assert ab_gate([ClassAP("date", 0.90, 0.8499)], gate).verdict == "Review"


@pytest.mark.parametrize(
    ("verdicts", "overall"),
    [
        (["Pass", "Pass", "Pass"], "Pass"),
        (["Pass", "Review", "Pass"], "Review"),
        (["Review", "Reject", "Pass"], "Reject"),
        (["Reject"], "Reject"),
    ],
    ids=["all pass", "one review means review", "any reject rejects", "a lone reject rejects"],
)
def test_overall_verdict_is_the_strictest(verdicts: list, overall: str) -> None:
    assert overall_verdict(verdicts) == overall


@pytest.mark.parametrize(
    ("gate", "refused"),
    [
        pytest.param({"enabled": True}, True, id="Gate 3 switched on without an audit set is refused"),
        pytest.param({"enabled": True, "auditManifest": ""}, True, id="an empty audit manifest key is refused too"),
        pytest.param({"enabled": True, "auditManifest": AUDIT}, False, id="Gate 3 with an audit set is accepted"),
        pytest.param({"enabled": False}, False, id="Gate 3 off needs no audit set"),
    ],
)
def test_gate3_needs_an_audit_set(gate: dict, refused: bool) -> None:
    if refused:
        with pytest.raises(ValueError, match="auditManifest"):
            ABGate.model_validate(gate)
    else:
        ABGate.model_validate(gate)
