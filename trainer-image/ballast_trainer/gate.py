"""`ballast-trainer gate`: the seed's three deployment gates, written as a GateReport.

Gate 1: mAP50 of base and candidate on the original held-out test set. The base's figure comes
        from the plan when a verified gate measured it before (the operator keeps it in the pool's
        status, out of any bucket writer's reach); otherwise it is measured here.
Gate 2: detection rate of the candidate on the new failure samples (class-aware, IoU >= iou,
        confidence >= confidence), overall and per class: on the ones it trained on, on the ones
        held out of training, and on those Gate 2 judges; the base and the model serving now are
        measured on the same documents.
Gate 3: optional per-class AP50 of both models on a labelled audit set of production documents.
This module measures; its verdicts are for its log only: the operator recomputes the run's verdict
from the figures with the plan's thresholds.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from ballast.api import layout
from ballast.api.common import ModelRef
from ballast.api.contracts import ClassResult, GateReport, GateResult, ServingComparison, TrainResult
from ballast.api.samples import SampleRef, parse_manifest
from ballast.policy.gates import (
    ClassAP,
    ab_gate,
    judged_documents,
    map50_drop,
    new_sample_gate,
    overall_verdict,
    regression_gate,
    versus_serving,
)
from ballast_trainer import dataset, yolo
from ballast_trainer.common import Context, artifacts, log


def _download_model(context: Context, uri: str, digest: str, name: str) -> Path:
    path = context.workdir / "models" / f"{name}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(context.store.get(context.store.relative(uri), digest))
    return path


def _stage_split(context: Context, refs: list[SampleRef], name: str) -> Path:
    root = context.workdir / name
    started = time.monotonic()
    dataset.stage(context.store, refs, root, "test")
    context.timed("download", started)
    split = {"train": "images/test", "val": "images/test", "test": "images/test"}
    return dataset.write_data_yaml(root, context.plan.classes, split)


def base_evaluation(context: Context, base: Path, data: Path, device: str) -> tuple[yolo.Evaluation, bool]:
    """The base's test-set figures, and whether they were measured here (not taken from the plan)."""
    known = context.plan.base_evaluation
    if known is not None:
        log(f"base mAP50 from the plan: {known.map50:.4f} (measured by an earlier verified gate)")
        return yolo.Evaluation(known.map50, dict(known.per_class_ap50)), False
    plan = context.plan
    return yolo.evaluate(base, data, "test", plan.training.imgsz, device, plan.classes), True


@dataclass(frozen=True)
class NewDocuments:
    """The new failure documents as Gate 2 sees them: trained on, held out, and judged."""

    trained: yolo.DetectionRate
    held_out: yolo.DetectionRate | None
    judged: yolo.DetectionRate


def _documents(context: Context, refs: list[SampleRef], name: str) -> tuple[list[Path], list[Path]]:
    root = context.workdir / name
    if not (root / "images" / "test").is_dir():  # each model is measured on the same staged copy
        dataset.stage(context.store, refs, root, "test")
    images = sorted((root / "images" / "test").iterdir())
    return images, [root / "labels" / "test" / (p.stem + ".txt") for p in images]


def new_documents(context: Context, weights: Path, device: str) -> NewDocuments:
    """One model's detection rates on the plan's new documents."""
    plan, gate = context.plan, context.plan.gates.new_samples

    def rate(name: str, refs: list[SampleRef]) -> yolo.DetectionRate:
        images, labels = _documents(context, refs, name)
        return yolo.detection_rate(
            weights, images, labels, plan.classes, plan.training.imgsz, device, gate.confidence, gate.iou
        )

    trained = rate("new", plan.new_samples)
    held_out = rate("held-out", plan.held_out_samples) if plan.held_out_samples else None
    if held_out is None:
        judged = trained
    elif gate.judge_on == "heldOut":
        judged = held_out
    else:
        judged = yolo.combined(trained, held_out)
    return NewDocuments(trained, held_out, judged)


