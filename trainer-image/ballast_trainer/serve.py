"""`ballast-trainer serve`: the reference inference server the serving Deployment runs.

    POST /predict          an image (any Content-Type) -> {"model", "boxes": [...], "seconds"}
    POST /feedback?documentId=ID&reportedBy=WHO   the failed document's image -> the review inbox
    GET  /healthz          the process is up
    GET  /readyz           the model is loaded and its digest verified
    GET  /metrics          Prometheus metrics (ballast.adapters.metrics.ServingMetrics)

The model comes from BALLAST_MODEL_URI and must match BALLAST_MODEL_DIGEST (refused otherwise).
Its alert baselines are learned here, from its first documents (ballast_trainer.servingbaseline).
Feedback never enters a pool directly: it lands in `inbox/<pool>/` for a person to review and label,
with what the serving model found on the image (`predictions.json`), so `ballast inbox export`
can hand the reviewer those boxes to correct instead of drawing every one.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ballast.adapters.jsonhttp import BoundedHTTPServer, JsonRequestHandler
from ballast.adapters.metrics import ServingMetrics
from ballast.adapters.objectstore import ObjectStore, parse_uri
from ballast.adapters.pool import check_image
from ballast.api import inbox, layout
from ballast.api.samples import SampleError
from ballast_trainer import servingbaseline
from ballast_trainer.servingbaseline import Baseline, BaselineLearner

MAX_BODY = 20 * 1024 * 1024
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass
class Detection:
    cls: int
    name: str
    confidence: float
    box: tuple[float, float, float, float]


class Predictor:
    """Wraps whatever does the predicting, so the server's own overhead can be measured apart."""

    def __init__(self, weights: Path, imgsz: int, confidence: float) -> None:
        from ultralytics import YOLO  # the serving image carries ultralytics; the operator image does not

        self.model = YOLO(str(weights))
        self.names: dict[int, str] = dict(self.model.names)
        self.imgsz = imgsz
        self.confidence = confidence
        self.lock = threading.Lock()  # one forward pass at a time on this process's threads

    def __call__(self, image: Any) -> list[Detection]:
        with self.lock:
            result = self.model.predict(image, imgsz=self.imgsz, conf=self.confidence, verbose=False)[0]
        boxes = result.boxes
        return [
            Detection(int(c), self.names.get(int(c), str(int(c))), float(p), tuple(float(v) for v in xyxy))  # type: ignore[arg-type]
            for c, p, xyxy in zip(boxes.cls.tolist(), boxes.conf.tolist(), boxes.xyxy.tolist(), strict=True)
        ]


