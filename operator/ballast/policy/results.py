"""Trusting a stage's result: only what the operator's own Job reported, checked field by field,
and judged again by the operator (seed section 4: never auto-deploy).

The observation hands these functions documents whose bytes matched the digest the Job's pod
reported in its termination message; they check that each document is about this run, this
plan and these models, and recompute the verdict from its figures with the plan's thresholds.
"""

from __future__ import annotations

from ballast.api import layout
from ballast.api.common import ModelRef
from ballast.api.contracts import BaseEvaluation, GateReport, GateResult, RunPlan, TrainResult
from ballast.api.finetunerun import ClassGateRow, GateEvidence
from ballast.policy.gates import ClassAP, Judgement, judge, judged_documents, versus_serving


def expected_uri(plan: RunPlan, key: str) -> str:
    return layout.s3_uri(plan.bucket, plan.prefix, key)


def train_result_problem(result: TrainResult, plan: RunPlan) -> str | None:
    """Why a TrainResult is not this plan's model (None: it is)."""
    files = layout.RunArtifacts(plan.run, plan.run_uid)
    if result.run != plan.run:
        return f"the train result names run {result.run}, not {plan.run}"
    if result.model.version != plan.new_version:
        return f"the train result names model {result.model.version}; the plan makes {plan.new_version}"
    if result.model.uri != expected_uri(plan, files.model):
        return f"the model {result.model.uri} is not under this run's prefix"
    if result.lineage_uri != expected_uri(plan, files.lineage):
        return f"the lineage {result.lineage_uri} is not under this run's prefix"
    return None


def gate_report_problem(report: GateReport, plan: RunPlan, candidate: ModelRef) -> str | None:
    """Why a GateReport is not about this run's candidate and base (None: it is)."""
    if report.run != plan.run:
        return f"the gate report names run {report.run}, not {plan.run}"
    if report.candidate.digest != candidate.digest or report.candidate.version != candidate.version:
        return f"the gate report judged {report.candidate.version} ({report.candidate.digest[:19]}...), not this model"
    if plan.base_model is None or report.base.digest != plan.base_model.digest:
        return "the gate report compared against another base than the plan's"
    if not report.base_measured and plan.base_evaluation is None:
        return "the gate report did not measure the base, and the plan gave it no figure"
    return new_documents_problem(report, plan) or serving_problem(report, plan)


def new_documents_problem(report: GateReport, plan: RunPlan) -> str | None:
    """Why the report's Gate 2 figures do not fit the plan's new documents (None: they do)."""
    held = len(plan.held_out_samples)
    if (report.held_out_detection_rate is not None) != bool(held):
        return f"the gate report's held-out figure does not match the plan's {held} held-out samples"
    if not held and report.trained_detection_rate not in (None, report.detection_rate):
        return "with none held out, Gate 2 judges the trained documents, and the report says otherwise"
    if (
        held
        and plan.gates.new_samples.judge_on == "heldOut"
        and report.detection_rate != report.held_out_detection_rate
    ):
        return "Gate 2 judges the held-out documents (judgeOn: heldOut), and the report judged others"
    return None


def serving_problem(report: GateReport, plan: RunPlan) -> str | None:
    """Why the report's serving model figures are not the ones the plan asked for (None: they are)."""
    if plan.serving_model is None:
        return "the gate report measured a serving model the plan did not name" if report.serving else None
    if report.serving is None or report.serving.model != plan.serving_model:
        return "the gate report did not measure the serving model the plan named"
    if (report.serving.held_out_detection_rate is None) != (report.held_out_detection_rate is None):
        return "the gate report measured the serving model and the candidate on different new documents"
    serves_the_base = plan.base_model is not None and report.serving.model.digest == plan.base_model.digest
    if serves_the_base and report.serving.detection_rate != report.base_detection_rate:
        return "the serving model is the base, and the report gives it two different detection rates"
    return None


def base_figure(report: GateReport, plan: RunPlan) -> float:
    """The base's mAP50: the plan's (from the pool's status) when it had one, else what the gate measured."""
    return plan.base_evaluation.map50 if plan.base_evaluation is not None else report.base_map50


def judge_report(report: GateReport, plan: RunPlan) -> Judgement:
    rows = [ClassAP(r.name, r.base_ap50 or 0.0, r.candidate_ap50 or 0.0) for r in report.per_class_ab]
    serving = None
    if report.serving is not None:
        serving = versus_serving(
            report.serving.model.version,
            (report.detection_rate, report.held_out_detection_rate),
            (report.serving.detection_rate, report.serving.held_out_detection_rate),
        )
    documents = judged_documents(plan.gates.new_samples, len(plan.new_samples), len(plan.held_out_samples))
    base = base_figure(report, plan)
    return judge(base, report.candidate_map50, report.detection_rate, rows, plan.gates, serving, documents)


def gate_results(judgement: Judgement) -> list[GateResult]:
    results = [
        GateResult(name="Gate1Regression", verdict=judgement.gate1.verdict, reason=judgement.gate1.reason),
        GateResult(name="Gate2NewSamples", verdict=judgement.gate2.verdict, reason=judgement.gate2.reason),
    ]
    if judgement.gate3 is not None:
        results.append(
            GateResult(name="Gate3ABComparison", verdict=judgement.gate3.verdict, reason=judgement.gate3.reason)
        )
    return results


def measured_base(report: GateReport, plan: RunPlan) -> BaseEvaluation | None:
    """The base's figures this gate measured, for the pool to hand to later plans."""
    if not report.base_measured or plan.base_model is None or plan.test_manifest_digest is None:
        return None
    per_class = {c.name: c.base_ap50 for c in report.per_class_detection if c.base_ap50 is not None}
    return BaseEvaluation(
        base_digest=plan.base_model.digest,
        test_manifest_digest=plan.test_manifest_digest,
        imgsz=plan.training.imgsz,
        map50=report.base_map50,
        per_class_ap50=per_class,
    )


def gate_evidence(report: GateReport, plan: RunPlan, judgement: Judgement, report_uri: str) -> GateEvidence:
    verdicts = {g.name: g.verdict for g in gate_results(judgement)}
    moved = sorted(report.per_class_detection, key=lambda c: c.detection_rate if c.detection_rate is not None else 1.0)[
        :3
    ]
    return GateEvidence(
        base_map50=judgement.base_map50,
        candidate_map50=report.candidate_map50,
        map50_drop=judgement.map50_drop,
        drop_unit=plan.gates.regression.unit,
        detection_rate=report.detection_rate,
        trained_detection_rate=report.trained_detection_rate,
        held_out_detection_rate=report.held_out_detection_rate,
        serving_detection_rate=report.serving.detection_rate if report.serving else None,
        serving_held_out_detection_rate=report.serving.held_out_detection_rate if report.serving else None,
        serving_model=report.serving.model.version if report.serving else None,
        gate1=verdicts.get("Gate1Regression"),
        gate2=verdicts.get("Gate2NewSamples"),
        gate3=verdicts.get("Gate3ABComparison"),
        worst_classes=[
            ClassGateRow(
                name=c.name, base_ap50=c.base_ap50, candidate_ap50=c.candidate_ap50, detection_rate=c.detection_rate
            )
            for c in moved
        ],
        report_uri=report_uri,
        base_evaluation=measured_base(report, plan),
    )