def _serving(
    context: Context, test_data: Path, device: str, base: tuple[yolo.Evaluation, NewDocuments]
) -> ServingComparison | None:
    """The model serving now, measured as the candidate is (None when no release serves one). When
    the base serves, its figures are the base's, not measured twice."""
    model: ModelRef | None = context.plan.serving_model
    if model is None:
        return None
    plan = context.plan
    if plan.base_model is not None and model.digest == plan.base_model.digest:
        evaluation, documents = base
    else:
        weights = _download_model(context, model.uri, model.digest, "serving")
        evaluation = yolo.evaluate(weights, test_data, "test", plan.training.imgsz, device, plan.classes)
        documents = new_documents(context, weights, device)
    log(f"serving {model.version}: mAP50 {evaluation.map50:.4f}, detection rate {documents.judged.rate:.4f}")
    return ServingComparison(
        model=model,
        map50=round(evaluation.map50, 6),
        detection_rate=round(documents.judged.rate, 6),
        held_out_detection_rate=round(documents.held_out.rate, 6) if documents.held_out else None,
    )


def _per_class(
    plan_classes: list[str], base_eval: yolo.Evaluation, candidate_eval: yolo.Evaluation, new: NewDocuments
) -> list[ClassResult]:
    rows = []
    for name in plan_classes:
        found, total = new.judged.per_class.get(name, (0, 0))
        held_found, held_total = new.held_out.per_class.get(name, (0, 0)) if new.held_out else (0, 0)
        rows.append(
            ClassResult(
                name=name,
                base_ap50=base_eval.per_class_ap50.get(name),
                candidate_ap50=candidate_eval.per_class_ap50.get(name),
                detection_rate=found / total if total else None,
                held_out_detection_rate=held_found / held_total if held_total else None,
                instances=total,
            )
        )
    return rows


def _audit(context: Context, base: Path, candidate: Path, device: str) -> list[ClassResult]:
    """Gate 3's figures: per-class AP50 of both models on the audit set (none when it is off)."""
    ab, plan = context.plan.gates.ab_comparison, context.plan
    if not (ab.enabled and ab.audit_manifest):
        return []
    audit_refs = parse_manifest(context.store.get(ab.audit_manifest).decode(), ab.audit_manifest)
    audit_data = _stage_split(context, audit_refs, "audit")
    base_ab = yolo.evaluate(base, audit_data, "test", plan.training.imgsz, device, plan.classes)
    cand_ab = yolo.evaluate(candidate, audit_data, "test", plan.training.imgsz, device, plan.classes)
    names = sorted(set(base_ab.per_class_ap50) | set(cand_ab.per_class_ap50))
    return [
        ClassResult(
            name=n, base_ap50=base_ab.per_class_ap50.get(n, 0.0), candidate_ap50=cand_ab.per_class_ap50.get(n, 0.0)
        )
        for n in names
    ]