class ServingState:
    def __init__(
        self, pool: str, version: str, predictor: Predictor | None, store: ObjectStore | None, metrics: ServingMetrics
    ) -> None:
        self.pool = pool
        self.version = version
        self.predictor = predictor
        self.store = store
        self.metrics = metrics
        self.learner: BaselineLearner | None = None
        self.on_learned: Callable[[Baseline], None] | None = None
        self.learner_lock = threading.Lock()
        # Every class starts at zero, so a class the model never finds still has a series to alert on.
        metrics.documents.labels(pool, version)
        metrics.feedback.labels(pool, version)
        for name in predictor.names.values() if predictor else ():
            metrics.class_documents.labels(pool, version, name)

    def learn_baseline(self, learner: BaselineLearner, on_learned: Callable[[Baseline], None]) -> None:
        """Learn the alert baseline from the next `learner.target` documents, then call `on_learned`."""
        self.learner, self.on_learned = learner, on_learned
        self.metrics.baseline_documents.labels(self.pool, self.version).set(0)

    def _observe_for_baseline(self, seconds: float, detections: list[Detection]) -> None:
        if self.learner is None:
            return
        with self.learner_lock:
            learned = self.learner.observe(seconds, [d.confidence for d in detections], {d.name for d in detections})
            self.metrics.baseline_documents.labels(self.pool, self.version).set(self.learner.documents)
        if learned is not None:
            publish_baseline(self.metrics, self.pool, self.version, learned)
            if self.on_learned is not None:
                self.on_learned(learned)

    def predict(self, data: bytes) -> dict[str, Any]:
        import io

        from PIL import Image

        assert self.predictor is not None
        image = Image.open(io.BytesIO(data)).convert("RGB")
        started = time.perf_counter()
        detections = self.predictor(image)
        seconds = time.perf_counter() - started
        labels = (self.pool, self.version)
        self.metrics.documents.labels(*labels).inc()
        self.metrics.inference.labels(*labels).observe(seconds)
        for name in {d.name for d in detections}:
            self.metrics.class_documents.labels(*labels, name).inc()
        if detections:
            self.metrics.confidence_sum.labels(*labels).inc(sum(d.confidence for d in detections))
            self.metrics.confidence_count.labels(*labels).inc(len(detections))
        self._observe_for_baseline(seconds, detections)
        return {
            "model": self.version,
            "seconds": round(seconds, 6),
            "boxes": [
                {
                    "class": d.cls,
                    "name": d.name,
                    "confidence": round(d.confidence, 4),
                    "box": [round(v, 1) for v in d.box],
                }
                for d in detections
            ],
        }

    def feedback(self, data: bytes, document_id: str, reported_by: str) -> str:
        if self.store is None:
            raise RuntimeError("no object store configured for feedback")
        extension = check_image(data, "feedback image")
        moment = datetime.now(UTC)
        item = layout.inbox_item(self.pool, moment, document_id)
        predictions = self.inbox_predictions(data)  # before anything is stored: a report never lacks them
        self.store.put(inbox.item_file(item, f"image.{extension}"), data, "application/octet-stream")
        if predictions is not None:
            self.store.put(
                inbox.item_file(item, inbox.PREDICTIONS),
                predictions.model_dump_json(by_alias=True).encode(),
                "application/json",
            )
        report = inbox.FeedbackReport(
            document_id=document_id,
            reported_by=reported_by,
            reported_at=moment.strftime("%Y%m%dT%H%M%S%fZ"),
            model=self.version,
            image_file=f"image.{extension}",
        )
        # report.json last: an item is complete once it has one.
        self.store.put(
            inbox.item_file(item, inbox.REPORT), report.model_dump_json(by_alias=True).encode(), "application/json"
        )
        self.metrics.feedback.labels(self.pool, self.version).inc()
        return item

    def inbox_predictions(self, data: bytes) -> inbox.InboxPredictions | None:
        """What the serving model finds on a reported image (None when this server has no model)."""
        import io

        from PIL import Image

        if self.predictor is None:
            return None
        image = Image.open(io.BytesIO(data)).convert("RGB")
        boxes = [
            inbox.PredictedBox(
                cls=d.cls, name=d.name, confidence=round(d.confidence, 4), box=tuple(round(v, 2) for v in d.box)
            )
            for d in self.predictor(image)
        ]
        return inbox.InboxPredictions(
            model=self.version, image_width=image.width, image_height=image.height, boxes=boxes
        )


