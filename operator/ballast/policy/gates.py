"""Deployment gates (seed section 4) as verdicts from numbers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ballast.api.common import Verdict
from ballast.api.params import ABGate, GateThresholds, NewSampleGate, RegressionGate

# Differences are rounded before comparison so that 0.85 - 0.84 is exactly 1.0 point, not 1.0000000000000009.
_PRECISION = 6


@dataclass(frozen=True)
class GateDecision:
    verdict: Verdict
    reason: str


def map50_drop(base_map50: float, candidate_map50: float, unit: str) -> float:
    """The drop from base to candidate in the gate's unit; negative when the candidate is better.

    `points`: absolute, x100 (0.80 -> 0.79 is 1.0). `percent`: relative to the base's mAP50.
    """
    if unit == "points":
        return round((base_map50 - candidate_map50) * 100, _PRECISION)
    if unit == "percent":
        if base_map50 <= 0:
            return 0.0 if candidate_map50 >= base_map50 else 100.0
        return round((base_map50 - candidate_map50) / base_map50 * 100, _PRECISION)
    raise ValueError(f"unknown drop unit {unit!r}: expected 'points' or 'percent'")


def regression_gate(base_map50: float, candidate_map50: float, gate: RegressionGate) -> GateDecision:
    """Gate 1: drop < passBelow passes, drop > rejectAbove rejects, anything between needs review."""
    drop = map50_drop(base_map50, candidate_map50, gate.unit)
    shown = f"mAP50 {base_map50:.4f} -> {candidate_map50:.4f}, drop {drop:g} {gate.unit}"
    if drop < gate.pass_below:
        return GateDecision("Pass", f"{shown} < {gate.pass_below:g}")
    if drop > gate.reject_above:
        return GateDecision("Reject", f"{shown} > {gate.reject_above:g}")
    return GateDecision("Review", f"{shown} between {gate.pass_below:g} and {gate.reject_above:g}")


@dataclass(frozen=True)
class VersusServing:
    """The candidate and the model serving now, each measured on the same new documents."""

    version: str
    candidate: float
    serving: float
    documents: str  # which: "held-out" (neither model trained on them) or "judged"


def versus_serving(
    version: str,
    candidate: tuple[float, float | None],
    serving: tuple[float, float | None],
) -> VersusServing:
    """Compare on the held-out documents when both models were measured there (the candidate
    trained on the others, so they flatter it), else on the documents Gate 2 judges.
    `candidate`, `serving`: (rate on the judged documents, rate on the held-out ones or None)."""
    if candidate[1] is not None and serving[1] is not None:
        return VersusServing(version, candidate[1], serving[1], "held-out")
    return VersusServing(version, candidate[0], serving[0], "judged")


def judged_documents(gate: NewSampleGate, trained: int, held_out: int) -> str:
    """Which new documents Gate 2's rate is measured on, in words."""
    if held_out == 0:
        return f"the {trained} new documents trained on (none held out)"
    if gate.judge_on == "heldOut":
        return f"the {held_out} held-out new documents"
    return f"all {trained + held_out} new documents ({held_out} held out of training)"


def new_sample_gate(
    detection_rate: float, gate: NewSampleGate, serving: VersusServing | None = None, documents: str = ""
) -> GateDecision:
    """Gate 2: a detection rate above the minimum passes; at or below it, review. A candidate that
    finds less on the new documents than the model serving now is at best a Review: releasing it
    would make production worse at what users reported."""
    shown = f"detection rate {detection_rate:.4f}" + (f" on {documents}" if documents else "")
    if serving is not None and serving.candidate < serving.serving:
        return GateDecision(
            "Review",
            f"{shown}; on the {serving.documents} new documents it finds {serving.candidate:.4f} < "
            f"{serving.serving:.4f} of {serving.version}, which serves now: worse than production",
        )
    if detection_rate > gate.min_detection_rate:
        return GateDecision("Pass", f"{shown} > {gate.min_detection_rate:g}")
    return GateDecision("Review", f"{shown} <= {gate.min_detection_rate:g}: check label quality or train more")


@dataclass(frozen=True)
class ClassAP:
    name: str
    base_ap50: float
    candidate_ap50: float


def ab_gate(classes: Sequence[ClassAP], gate: ABGate) -> GateDecision:
    """Gate 3: no class may lose more than the tolerance (points of AP50)."""
    if not gate.enabled:
        return GateDecision("Pass", "disabled")
    worse = [c for c in classes if round((c.base_ap50 - c.candidate_ap50) * 100, _PRECISION) > gate.per_class_tolerance]
    if not worse:
        return GateDecision("Pass", f"no class lost more than {gate.per_class_tolerance:g} points of AP50")
    listed = ", ".join(f"{c.name} {c.base_ap50:.3f}->{c.candidate_ap50:.3f}" for c in worse)
    return GateDecision("Review", f"worse on {listed}")


def overall_verdict(verdicts: Iterable[Verdict]) -> Verdict:
    """The strictest verdict wins: any Reject rejects, else any Review needs review, else Pass."""
    seen = set(verdicts)
    if "Reject" in seen:
        return "Reject"
    if "Review" in seen:
        return "Review"
    return "Pass"


@dataclass(frozen=True)
class Judgement:
    """The operator's own verdict, from the figures a verified gate Job reported."""

    gate1: GateDecision
    gate2: GateDecision
    gate3: GateDecision | None  # None when Gate 3 is off
    base_map50: float
    map50_drop: float

    @property
    def verdict(self) -> Verdict:
        decisions = [self.gate1, self.gate2] + ([self.gate3] if self.gate3 else [])
        return overall_verdict(d.verdict for d in decisions)


def judge(
    base_map50: float,
    candidate_map50: float,
    detection_rate: float,
    per_class_ab: Sequence[ClassAP],
    gates: GateThresholds,
    serving: VersusServing | None = None,
    documents: str = "",
) -> Judgement:
    """Gates 1-3 with the run's thresholds. The figures are all that is taken from the report:
    its own verdicts are never read. Gate 3 switched on without A/B figures asks for review."""
    gate3 = None
    if gates.ab_comparison.enabled:
        gate3 = (
            ab_gate(per_class_ab, gates.ab_comparison)
            if per_class_ab
            else GateDecision("Review", "Gate 3 is on but the gate report has no per-class A/B figures")
        )
    return Judgement(
        gate1=regression_gate(base_map50, candidate_map50, gates.regression),
        gate2=new_sample_gate(detection_rate, gates.new_samples, serving, documents),
        gate3=gate3,
        base_map50=base_map50,
        map50_drop=map50_drop(base_map50, candidate_map50, gates.regression.unit),
    )
