"""`ballast-trainer gate`: the seed's three deployment gates, written as a GateReport.

Gate 1: mAP50 of base and candidate on the original held-out test set. The base's figure comes
        from the plan when a verified gate measured it before (the operator keeps it in the pool's
        status, out of any bucket writer's reach); otherwise it is measured here.
Gate 2: detection rate of the candidate on the new failure samples (class-aware, IoU >= iou,
        confidence >= confidence), overall and per class.
Gate 3: optional per-class AP50 of both models on a labelled audit set of production documents.
This module measures; its verdicts are for its log only: the operator recomputes the run's verdict
from the figures with the plan's thresholds.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from ballast.api import layout
from ballast.api.contracts import ClassResult, GateReport, GateResult, TrainResult
from ballast.api.samples import SampleRef, parse_manifest
from ballast.policy.gates import ClassAP, ab_gate, map50_drop, new_sample_gate, overall_verdict, regression_gate
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


def gate(context: Context) -> None:
    plan, store = context.plan, context.store
    if plan.base_model is None:
        raise ValueError("the gates compare against a base model: the plan names none")
    started_all = time.monotonic()
    files = artifacts(plan)
    result = TrainResult.model_validate(json.loads(store.get(files.train_result)))
    device = yolo.device_for(plan.training.gpus)
    imgsz = plan.training.imgsz
    base = _download_model(context, plan.base_model.uri, plan.base_model.digest, "base")
    candidate = _download_model(context, result.model.uri, result.model.digest, "candidate")

    # Gate 1: regression on the held-out test set.
    manifest = store.get(plan.test_manifest, plan.test_manifest_digest)  # DigestMismatch if it changed
    test_refs = parse_manifest(manifest.decode(), plan.test_manifest)
    test_data = _stage_split(context, test_refs, "testset")
    started = time.monotonic()
    base_eval, base_measured = base_evaluation(context, base, test_data, device)
    candidate_eval = yolo.evaluate(candidate, test_data, "test", imgsz, device, plan.classes)
    context.timed("evaluate", started)
    gate1 = regression_gate(base_eval.map50, candidate_eval.map50, plan.gates.regression)
    log(f"Gate1Regression {gate1.verdict}: {gate1.reason}")

    # Gate 2: the new failure samples.
    new_root = context.workdir / "new"
    dataset.stage(store, plan.new_samples, new_root, "test")
    images = sorted((new_root / "images" / "test").iterdir())
    labels = [new_root / "labels" / "test" / (p.stem + ".txt") for p in images]
    thresholds = plan.gates.new_samples
    started = time.monotonic()
    rate = yolo.detection_rate(
        candidate, images, labels, plan.classes, imgsz, device, thresholds.confidence, thresholds.iou
    )
    base_rate = yolo.detection_rate(
        base, images, labels, plan.classes, imgsz, device, thresholds.confidence, thresholds.iou
    )
    context.timed("evaluate", started)
    gate2 = new_sample_gate(rate.rate, thresholds)
    log(f"Gate2NewSamples {gate2.verdict}: {gate2.reason} (base found {base_rate.rate:.4f})")

    # Gate 3: per-class A/B on the audit set, when configured.
    per_class_ab: list[ClassResult] = []
    ab = plan.gates.ab_comparison
    gates = [
        GateResult(name="Gate1Regression", verdict=gate1.verdict, reason=gate1.reason),
        GateResult(name="Gate2NewSamples", verdict=gate2.verdict, reason=gate2.reason),
    ]
    if ab.enabled and ab.audit_manifest:
        audit_refs = parse_manifest(store.get(ab.audit_manifest).decode(), ab.audit_manifest)
        audit_data = _stage_split(context, audit_refs, "audit")
        base_ab = yolo.evaluate(base, audit_data, "test", imgsz, device, plan.classes)
        cand_ab = yolo.evaluate(candidate, audit_data, "test", imgsz, device, plan.classes)
        names = sorted(set(base_ab.per_class_ap50) | set(cand_ab.per_class_ap50))
        rows = [ClassAP(n, base_ab.per_class_ap50.get(n, 0.0), cand_ab.per_class_ap50.get(n, 0.0)) for n in names]
        gate3 = ab_gate(rows, ab)
        per_class_ab = [ClassResult(name=r.name, base_ap50=r.base_ap50, candidate_ap50=r.candidate_ap50) for r in rows]
        gates.append(GateResult(name="Gate3ABComparison", verdict=gate3.verdict, reason=gate3.reason))
        log(f"Gate3ABComparison {gate3.verdict}: {gate3.reason}")

    per_class_detection = []
    for name in plan.classes:
        found, total = rate.per_class.get(name, (0, 0))
        base_found, _ = base_rate.per_class.get(name, (0, 0))
        per_class_detection.append(
            ClassResult(
                name=name,
                base_ap50=base_eval.per_class_ap50.get(name),
                candidate_ap50=candidate_eval.per_class_ap50.get(name),
                detection_rate=found / total if total else None,
                instances=total,
            )
        )
        del base_found
    report = GateReport(
        run=plan.run,
        candidate=result.model,
        base=plan.base_model,
        base_map50=round(base_eval.map50, 6),
        base_measured=base_measured,
        candidate_map50=round(candidate_eval.map50, 6),
        map50_drop=map50_drop(base_eval.map50, candidate_eval.map50, plan.gates.regression.unit),
        drop_unit=plan.gates.regression.unit,
        detection_rate=round(rate.rate, 6),
        base_detection_rate=round(base_rate.rate, 6),
        per_class_detection=per_class_detection,
        per_class_ab=per_class_ab,
        gates=gates,
        verdict=overall_verdict(g.verdict for g in gates),
        seconds=round(time.monotonic() - started_all, 3),
    )
    # The serving baseline travels with the model: `ballast-trainer serve` publishes it for the alert rules.
    test_images = sorted((context.workdir / "testset" / "images" / "test").iterdir())
    baseline = yolo.serving_baseline(candidate, test_images, plan.classes, imgsz, device, thresholds.confidence)
    store.put(
        layout.beside(store.relative(result.model.uri), "baseline.json"),
        json.dumps(
            {
                "confidence": round(baseline.confidence, 6),
                "latencySeconds": round(baseline.latency_seconds, 6),
                "classDetectionRate": baseline.class_detection_rate,
            }
        ).encode(),
        "application/json",
    )
    context.report_result(files.gate_report, report)
    log(
        f"verdict {report.verdict}: mAP50 {report.base_map50:.4f} -> {report.candidate_map50:.4f}, "
        f"detection rate {report.detection_rate:.4f}"
    )
