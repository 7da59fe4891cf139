"""The alert rules, tested with Prometheus' own `promtool test rules`: values on both sides of each
threshold, two pools of the same name in two namespaces, and the failure trend within 15 days of data."""

from __future__ import annotations

import re
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
# The same pool name in two namespaces: an alert must say which one it is about.
ML = {"namespace": "ml", "pool": "invoices", "model_version": "ft_v1.1"}
OPS = {"namespace": "ops", "pool": "invoices", "model_version": "ft_v1.1"}


def runbook(alert: str) -> str:
    return f"README.md#alert-{alert.lower()}"


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
    assert "10 rules found" in completed.stdout  # four serving rules, six health rules


@pytest.mark.parametrize("rule", alerts.rules()["groups"][0]["rules"], ids=lambda rule: rule["alert"])
def test_every_aggregation_keeps_namespace_and_pool(rule):
    groupings = re.findall(r"\b(?:by|on) \(([^)]*)\)", rule["expr"])
    assert groupings, rule["expr"]
    for grouping in groupings:
        assert grouping.startswith("namespace, pool"), f"{rule['alert']}: `{grouping}` drops namespace or pool"


def test_serving_alerts_fire_on_either_side_of_the_seeds_thresholds(tmp_path):
    per_minute = {  # 10 documents a minute in each namespace
        "ballast_serve_documents_total": (10, 10),
        # date: a required field, test-set rate 100% (ml) and 90% (ops), found in 85% of documents:
        # 85% of its baseline in ml fires; 94% of it in ops stays quiet.
        "ballast_serve_class_documents_total|date": (8.5, 8.5),
        # signature: optional, on 30% of test documents, found at exactly that rate: quiet.
        "ballast_serve_class_documents_total|signature": (3, 3),
        # mean confidence 0.752 (6% under 0.8: fires) and 0.768 (4% under: quiet).
        "ballast_serve_confidence_sum_total": (7.52, 7.68),
        "ballast_serve_confidence_count_total": (10, 10),
        # 2.1x (fires) and 1.9x (quiet) the 20 ms baseline.
        "ballast_serve_inference_seconds_sum": (0.42, 0.38),
        "ballast_serve_inference_seconds_count": (10, 10),
    }
    gauges = {
        "ballast_model_baseline_class_detection_rate|date": (1.0, 0.9),
        "ballast_model_baseline_class_detection_rate|signature": (0.3, 0.3),
        "ballast_model_baseline_confidence": (0.8, 0.8),
        "ballast_model_baseline_latency_seconds": (0.02, 0.02),
    }
    input_series = []
    for key, (ml, ops) in per_minute.items():
        name, _, cls = key.partition("|")
        for labels, step in ((ML, ml), (OPS, ops)):
            input_series.append(series(name, {**labels, **({"class": cls} if cls else {})}, f"0+{step}x60"))
    for key, (ml, ops) in gauges.items():
        name, _, cls = key.partition("|")
        for labels, value in ((ML, ml), (OPS, ops)):
            input_series.append(series(name, {**labels, **({"class": cls} if cls else {})}, f"{value}x60"))

    def fired(name: str, summary: str, description: str, **extra: str) -> list[dict]:
        return [
            {
                "exp_labels": {**ML, **extra, **LABELS},
                "exp_annotations": {"summary": summary, "description": description, "runbook_url": runbook(name)},
            }
        ]

    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": input_series,
                "alert_rule_test": [
                    # Not yet: the condition must hold for 15 minutes.
                    {"eval_time": "10m", "alertname": "BallastClassDetectionRateLow", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "BallastClassDetectionRateLow",
                        "exp_alerts": fired(
                            "BallastClassDetectionRateLow",
                            "Class date detected in under 90% of its test-set rate",
                            "Pool ml/invoices, model ft_v1.1: class date found in 85% of documents, "
                            "under 90% of its rate on the held-out test set.",
                            **{"class": "date"},
                        ),
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "BallastConfidenceDrift",
                        "exp_alerts": fired(
                            "BallastConfidenceDrift",
                            "Average confidence more than 5% below its baseline",
                            "Pool ml/invoices, model ft_v1.1: mean confidence 0.752 is below 95% of the "
                            "serving baseline.",
                        ),
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "BallastLatencyHigh",
                        "exp_alerts": fired(
                            "BallastLatencyHigh",
                            "Inference latency above twice its baseline",
                            "Pool ml/invoices, model ft_v1.1: mean inference 42ms is over 2x the serving baseline.",
                        ),
                    },
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_a_model_without_baselines_raises_no_serving_alert(tmp_path):
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    series("ballast_serve_documents_total", ML, "0+10x60"),
                    series("ballast_serve_class_documents_total", {**ML, "class": "date"}, "0+1x60"),
                    series("ballast_serve_confidence_sum_total", ML, "0+1x60"),
                    series("ballast_serve_confidence_count_total", ML, "0+10x60"),
                    series("ballast_serve_inference_seconds_sum", ML, "0+10x60"),
                    series("ballast_serve_inference_seconds_count", ML, "0+10x60"),
                ],
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": name, "exp_alerts": []}
                    for name in ("BallastClassDetectionRateLow", "BallastConfidenceDrift", "BallastLatencyHigh")
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("per_day", "fires"),
    [
        pytest.param([1, 2, 3], True, id="failures per week rising over three 5-day windows fire on day 15"),
        pytest.param([2, 2, 2], False, id="a flat failure rate stays quiet"),
        pytest.param([1, 3, 2], False, id="a dip in the newest window stays quiet"),
        pytest.param([3, 1, 2], False, id="a rise after a fall stays quiet"),
    ],
)
def test_user_failures_rising_fire_within_prometheus_default_15_day_retention(tmp_path, per_day, fires):
    # One sample an hour for exactly 15 days (the default retention); `per_day` is the number of
    # failures reported per day in each 5-day window, oldest first.
    total, values = 0.0, [0.0]
    for rate in per_day:
        for _ in range(5 * 24):
            total += rate / 24
            values.append(round(total, 6))
    expected = [
        {
            "exp_labels": {"namespace": "ml", "pool": "invoices", **LABELS},
            "exp_annotations": {
                "summary": "User-reported failures per week rising",
                "description": "Pool ml/invoices: failures per week rose over three consecutive 5d windows "
                "(15 in the last 5d).",
                "runbook_url": runbook("BallastUserFailuresRising"),
            },
        }
    ]
    document = {
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1h",
                "input_series": [series("ballast_serve_feedback_total", ML, " ".join(map(str, values)))],
                "alert_rule_test": [
                    {
                        "eval_time": "15d",
                        "alertname": "BallastUserFailuresRising",
                        "exp_alerts": expected if fires else [],
                    }
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def health(name: str, labels: dict[str, str], summary: str, description: str, severity: str = "warning") -> dict:
    return {
        "exp_labels": {**labels, "severity": severity},
        "exp_annotations": {"summary": summary, "description": description, "runbook_url": runbook(name)},
    }


def test_operator_down_fires_after_five_minutes_without_a_successful_scrape_or_without_a_target(tmp_path):
    job = {"job": "ballast-operator", "instance": "10.0.0.1:8080"}
    down = health(
        "BallastOperatorDown",
        {},  # absent() of a comparison carries no labels
        "The Ballast operator is down",
        "No scrape of job ballast-operator succeeded for 5 minutes: nothing reconciles pools, runs or "
        "releases, and alerts sent to its webhook are lost.",
        severity="critical",
    )

    def case(values: str, expectations: list[tuple[str, list[dict]]]) -> dict:
        return {
            "interval": "1m",
            "input_series": [series("up", job, values)],
            "alert_rule_test": [
                {"eval_time": at, "alertname": "BallastOperatorDown", "exp_alerts": alerts}
                for at, alerts in expectations
            ],
        }

    document = {
        "evaluation_interval": "1m",
        "tests": [
            case("1x30", [("20m", [])]),  # up all along: quiet
            case("1x10 0x20", [("13m", []), ("20m", [down])]),  # scrapes fail from 11m: 3 minutes is too soon
            case("1x10 stale", [("13m", []), ("20m", [down])]),  # the target is gone (pod deleted)
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_reconcile_errors_fire_when_they_persist_for_twenty_minutes_not_for_a_burst(tmp_path):
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # One error a minute, for an hour: fires.
                    series("ballast_reconcile_errors_total", {"kind": "FineTunePool"}, "0+1x60"),
                    # A burst of three errors at minute 5, then none: pending for 10 minutes only, quiet.
                    series("ballast_reconcile_errors_total", {"kind": "ModelRelease"}, "0x5 3x55"),
                ],
                "alert_rule_test": [
                    {"eval_time": "15m", "alertname": "BallastReconcileErrors", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "BallastReconcileErrors",
                        "exp_alerts": [
                            health(
                                "BallastReconcileErrors",
                                {"kind": "FineTunePool"},
                                "FineTunePool reconciles keep failing",
                                "10 FineTunePool reconciles raised in the last 10 minutes, and errors have not "
                                "stopped for 20 minutes (see the operator's log).",
                            )
                        ],
                    },
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_a_new_failed_run_fires_for_an_hour_and_old_failures_stay_quiet(tmp_path):
    failed = {"phase": "Failed", "verdict": ""}
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    # ml: a run fails at minute 90.
                    series("ballast_runs", {"namespace": "ml", "pool": "invoices", **failed}, "0x89 1x90"),
                    # ops: two runs failed long ago, nothing new.
                    series("ballast_runs", {"namespace": "ops", "pool": "invoices", **failed}, "2x179"),
                    series(
                        "ballast_runs",
                        {"namespace": "ml", "pool": "invoices", "phase": "Succeeded", "verdict": "Pass"},
                        "0x89 1x90",
                    ),
                ],
                "alert_rule_test": [
                    {"eval_time": "80m", "alertname": "BallastRunFailed", "exp_alerts": []},
                    {
                        "eval_time": "100m",
                        "alertname": "BallastRunFailed",
                        "exp_alerts": [
                            health(
                                "BallastRunFailed",
                                {"namespace": "ml", "pool": "invoices"},
                                "A fine-tuning run failed in ml/invoices",
                                "Pool ml/invoices has more Failed runs than an hour ago (1 now): "
                                "`kubectl -n ml get ftr` shows which.",
                            )
                        ],
                    },
                    # An hour later the failure is old news.
                    {"eval_time": "170m", "alertname": "BallastRunFailed", "exp_alerts": []},
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_a_release_blocked_or_rolled_back_for_ten_minutes_fires(tmp_path):
    def phase(namespace: str, release: str, name: str, values: str) -> dict:
        return series("ballast_release_phase", {"namespace": namespace, "release": release, "phase": name}, values)

    def fired(namespace: str, release: str, name: str) -> dict:
        return health(
            "BallastReleaseBlocked",
            {"namespace": namespace, "release": release, "phase": name},
            f"Release {namespace}/{release} is {name}",
            f"ModelRelease {namespace}/{release} has been {name} for 10 minutes: its conditions say why.",
        )

    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    phase("ml", "invoices-detector", "Blocked", "0x5 1x60"),  # blocked from minute 6
                    phase("ml", "invoices-detector", "Released", "1x5 0x60"),
                    phase("ops", "invoices-detector", "RolledBack", "1x65"),
                    phase("ml", "receipts", "Blocked", "0x5 1x5 0x55"),  # blocked for 5 minutes only
                    phase("ml", "receipts", "Released", "1x65"),
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "12m",
                        "alertname": "BallastReleaseBlocked",
                        "exp_alerts": [fired("ops", "invoices-detector", "RolledBack")],
                    },
                    {
                        "eval_time": "30m",
                        "alertname": "BallastReleaseBlocked",
                        "exp_alerts": [
                            fired("ml", "invoices-detector", "Blocked"),
                            fired("ops", "invoices-detector", "RolledBack"),
                        ],
                    },
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_pods_running_another_model_for_five_minutes_fire_model_drift(tmp_path):
    def drift(release: str, values: str) -> dict:
        return series("ballast_release_model_drift", {"namespace": "ml", "release": release}, values)

    fired = health(
        "BallastModelDrift",
        {"namespace": "ml", "release": "invoices-detector"},
        "Pods of release ml/invoices-detector run another model",
        "ModelRelease ml/invoices-detector says one model is released, and ready pods of its Deployment have run "
        "another for 5 minutes: `kubectl describe mrel` names them (a Git sync that set BALLAST_MODEL_* in the "
        "Deployment, or dropped its envFrom).",
    )
    document = {
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    drift("invoices-detector", "0x2 1x20"),  # drifting from minute 3
                    drift("receipts", "0x2 1x3 0x20"),  # drifted for 3 minutes, then healed
                ],
                "alert_rule_test": [
                    {"eval_time": "6m", "alertname": "BallastModelDrift", "exp_alerts": []},  # 3 minutes: not yet
                    {"eval_time": "9m", "alertname": "BallastModelDrift", "exp_alerts": [fired]},
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_a_review_waiting_longer_than_the_threshold_fires(tmp_path):
    # promtool's clock starts at Unix time 0: a run waiting since 0 has waited `eval_time`.
    def waiting(run: str, since: int) -> dict:
        labels = {"namespace": "ml", "pool": "invoices", "run": run}
        return series("ballast_run_review_waiting_since_seconds", labels, f"{since}x30")

    document = {
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1h",
                "input_series": [waiting("invoices-3", 0), waiting("invoices-4", 7200)],
                "alert_rule_test": [
                    {"eval_time": "23h", "alertname": "BallastReviewWaiting", "exp_alerts": []},
                    {
                        "eval_time": "25h",
                        "alertname": "BallastReviewWaiting",
                        "exp_alerts": [
                            health(
                                "BallastReviewWaiting",
                                {"namespace": "ml", "pool": "invoices", "run": "invoices-3"},
                                "Run ml/invoices-3 waits for approval",
                                "Run ml/invoices-3 (pool invoices) has had a Review verdict for 1d 1h 0m 0s "
                                "without a verified approval.",
                            )
                        ],
                    },
                ],
            }
        ],
    }
    completed = promtool(tmp_path, document)
    assert completed.returncode == 0, completed.stdout + completed.stderr
