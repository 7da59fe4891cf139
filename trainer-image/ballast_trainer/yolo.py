"""The only module that calls Ultralytics: train, evaluate mAP50, measure detection rate."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ballast.api.contracts import TrainingRan
from ballast.api.samples import parse_labels
from ballast_trainer import measured


def device_for(gpus: int) -> str:
    """The one device a gate evaluates on."""
    return "0" if gpus > 0 else "cpu"


def train(
    model: str, data: Path, project: Path, args: dict[str, Any]
) -> tuple[Path, list[dict[str, float]], dict, TrainingRan | None]:
    """Train; return (best weights, per-epoch metrics, the train() arguments actually used, what
    the trainer measured it ran)."""
    from ultralytics import YOLO

    yolo = YOLO(model)
    measured.Recorder().attach(yolo)
    used = dict(args, data=str(data), project=str(project), name="train", exist_ok=True, plots=False, verbose=False)
    yolo.train(**used)
    trainer = yolo.trainer
    save_dir = Path(trainer.save_dir)
    best = save_dir / "weights" / "best.pt"
    if not best.exists():
        best = save_dir / "weights" / "last.pt"
    epochs = _read_results(save_dir / "results.csv")
    resolved = {k: v for k, v in vars(trainer.args).items() if isinstance(v, str | int | float | bool) or v is None}
    return best, epochs, resolved, measured.read(save_dir)


def _read_results(path: Path) -> list[dict[str, float]]:
    if not path.exists():
        return []
    lines = path.read_text().strip().splitlines()
    header = [h.strip() for h in lines[0].split(",")]
    rows = []
    for line in lines[1:]:
        values = [v.strip() for v in line.split(",")]
        rows.append({h: float(v) for h, v in zip(header, values, strict=False) if v})
    return rows


@dataclass(frozen=True)
class Evaluation:
    map50: float
    per_class_ap50: dict[str, float]


def evaluate(weights: Path, data: Path, split: str, imgsz: int, device: str, classes: list[str]) -> Evaluation:
    """mAP50 overall and AP50 per class on one split of a dataset."""
    from ultralytics import YOLO

    metrics = YOLO(str(weights)).val(
        data=str(data), split=split, imgsz=imgsz, device=device, plots=False, verbose=False, workers=0, batch=16
    )
    per_class = {classes[int(i)]: float(ap) for i, ap in zip(metrics.box.ap_class_index, metrics.box.ap50, strict=True)}
    return Evaluation(float(metrics.box.map50), per_class)


@dataclass(frozen=True)
class DetectionRate:
    rate: float
    found: int
    total: int
    per_class: dict[str, tuple[int, int]]  # class -> (found, total)


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match_boxes(
    truth: list[tuple[int, tuple[float, float, float, float]]],
    predicted: list[tuple[int, float, tuple[float, float, float, float]]],
    iou_threshold: float,
) -> list[bool]:
    """For each ground-truth box: found by a prediction of its class at IoU >= threshold?

    Greedy by confidence, one prediction per ground-truth box (as detection benchmarks do).
    """
    found = [False] * len(truth)
    for cls, _conf, box in sorted(predicted, key=lambda p: -p[1]):
        best, best_iou = -1, iou_threshold
        for index, (truth_cls, truth_box) in enumerate(truth):
            if found[index] or truth_cls != cls:
                continue
            overlap = _iou(box, truth_box)
            if overlap >= best_iou:
                best, best_iou = index, overlap
        if best >= 0:
            found[best] = True
    return found


def combined(a: DetectionRate, b: DetectionRate) -> DetectionRate:
    """The rate over both sets of documents together."""
    per_class = {
        name: (
            a.per_class.get(name, (0, 0))[0] + b.per_class.get(name, (0, 0))[0],
            a.per_class.get(name, (0, 0))[1] + b.per_class.get(name, (0, 0))[1],
        )
        for name in set(a.per_class) | set(b.per_class)
    }
    found, total = a.found + b.found, a.total + b.total
    return DetectionRate(found / total if total else 0.0, found, total, per_class)


def detection_rate(
    weights: Path,
    images: list[Path],
    labels: list[Path],
    classes: list[str],
    imgsz: int,
    device: str,
    confidence: float,
    iou: float,
) -> DetectionRate:
    """Share of ground-truth boxes found (right class, IoU >= iou, confidence >= confidence)."""
    from ultralytics import YOLO

    model = YOLO(str(weights))
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for start in range(0, len(images), 16):
        batch = images[start : start + 16]
        results = model.predict([str(p) for p in batch], imgsz=imgsz, conf=confidence, device=device, verbose=False)
        for result, label_path in zip(results, labels[start : start + 16], strict=True):
            height, width = result.orig_shape
            truth = []
            for box in parse_labels(label_path.read_text(), len(classes), str(label_path)):
                truth.append(
                    (
                        box.cls,
                        (
                            (box.x - box.w / 2) * width,
                            (box.y - box.h / 2) * height,
                            (box.x + box.w / 2) * width,
                            (box.y + box.h / 2) * height,
                        ),
                    )
                )
            predicted = [
                (int(c), float(p), tuple(float(v) for v in xyxy))
                for c, p, xyxy in zip(
                    result.boxes.cls.tolist(), result.boxes.conf.tolist(), result.boxes.xyxy.tolist(), strict=True
                )
            ]
            for (cls, _), hit in zip(truth, match_boxes(truth, predicted, iou), strict=True):  # type: ignore[arg-type]
                counts[classes[cls]][1] += 1
                counts[classes[cls]][0] += int(hit)
    found = sum(c[0] for c in counts.values())
    total = sum(c[1] for c in counts.values())
    return DetectionRate(found / total if total else 0.0, found, total, {k: (v[0], v[1]) for k, v in counts.items()})


@dataclass(frozen=True)
class ServingBaseline:
    """What `ballast-trainer serve` should see from this model on documents like the test set."""

    confidence: float  # mean box confidence at the serving threshold
    latency_seconds: float  # mean model time per document
    class_detection_rate: dict[str, float]  # documents with >= 1 box of the class / documents


def serving_baseline(
    weights: Path, images: list[Path], classes: list[str], imgsz: int, device: str, confidence: float
) -> ServingBaseline:
    import time

    from ultralytics import YOLO

    model = YOLO(str(weights))
    model.predict(str(images[0]), imgsz=imgsz, conf=confidence, device=device, verbose=False)  # warm-up
    seen: dict[str, int] = defaultdict(int)
    confidences: list[float] = []
    elapsed = 0.0
    for image in images:
        started = time.perf_counter()
        result = model.predict(str(image), imgsz=imgsz, conf=confidence, device=device, verbose=False)[0]
        elapsed += time.perf_counter() - started
        confidences += result.boxes.conf.tolist()
        for cls in set(result.boxes.cls.tolist()):
            seen[classes[int(cls)]] += 1
    count = max(len(images), 1)
    return ServingBaseline(
        confidence=sum(confidences) / len(confidences) if confidences else 0.0,
        latency_seconds=elapsed / count,
        class_detection_rate={name: seen.get(name, 0) / count for name in classes},
    )
