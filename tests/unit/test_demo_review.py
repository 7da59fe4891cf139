"""The demo's reviewer never signs off a Review that would make production worse."""

from __future__ import annotations

from typing import Any

import pytest

from ballast.api.finetunerun import GateEvidence
from ballast_dev.demo.results import ModelRow, lesson_summary, reviewer_decision


def evidence(gate1: str = "Pass", rate: float = 0.9, held_out: float | None = None, **serving: Any) -> GateEvidence:
    """The operator's verified figures for a Review; `serving`: the serving model's rates."""
    fields: dict[str, Any] = {
        "map50_drop": 0.2 if gate1 == "Pass" else 1.5,
        "drop_unit": "points",
        "detection_rate": rate,
        "held_out_detection_rate": held_out,
        "gate1": gate1,
        "gate2": "Review",
    }
    if serving:
        fields |= {"serving_model": "ft_v1.1", **serving}
    return GateEvidence(**fields)


@pytest.mark.parametrize(
    ("figures", "approve", "why"),
    [
        pytest.param(
            evidence(rate=0.5, serving_detection_rate=0.6),
            False,
            "serving",
            id="a candidate worse than the serving model is refused",
        ),
        pytest.param(
            evidence(rate=0.6, serving_detection_rate=0.6),
            False,
            "serving",
            id="one no better than the serving model is refused",
        ),
        pytest.param(
            evidence(rate=0.9, held_out=0.55, serving_detection_rate=0.5, serving_held_out_detection_rate=0.6),
            False,
            "held-out",
            id="one better overall but worse on the held-out documents than the serving model is refused",
        ),
        pytest.param(
            evidence(gate1="Review"), False, "regressed", id="one that regressed on the original documents is refused"
        ),
        pytest.param(evidence(rate=0.7), False, "under Gate 2", id="one short of Gate 2 waits for more samples"),
        pytest.param(
            evidence(rate=0.9, held_out=0.85, serving_detection_rate=0.5, serving_held_out_detection_rate=0.4),
            True,
            "",
            id="one better than serving within both gates could go",
        ),
    ],
)
def test_the_demos_reviewer(figures: GateEvidence, approve: bool, why: str) -> None:
    decision = reviewer_decision(figures, 0.8)
    assert decision.approve is approve and why in decision.reason


def row(drop: float, held_out: float, verdict: str) -> ModelRow:
    return ModelRow(model="m", role="r", map50_drop=drop, detection_held_out=held_out, verdict=verdict)


@pytest.mark.parametrize(
    ("unmixed", "says", "never"),
    [
        pytest.param(
            row(4.2, 0.7, "Reject"),
            ["forgot", "fell 4.2 points", "reject"],
            ["small"],
            id="a rejected run is told as forgetting",
        ),
        pytest.param(
            row(0.002, 0.8, "Review"),
            ["lost 0.00 points", "forgetting is small", "verdict Review", "80%"],
            ["forgot:"],
            id="a run that barely forgot is not told as forgetting",
        ),
    ],
)
def test_the_lesson_says_what_the_failures_only_run_measured(
    unmixed: ModelRow, says: list[str], never: list[str]
) -> None:
    text = lesson_summary(row(0.0, 0.875, "Pass"), unmixed)
    assert all(s in text for s in says), text
    assert not any(n in text for n in never), text
    assert "88%" in text  # the mixed run's held-out figure beside it
