"""The serving baseline: what a model looks like where it serves, learned by `ballast serve` itself.

The confidence and latency alerts compare production with a baseline. Measured in the gate Job, on
the training GPU, the latency baseline was a different machine's (a CPU server was always "2x
slower"), and a pool's first base, which no gate ever measured, had none. So `ballast serve` learns
the baseline from the first `documents` documents the model predicts in this Deployment:

- latency and mean box confidence always come from serving;
- the per-field rates come from the gate's held-out test set when the model has them (the per-field
  alert is relative to the test set, so optional fields stay quiet); a model no gate measured (the
  pool's first base) gets its own rates on those first documents instead.

Once learned, the baseline is written beside the model (`serving-baseline.json`, with the model's
digest) and every later pod of the same model reuses it: a pod restarted in the middle of a drift
must not learn the drift as its baseline. Delete the file to learn again (e.g. after moving serving
to other hardware).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ballast.api import layout

FILE = layout.SERVING_BASELINE


@dataclass(frozen=True)
class Baseline:
    documents: int
    latency_seconds: float
    confidence: float
    class_detection_rate: dict[str, float]
    class_source: str  # "testset" (the gate's) or "serving" (learned here)

    def to_json(self, model_digest: str) -> bytes:
        return json.dumps(
            {
                "modelDigest": model_digest,
                "documents": self.documents,
                "latencySeconds": round(self.latency_seconds, 6),
                "confidence": round(self.confidence, 6),
                "classDetectionRate": self.class_detection_rate,
                "classSource": self.class_source,
                "learnedAt": datetime.now(UTC).isoformat(timespec="seconds"),
            },
            indent=1,
        ).encode()


MAX_BYTES = 64 * 1024  # a baseline is a few hundred bytes: anything far larger is not one


def _rate(value: Any) -> float:
    rate = float(value)
    if not 0.0 <= rate <= 1.0:  # also refuses NaN
        raise ValueError(f"not a rate: {value!r}")
    return rate


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"not a finite figure: {value!r}")
    return number


def stored_baseline(raw: bytes | None, model_digest: str, classes: list[str]) -> Baseline | None:
    """A stored baseline of this very model, or None (absent, unreadable, another model's, or with
    figures no baseline has: NaN or infinite ones would silence the alerts for good, unknown
    classes would each become a series). Whoever may write the bucket can still forge plausible
    numbers: the effect is bounded to this model's alerts."""
    if raw is None or len(raw) > MAX_BYTES:
        return None
    try:
        document = json.loads(raw)
        if document.get("modelDigest") != model_digest:
            return None
        rates = {str(k): _rate(v) for k, v in document["classDetectionRate"].items() if str(k) in classes}
        return Baseline(
            documents=int(document["documents"]),
            latency_seconds=_finite(document["latencySeconds"]),
            confidence=_rate(document["confidence"]),
            class_detection_rate=rates,
            class_source=str(document.get("classSource", "serving"))[:16],
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def gate_class_rates(gate_baseline: dict[str, Any], classes: list[str] | None = None) -> dict[str, float] | None:
    """The per-field rates the gate measured on the held-out test set (baseline.json), if any
    (only the model's classes, only rates)."""
    rates = gate_baseline.get("classDetectionRate")
    if not isinstance(rates, dict) or not rates:
        return None
    try:
        return {str(k): _rate(v) for k, v in rates.items() if classes is None or str(k) in classes}
    except (ValueError, TypeError):
        return None


@dataclass
class BaselineLearner:
    """Accumulates the first `target` documents; `observe` returns the Baseline once, when complete."""

    target: int
    classes: list[str]
    test_set_rates: dict[str, float] | None = None
    documents: int = 0
    seconds: float = 0.0
    confidence_sum: float = 0.0
    boxes: int = 0
    class_documents: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if self.target < 1:
            raise ValueError(f"baseline documents must be at least 1, not {self.target}")

    @property
    def learning(self) -> bool:
        return self.documents < self.target

    def observe(self, seconds: float, confidences: list[float], classes_found: set[str]) -> Baseline | None:
        if not self.learning:
            return None
        self.documents += 1
        self.seconds += seconds
        self.confidence_sum += sum(confidences)
        self.boxes += len(confidences)
        self.class_documents.update(classes_found)
        if self.learning:
            return None
        if self.test_set_rates is not None:
            rates, source = dict(self.test_set_rates), "testset"
        else:
            rates = {name: self.class_documents[name] / self.documents for name in self.classes}
            source = "serving"
        return Baseline(
            documents=self.documents,
            latency_seconds=self.seconds / self.documents,
            confidence=self.confidence_sum / self.boxes if self.boxes else 0.0,
            class_detection_rate=rates,
            class_source=source,
        )
