"""What the demo reports: one row per model, the reviewer's decision on a Review, the table, the
JSON summary (`ballast-demo.json`) and the plot (`ballast-demo.png`)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ballast.api.finetunerun import GateEvidence


@dataclass
class ModelRow:
    """One model as the demo shows it. Figures from the gate (its report, verified by the operator)
    and, for models that served, fields found on unseen pages of the new template."""

    model: str
    role: str
    new_samples: int | None = None
    held_out: int | None = None
    old_samples: int | None = None
    map50: float | None = None
    map50_drop: float | None = None
    detection_trained: float | None = None
    detection_held_out: float | None = None
    detection_judged: float | None = None
    serving_detection: float | None = None
    gate1: str | None = None
    gate2: str | None = None
    verdict: str | None = None
    released: bool = False
    fields_found_unseen: float | None = None  # of 8, averaged over unseen new-template pages
    seconds: float | None = None
    note: str = ""

    @classmethod
    def from_run(cls, model: str, role: str, status: dict[str, Any], seconds: float) -> ModelRow:
        gates, plan = status.get("gates", {}), status.get("plan", {})
        return cls(
            model=model,
            role=role,
            new_samples=plan.get("newSamples"),
            held_out=plan.get("heldOutSamples", 0),
            old_samples=plan.get("oldSamples"),
            map50=gates.get("candidateMap50"),
            map50_drop=gates.get("map50Drop"),
            detection_trained=gates.get("trainedDetectionRate"),
            detection_held_out=gates.get("heldOutDetectionRate"),
            detection_judged=gates.get("detectionRate"),
            serving_detection=gates.get("servingDetectionRate"),
            gate1=gates.get("gate1"),
            gate2=gates.get("gate2"),
            verdict=status.get("verdict"),
            seconds=seconds,
        )


@dataclass(frozen=True)
class ReviewDecision:
    approve: bool
    reason: str


def reviewer_decision(evidence: GateEvidence, min_detection_rate: float) -> ReviewDecision:
    """What the demo's reviewer does with a Review, from the operator's verified figures and
    verdicts (`status.gates`): never sign off a candidate that finds no more on the new documents
    than the model serving now (on the held-out ones when there are some), nor one that regressed
    on the original documents, nor one short of Gate 2 (more reviewed samples are the seed's remedy)."""
    if evidence.gate1 != "Pass":
        drop = f"{evidence.map50_drop:g} {evidence.drop_unit}" if evidence.map50_drop is not None else "unmeasured"
        return ReviewDecision(False, f"it regressed on the original documents (Gate 1 {evidence.gate1}, drop {drop})")
    rate = evidence.detection_rate or 0.0
    if evidence.serving_model is not None:
        held_out = evidence.held_out_detection_rate is not None and evidence.serving_held_out_detection_rate is not None
        ours = evidence.held_out_detection_rate if held_out else rate
        theirs = evidence.serving_held_out_detection_rate if held_out else evidence.serving_detection_rate
        if ours is None or theirs is None or ours <= theirs:
            where = "held-out new documents" if held_out else "new documents"
            return ReviewDecision(
                False,
                f"on the {where} it finds {_percent(ours)} of the fields, "
                f"{evidence.serving_model} (serving) finds {_percent(theirs)}",
            )
    if rate <= min_detection_rate:
        return ReviewDecision(False, f"it finds {rate:.0%} of the new fields, under Gate 2's {min_detection_rate:.0%}")
    return ReviewDecision(True, "both gates' figures are within the seed's thresholds")


def lesson_summary(mixed: ModelRow, unmixed: ModelRow) -> str:
    """What the failures-only run shows, from the two gate reports: forgetting when there was any,
    said plainly when there was little (a frozen backbone and a low learning rate forget slowly)."""
    drop, mixed_drop = unmixed.map50_drop or 0.0, mixed.map50_drop or 0.0
    learned = (
        f"it finds {_percent(unmixed.detection_held_out)} of the held-out new fields "
        f"(with the seed's mix: {_percent(mixed.detection_held_out)})"
    )
    if unmixed.verdict == "Reject":
        return (
            f"without the old data it forgot: mAP50 on the original test set fell {drop:.1f} points "
            f"(with the seed's mix: {mixed_drop:.1f}); {learned}; the gates reject it"
        )
    return (
        f"without the old data it lost {drop:.2f} points of mAP50 here (with the seed's mix: {mixed_drop:.2f}): "
        f"at this scale forgetting is small, so Gate 1 alone would not stop it; {learned}; verdict "
        f"{unmixed.verdict}. benchmarks/learning.py measures it at more failures and an unfrozen backbone"
    )


def _percent(value: float | None) -> str:
    return "?" if value is None else f"{value:.0%}"


def _cell(value: Any, spec: str) -> str:
    return format(value, spec) if isinstance(value, int | float) and not isinstance(value, bool) else str(value or "-")


def print_table(base: ModelRow, rows: list[ModelRow]) -> None:
    print("\nThe original held-out test set (Gate 1) and the new template's documents (Gate 2):")
    header = f"{'model':28} {'new':>4} {'held':>4} {'old':>4} {'mAP50':>6} {'drop':>6} {'det.trained':>11} "
    header += f"{'det.unseen':>10} {'gate1':>6} {'gate2':>6} {'verdict':>7} {'fields/8':>8}"
    print(header)
    for row in [base, *rows]:
        print(
            f"{row.model + ' ' + row.role:28.28} {_cell(row.new_samples, '>4'):>4} {_cell(row.held_out, '>4'):>4} "
            f"{_cell(row.old_samples, '>4'):>4} {_cell(row.map50, '6.3f'):>6} {_cell(row.map50_drop, '6.2f'):>6} "
            f"{_cell(row.detection_trained, '11.3f'):>11} {_cell(row.detection_held_out, '10.3f'):>10} "
            f"{_cell(row.gate1, ''):>6} {_cell(row.gate2, ''):>6} {_cell(row.verdict, ''):>7} "
            f"{_cell(row.fields_found_unseen, '8.1f'):>8}"
        )
        if row.note:
            print(f"{'':28} {row.note}")


def write_json(path: Path, recipe: dict[str, Any], base: ModelRow, rows: list[ModelRow], stages: list) -> None:
    document = {
        "recipe": recipe,
        "models": [asdict(base), *[asdict(r) for r in rows]],
        "stages": [{"title": title, "seconds": round(seconds, 1)} for title, seconds in stages],
        "totalSeconds": round(sum(seconds for _, seconds in stages), 1),
    }
    path.write_text(json.dumps(document, indent=2) + "\n")


def plot(path: Path, base: ModelRow, rows: list[ModelRow]) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    models = [base, *rows]
    labels = [f"{r.model}\n{r.role}" for r in models]
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    axes[0].bar(labels, [r.map50 or 0 for r in models], color="tab:blue")
    axes[0].set_title("mAP50 on the original test set (Gate 1)")
    axes[0].set_ylim(0, 1)
    x = range(len(models))
    axes[1].bar([i - 0.2 for i in x], [r.detection_trained or 0 for r in models], 0.4, label="trained-on documents")
    axes[1].bar([i + 0.2 for i in x], [r.detection_held_out or 0 for r in models], 0.4, label="unseen documents")
    axes[1].set_xticks(list(x), labels)
    axes[1].axhline(0.8, linestyle="--", color="black", label="Gate 2 threshold")
    axes[1].set_title("Detection rate on the new template (Gate 2)")
    axes[1].set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    for axis in axes:
        axis.tick_params(axis="x", labelsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True
