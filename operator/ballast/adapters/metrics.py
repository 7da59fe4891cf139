"""Every Prometheus metric Ballast exports, with its labels. This is the one place they are defined.

Operator (served by `ballast operator` on --metrics-port, default 9090):

| metric | type | labels | meaning |
|---|---|---|---|
| ballast_pool_verified_samples | gauge | namespace, pool | human-verified samples in the pool |
| ballast_pool_samples_since_last_run | gauge | namespace, pool | samples not yet used by a run |
| ballast_pool_pending_alerts | gauge | namespace, pool | drift alerts received and not yet acted on (0/1) |
| ballast_runs | gauge | namespace, pool, phase, verdict | runs by phase and verdict ("" while ungated) |
| ballast_run_map50 | gauge | namespace, pool, run, model | Gate 1 mAP50; model is "base" or "candidate" |
| ballast_run_map50_drop | gauge | namespace, pool, run | Gate 1 drop, in the pool's unit |
| ballast_run_detection_rate | gauge | namespace, pool, run | Gate 2 detection rate on the new samples |
| ballast_run_duration_seconds | histogram | namespace, pool, kind | creation to terminal phase |
| ballast_release_model_info | gauge | namespace, release, model | 1 for the model a release serves |
| ballast_run_review_waiting_since_seconds | gauge | namespace, pool, run | Unix time a Review verdict began waiting for a verified approval (gone once approved or deleted) |
| ballast_release_rollbacks_total | counter | namespace, release | rollbacks (spec-driven or failed rollouts) |
| ballast_release_phase | gauge | namespace, release, phase | 1 for the release's current phase, 0 for the others |
| ballast_release_model_drift | gauge | namespace, release | 1 while ready pods run another model than the one released (ModelDrift) |
| ballast_reconcile_seconds | histogram | kind | time one reconcile takes (its count: reconciles) |
| ballast_reconcile_errors_total | counter | kind | reconciles that raised (retried on the next tick) |
| ballast_object_store_requests_total | counter | kind | object-store requests made by reconciles |
| ballast_alerts_received_total | counter | alertname, outcome | webhook alerts: accepted, unmatched, refused, invalid, unauthorized |

Serving (`ballast-trainer serve`, /metrics):

| metric | type | labels | meaning |
|---|---|---|---|
| ballast_serve_documents_total | counter | pool, model_version | documents predicted |
| ballast_serve_class_documents_total | counter | pool, model_version, class | documents with >= 1 box of the class |
| ballast_serve_confidence_sum_total | counter | pool, model_version | sum of box confidences (average = sum / count) |
| ballast_serve_confidence_count_total | counter | pool, model_version | number of boxes |
| ballast_serve_inference_seconds | histogram | pool, model_version | model time per document |
| ballast_serve_feedback_total | counter | pool, model_version | documents users reported as failed |
| ballast_model_baseline_confidence | gauge | pool, model_version | mean box confidence on the model's first documents served |
| ballast_model_baseline_latency_seconds | gauge | pool, model_version | mean inference time on the model's first documents served |
| ballast_model_baseline_class_detection_rate | gauge | pool, model_version, class | per-class rate on the held-out test set (the gate's); for a model no gate measured, on its first documents served |
| ballast_serve_baseline_documents | gauge | pool, model_version | documents the baseline is learned from so far (the baseline appears when it reaches --baseline-documents) |

The serving series get `namespace` from the scrape (Kubernetes discovery labels a target with its
pod's namespace); the alert rules keep it, and the operator's webhook finds the pool by it.

The waiting time of a Review is `time() - ballast_run_review_waiting_since_seconds`: a timestamp, not
a duration, because the operator reconciles on events only and a duration would stand still.

Every alert's runbook is a `### Alert: NAME` section of README.md's runbook (its `runbook_url`).

No label ever carries a credential, a URL with a secret, or a user's document content.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.pool_verified = Gauge(
            "ballast_pool_verified_samples", "Human-verified samples in the pool", ["namespace", "pool"], registry=r
        )
        self.pool_since_last_run = Gauge(
            "ballast_pool_samples_since_last_run", "Samples not yet used by a run", ["namespace", "pool"], registry=r
        )
        self.pool_pending_alerts = Gauge(
            "ballast_pool_pending_alerts", "Drift alerts waiting to be acted on", ["namespace", "pool"], registry=r
        )
        self.runs = Gauge(
            "ballast_runs", "Runs by phase and verdict", ["namespace", "pool", "phase", "verdict"], registry=r
        )
        self.run_map50 = Gauge(
            "ballast_run_map50", "Gate 1 mAP50 of base and candidate", ["namespace", "pool", "run", "model"], registry=r
        )
        self.run_drop = Gauge("ballast_run_map50_drop", "Gate 1 mAP50 drop", ["namespace", "pool", "run"], registry=r)
        self.run_detection = Gauge(
            "ballast_run_detection_rate",
            "Gate 2 detection rate on the new samples",
            ["namespace", "pool", "run"],
            registry=r,
        )
        self.run_duration = Histogram(
            "ballast_run_duration_seconds",
            "Run duration, creation to terminal phase",
            ["namespace", "pool", "kind"],
            registry=r,
            buckets=(60, 300, 900, 1800, 3600, 7200, 14400, 43200),
        )
        self.release_model = Gauge(
            "ballast_release_model_info",
            "The model a release serves (1)",
            ["namespace", "release", "model"],
            registry=r,
        )
        self.run_review_waiting_since = Gauge(
            "ballast_run_review_waiting_since_seconds",
            "Unix time a Review verdict began waiting for a verified approval",
            ["namespace", "pool", "run"],
            registry=r,
        )
        self.release_phase = Gauge(
            "ballast_release_phase", "1 for the release's current phase", ["namespace", "release", "phase"], registry=r
        )
        self.release_drift = Gauge(
            "ballast_release_model_drift",
            "1 while ready pods run another model than the one released",
            ["namespace", "release"],
            registry=r,
        )
        self.release_rollbacks = Counter(
            "ballast_release_rollbacks", "Rollbacks of a release", ["namespace", "release"], registry=r
        )
        self.reconcile_seconds = Histogram(
            "ballast_reconcile_seconds", "Time one reconcile takes", ["kind"], registry=r, buckets=LATENCY_BUCKETS
        )
        self.reconcile_errors = Counter("ballast_reconcile_errors", "Reconciles that raised", ["kind"], registry=r)
        self.store_requests = Counter(
            "ballast_object_store_requests", "Object-store requests made by reconciles", ["kind"], registry=r
        )
        self.alerts = Counter(
            "ballast_alerts_received", "Alertmanager webhook alerts by outcome", ["alertname", "outcome"], registry=r
        )

    def start_at_zero(self, kinds: list[str]) -> None:
        """Counters by kind exist from the start at 0, so a first error is an increase (rate() and
        increase() need a series before the event) and dashboards show 0, not "no data"."""
        for kind in kinds:
            self.reconcile_errors.labels(kind)
            self.store_requests.labels(kind)

    def review_waiting(self, namespace: str, pool: str, run: str, since: float | None) -> None:
        """Record that `run` waits for approval since `since` (Unix time), or no longer waits (None)."""
        if since is not None:
            self.run_review_waiting_since.labels(namespace, pool, run).set(since)
            return
        # The pool may be unknown (a deleted run): drop every series of this run.
        self.run_review_waiting_since.remove_by_labels({"namespace": namespace, "run": run})


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        labels = ["pool", "model_version"]
        self.documents = Counter("ballast_serve_documents", "Documents predicted", labels, registry=r)
        self.class_documents = Counter(
            "ballast_serve_class_documents",
            "Documents with at least one box of the class",
            [*labels, "class"],
            registry=r,
        )
        self.confidence_sum = Counter("ballast_serve_confidence_sum", "Sum of box confidences", labels, registry=r)
        self.confidence_count = Counter("ballast_serve_confidence_count", "Number of boxes", labels, registry=r)
        self.inference = Histogram(
            "ballast_serve_inference_seconds", "Model time per document", labels, registry=r, buckets=LATENCY_BUCKETS
        )
        self.feedback = Counter("ballast_serve_feedback", "Documents users reported as failed", labels, registry=r)
        self.baseline_confidence = Gauge(
            "ballast_model_baseline_confidence", "Mean box confidence on the first documents served", labels, registry=r
        )
        self.baseline_latency = Gauge(
            "ballast_model_baseline_latency_seconds",
            "Mean inference time on the first documents served",
            labels,
            registry=r,
        )
        self.baseline_class_rate = Gauge(
            "ballast_model_baseline_class_detection_rate",
            "Per-class document detection rate on the held-out test set (else on the first documents served)",
            [*labels, "class"],
            registry=r,
        )
        self.baseline_documents = Gauge(
            "ballast_serve_baseline_documents",
            "Documents the serving baseline is learned from so far",
            labels,
            registry=r,
        )