def make_handler(state: ServingState, feedback_token: str | None = None) -> type[JsonRequestHandler]:
    """/predict for anyone the network lets in; /feedback (which writes to the review inbox) only
    with the bearer token, when one is configured (the chart configures one)."""

    class Handler(JsonRequestHandler):
        def _body(self) -> bytes | None:
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0 or length > MAX_BODY:
                self.reply(400 if length <= 0 else 413, {"error": f"body must be 1..{MAX_BODY} bytes"})
                return None
            return self.rfile.read(length)

        def do_GET(self) -> None:
            path = urlparse(self.path).path
            if path == "/healthz":
                self.reply(200, {"status": "ok"})
            elif path == "/readyz":
                ready = state.predictor is not None
                self.reply(200 if ready else 503, {"ready": ready, "model": state.version})
            elif path == "/metrics":
                self.reply(200, generate_latest(state.metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            url = urlparse(self.path)
            if url.path not in ("/predict", "/feedback"):
                self.reply(404, {"error": "not found"})
                return
            if url.path == "/feedback" and feedback_token is not None:
                offered = self.headers.get("Authorization", "")
                if not hmac.compare_digest(offered.encode(), f"Bearer {feedback_token}".encode()):
                    self.reply(401, {"error": "missing or wrong bearer token"})
                    return
            data = self._body()
            if data is None:
                return
            try:
                if url.path == "/predict":
                    check_image(data, "image")
                    self.reply(200, state.predict(data))
                    return
                query = parse_qs(url.query)
                document_id = (query.get("documentId") or [""])[0]
                if not _SAFE_ID.match(document_id):
                    self.reply(400, {"error": "documentId: required, letters, digits, '.', '_' or '-'"})
                    return
                key = state.feedback(data, document_id, (query.get("reportedBy") or ["anonymous"])[0][:256])
                self.reply(202, {"inbox": key})
            except SampleError as error:
                self.reply(400, {"error": str(error)})

    return Handler


def load_model(store: ObjectStore, uri: str, digest: str, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """Download and verify the weights (DigestMismatch if tampered); read the gate's figures, if any."""
    relative = store.relative(uri)
    weights = workdir / "model.pt"
    weights.write_bytes(store.get(relative, digest))
    baseline_key = layout.beside(relative, "baseline.json")
    gate_figures = json.loads(store.get(baseline_key)) if store.exists(baseline_key) else {}
    return weights, gate_figures


def publish_class_rates(metrics: ServingMetrics, pool: str, version: str, rates: dict[str, float]) -> None:
    for name, rate in rates.items():
        metrics.baseline_class_rate.labels(pool, version, name).set(rate)


def publish_baseline(metrics: ServingMetrics, pool: str, version: str, baseline: Baseline) -> None:
    metrics.baseline_confidence.labels(pool, version).set(baseline.confidence)
    metrics.baseline_latency.labels(pool, version).set(baseline.latency_seconds)
    metrics.baseline_documents.labels(pool, version).set(baseline.documents)
    publish_class_rates(metrics, pool, version, baseline.class_detection_rate)


def prepare_baseline(
    state: ServingState, store: ObjectStore, uri: str, digest: str, gate_figures: dict[str, Any], documents: int
) -> str:
    """Publish the stored serving baseline of this model, or start learning one. Says which, for the log."""
    assert state.predictor is not None
    classes = sorted(state.predictor.names.values())
    key = layout.beside(store.relative(uri), servingbaseline.FILE)
    size = store.size(key)
    raw = store.get(key) if size is not None and size <= servingbaseline.MAX_BYTES else None  # never a huge read
    stored = servingbaseline.stored_baseline(raw, digest, classes)
    if stored is not None:
        publish_baseline(state.metrics, state.pool, state.version, stored)
        return f"baseline from {key} ({stored.documents} documents)"
    rates = servingbaseline.gate_class_rates(gate_figures, classes)
    if rates is not None:  # known now: the per-field alert need not wait for the rest
        publish_class_rates(state.metrics, state.pool, state.version, rates)
    learner = BaselineLearner(documents, classes, rates)

    def persist(learned: Baseline) -> None:
        try:
            store.put(key, learned.to_json(digest), "application/json")
            print(f"serving baseline learned from {learned.documents} documents, kept in {key}", flush=True)
        except Exception as error:
            print(f"serving baseline learned; could not keep it in {key}: {error}", flush=True)

    state.learn_baseline(learner, persist)
    return f"learning the baseline from the first {documents} documents"


def blank_page(size: int) -> Any:
    from PIL import Image

    return Image.new("RGB", (size, size), "white")


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="ballast-trainer serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("POD_IP", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("BALLAST_SERVE_PORT", "8000")))
    parser.add_argument("--imgsz", type=int, default=int(os.environ.get("BALLAST_IMGSZ", "640")))
    parser.add_argument("--confidence", type=float, default=float(os.environ.get("BALLAST_CONFIDENCE", "0.25")))
    parser.add_argument(
        "--baseline-documents",
        type=int,
        default=int(os.environ.get("BALLAST_BASELINE_DOCUMENTS", "100")),
        help="documents a new model's alert baseline is learned from (default 100)",
    )
    args = parser.parse_args(argv)
    if args.baseline_documents < 1:
        parser.error(f"--baseline-documents: must be at least 1, not {args.baseline_documents}")
    from ballast_trainer import offline  # set up before ultralytics is imported

    workdir = Path(tempfile.mkdtemp(prefix="ballast-serve-"))
    offline.prepare(workdir)
    uri, digest = os.environ["BALLAST_MODEL_URI"], os.environ["BALLAST_MODEL_DIGEST"]
    version = os.environ.get("BALLAST_MODEL_VERSION", "unknown")
    pool = os.environ.get("BALLAST_POOL", "")
    bucket, _ = parse_uri(uri)
    store = ObjectStore.from_env(bucket)
    metrics = ServingMetrics()
    weights, gate_figures = load_model(store, uri, digest, workdir)
    predictor = Predictor(weights, args.imgsz, args.confidence)
    predictor(blank_page(args.imgsz))  # warm-up: the first forward pass is slow, and is nobody's latency
    state = ServingState(pool, version, predictor, store, metrics)
    print(prepare_baseline(state, store, uri, digest, gate_figures, args.baseline_documents), flush=True)
    feedback_token = os.environ.get("BALLAST_FEEDBACK_TOKEN") or None
    server = BoundedHTTPServer((args.host, args.port), make_handler(state, feedback_token))
    print(f"serving {version} ({digest[:19]}...) on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()
    return 0