def gate(context: Context) -> None:
    plan, store = context.plan, context.store
    if plan.base_model is None:
        raise ValueError("the gates compare against a base model: the plan names none")
    started_all = time.monotonic()
    files = artifacts(plan)
    result = TrainResult.model_validate(json.loads(store.get(files.train_result)))
    device = yolo.device_for(plan.training.gpus)
    base = _download_model(context, plan.base_model.uri, plan.base_model.digest, "base")
    candidate = _download_model(context, result.model.uri, result.model.digest, "candidate")

    # Gate 1: regression on the held-out test set.
    manifest = store.get(plan.test_manifest, plan.test_manifest_digest)  # DigestMismatch if it changed
    test_data = _stage_split(context, parse_manifest(manifest.decode(), plan.test_manifest), "testset")
    started = time.monotonic()
    base_eval, base_measured = base_evaluation(context, base, test_data, device)
    candidate_eval = yolo.evaluate(candidate, test_data, "test", plan.training.imgsz, device, plan.classes)
    gate1 = regression_gate(base_eval.map50, candidate_eval.map50, plan.gates.regression)
    log(f"Gate1Regression {gate1.verdict}: {gate1.reason}")

    # Gate 2: the new failure documents, trained on and held out; the base and the serving model too.
    new = new_documents(context, candidate, device)
    base_new = new_documents(context, base, device)
    serving = _serving(context, test_data, device, (base_eval, base_new))
    context.timed("evaluate", started)
    versus = None
    if serving is not None:
        held_out = round(new.held_out.rate, 6) if new.held_out else None
        ours = (round(new.judged.rate, 6), held_out)
        versus = versus_serving(serving.model.version, ours, (serving.detection_rate, serving.held_out_detection_rate))
    documents = judged_documents(plan.gates.new_samples, len(plan.new_samples), len(plan.held_out_samples))
    gate2 = new_sample_gate(new.judged.rate, plan.gates.new_samples, versus, documents)
    log(f"Gate2NewSamples {gate2.verdict}: {gate2.reason} (base found {base_new.judged.rate:.4f})")

    # Gate 3: per-class A/B on the audit set, when configured.
    per_class_ab = _audit(context, base, candidate, device)
    gates = [
        GateResult(name="Gate1Regression", verdict=gate1.verdict, reason=gate1.reason),
        GateResult(name="Gate2NewSamples", verdict=gate2.verdict, reason=gate2.reason),
    ]
    if per_class_ab:
        rows = [ClassAP(r.name, r.base_ap50 or 0.0, r.candidate_ap50 or 0.0) for r in per_class_ab]
        gate3 = ab_gate(rows, plan.gates.ab_comparison)
        gates.append(GateResult(name="Gate3ABComparison", verdict=gate3.verdict, reason=gate3.reason))
        log(f"Gate3ABComparison {gate3.verdict}: {gate3.reason}")

    report = GateReport(
        run=plan.run,
        candidate=result.model,
        base=plan.base_model,
        base_map50=round(base_eval.map50, 6),
        base_measured=base_measured,
        candidate_map50=round(candidate_eval.map50, 6),
        map50_drop=map50_drop(base_eval.map50, candidate_eval.map50, plan.gates.regression.unit),
        drop_unit=plan.gates.regression.unit,
        detection_rate=round(new.judged.rate, 6),
        trained_detection_rate=round(new.trained.rate, 6),
        held_out_detection_rate=round(new.held_out.rate, 6) if new.held_out else None,
        base_detection_rate=round(base_new.judged.rate, 6),
        serving=serving,
        per_class_detection=_per_class(plan.classes, base_eval, candidate_eval, new),
        per_class_ab=per_class_ab,
        gates=gates,
        verdict=overall_verdict(g.verdict for g in gates),
        seconds=round(time.monotonic() - started_all, 3),
    )
    write_serving_baseline(context, candidate, result.model.uri, device)
    context.report_result(files.gate_report, report)
    log(
        f"verdict {report.verdict}: mAP50 {report.base_map50:.4f} -> {report.candidate_map50:.4f}, "
        f"detection rate {report.detection_rate:.4f}"
    )


def write_serving_baseline(context: Context, candidate: Path, model_uri: str, device: str) -> None:
    """The gate's figures travel with the model: `ballast-trainer serve` publishes the per-field test-set
    rates for the per-field alert; latency and confidence here are evidence (serve learns its own)."""
    plan, store = context.plan, context.store
    test_images = sorted((context.workdir / "testset" / "images" / "test").iterdir())
    confidence = plan.gates.new_samples.confidence
    baseline = yolo.serving_baseline(candidate, test_images, plan.classes, plan.training.imgsz, device, confidence)
    document = {
        "confidence": round(baseline.confidence, 6),
        "latencySeconds": round(baseline.latency_seconds, 6),
        "classDetectionRate": baseline.class_detection_rate,
    }
    store.put(
        layout.beside(store.relative(model_uri), "baseline.json"), json.dumps(document).encode(), "application/json"
    )
