"""The alert rules, tested with Prometheus' own `promtool test rules`: series that must fire and that must not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ballast.codegen import rules as alerts
from ballast.codegen import sync

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "ballast-rules.yaml"
LABELS = {"severity": "warning", "ballast_trigger": "performance"}


def series(name: str, labels: dict[str, str], values: str) -> dict:
    rendered = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{rendered}}}", "values": values}


def promtool(tmp_path: Path, document: dict) -> subprocess.CompletedProcess:
    assert shutil.which("promtool"), "promtool (Debian's prometheus package) is installed by scripts/setup"
    test_file = tmp_path / "rules_test.yaml"
    document = {"rule_files": [str(RULES)], **document}
    test_file.write_text(yaml.safe_dump(document, sort_keys=False))
    return subprocess.run(["promtool", "test", "rules", str(test_file)], capture_output=True, text=True, check=False)


def test_the_committed_rule_files_match_the_generator():
    assert sync(alerts.files(), ROOT, check=True) == [], "run `python -m ballast.codegen`"


def test_promtool_accepts_the_rules():
    completed = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "4 rules found" in completed.stdout


def test_serving_alerts_fire_on_the_seeds_thresholds_and_stay_quiet_otherwise(tmp_path):
    a = {"pool": "invoices", "model_version": "ft_v1.1"}
    b = {"pool": "receipts", "model_version": "ft_v2.1"}
    input_series = [
        # 10 documents a minute on both pools.
        series("ballast_serve_documents_total", a, "0+10x60"),
        series("ballast_serve_documents_total", b, "0+10x60"),
        # invoices: "date" found in 80% of documents (fires); "title" in 100% (quiet). receipts: 95% (quiet).
        series("ballast_serve_class_documents_total", {**a, "class": "date"}, "0+8x60"),
        series("ballast_serve_class_documents_total", {**a, "class": "title"}, "0+10x60"),
        series("ballast_serve_class_documents_total", {**b, "class": "date"}, "0+9.5x60"),
        # invoices: mean confidence 0.70 vs baseline 0.80 (12.5% lower: fires); receipts 0.79 vs 0.80 (quiet).
        series("ballast_serve_confidence_sum_total", a, "0+7x60"),
        series("ballast_serve_confidence_count_total", a, "0+10x60"),
        series("ballast_model_baseline_confidence", a, "0.8x60"),
        series("ballast_serve_confidence_sum_total", b, "0+7.9x60"),
        series("ballast_serve_confidence_count_total", b, "0+10x60"),
        series("ballast_model_baseline_confidence", b, "0.8x60"),
        # invoices: 50 ms per document vs a 20 ms baseline (fires); receipts 30 ms (1.5x: quiet).
        series("ballast_serve_inference_seconds_sum", a, "0+0.5x60"),
        series("ballast_serve_inference_seconds_count", a, "0+10x60"),
        series("ballast_model_baseline_latency_seconds", a, "0.02x60"),
        series("ballast_serve_inference_seconds_sum", b, "0+0.3x60"),
        series("ballast_serve_inference_seconds_count", b, "0+10x60"),
        series("ballast_model_baseline_latency_seconds", b, "0.02x60"),
    ]
    rate_low = {
        "exp_labels": {**a, "class": "date", **LABELS},
        "exp_annotations": {
            "summary": "Class date detected in under 90% of documents",
            "description": "Pool invoices, model ft_v1.1: class date found in 80% of documents "
            "(seed: alert below 90%).",
        },
    }
    drift = {
        "exp_labels": {**a, **LABELS},
        "exp_annotations": {
            "summary": "Average confidence more than 5% below its baseline",
            "description": "Pool invoices, model ft_v1.1: mean confidence 0.7 is below 95% of the gate-time baseline.",
        },
    }
    slow = {
        "exp_labels": {**a, **LABELS},
        "exp_annotations": {
            "summary": "Inference latency above twice its baseline",
            "description": "Pool invoices, model ft_v1.1: mean inference 50ms is over 2x the gate-time baseline.",
        },
    }
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    # Not yet: the condition must hold for 15 minutes.
                    {"eval_time": "10m", "alertname": "BallastClassDetectionRateLow", "exp_alerts": []},
                    {"eval_time": "30m", "alertname": "BallastClassDetectionRateLow", "exp_alerts": [rate_low]},
                    {"eval_time": "30m", "alertname": "BallastConfidenceDrift", "exp_alerts": [drift]},
                    {"eval_time": "30m", "alertname": "BallastLatencyHigh", "exp_alerts": [slow]},
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("weekly", "fires"),
    [
        pytest.param([1, 2, 3, 4], True, id="failures rising three weeks in a row fire"),
        pytest.param([2, 2, 2, 2], False, id="a flat failure rate stays quiet"),
        pytest.param([1, 3, 2, 4], False, id="a dip in between stays quiet"),
    ],
)
def test_user_failures_rising_three_weeks_in_a_row(tmp_path, weekly: list[int], fires: bool):
    # One sample a day; `weekly` is the number of failures per day in each of four weeks.
    total, values = 0, [0]
    for per_day in weekly:
        for _ in range(7):
            total += per_day
            values.append(total)
    labels = {"pool": "invoices", "model_version": "ft_v1.1"}
    expected = (
        [
            {
                "exp_labels": {"pool": "invoices", **LABELS},
                "exp_annotations": {
                    "summary": "User-reported failures rose three weeks in a row",
                    "description": "Pool invoices: more failures were reported this week than the week before, "
                    "three weeks in a row.",
                },
            }
        ]
        if fires
        else []
    )
    document = {
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1d",
                "input_series": [series("ballast_serve_feedback_total", labels, " ".join(str(v) for v in values))],
                "alert_rule_test": [
                    {"eval_time": "28d", "alertname": "BallastUserFailuresRising", "exp_alerts": expected}
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr
