"""`ballast serve` learns a model's alert baseline from its first documents, keeps it beside the model in
the real object store, and a restarted server reuses it instead of learning whatever it sees then.
The model is stood in for (a fixed set of boxes per page); the store, metrics and code paths are serve's own."""

from __future__ import annotations

import json

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ballast.adapters.metrics import ServingMetrics
from ballast.api import layout
from ballast_dev.synth import render
from ballast_dev.testing.datasets import BASE_KEY
from ballast_trainer.serve import Detection, ServingState, prepare_baseline
from ballast_trainer.servingbaseline import FILE

DIGEST = "sha256:" + "ab" * 32


class FixedModel:
    """Finds a `total` at the given confidence on every page, and a `signature` on every other one."""

    def __init__(self, confidence: float) -> None:
        self.names = {0: "total", 1: "signature"}
        self.confidence = confidence
        self.pages = 0

    def __call__(self, image) -> list[Detection]:
        self.pages += 1
        found = [Detection(0, "total", self.confidence, (1, 1, 5, 5))]
        if self.pages % 2:
            found.append(Detection(1, "signature", self.confidence, (6, 6, 9, 9)))
        return found


def samples(state: ServingState) -> dict[tuple[str, tuple], float]:
    families = text_string_to_metric_families(generate_latest(state.metrics.registry).decode())
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k not in ("pool", "model_version")))): s.value
        for family in families
        for s in family.samples
        if s.name.startswith(("ballast_model_baseline", "ballast_serve_baseline"))
    }


def serving(store, model: FixedModel, gate_figures: dict | None = None) -> tuple[ServingState, str]:
    state = ServingState("invoices", "base_v1", model, store, ServingMetrics())  # type: ignore[arg-type]
    said = prepare_baseline(state, store, store.uri(BASE_KEY), DIGEST, gate_figures or {}, documents=4)
    return state, said


def test_the_baseline_is_learned_from_the_first_documents_kept_in_the_store_and_reused_after_a_restart(
    pool_store,
):
    page = render("classic", 7).png()
    state, said = serving(pool_store, FixedModel(0.8))
    assert said == "learning the baseline from the first 4 documents"
    for _ in range(3):
        state.predict(page)
    # Learning: the count is visible, and no baseline yet, so the confidence and latency alerts stay quiet.
    assert samples(state) == {("ballast_serve_baseline_documents", ()): 3.0}
    kept = layout.beside(BASE_KEY, FILE)
    assert not pool_store.exists(kept)

    state.predict(page)
    learned = samples(state)
    assert learned[("ballast_model_baseline_confidence", ())] == pytest.approx(0.8)
    assert 0 < learned[("ballast_model_baseline_latency_seconds", ())] < 1
    # The pool's first base has no gate figures: its per-field rates are its own on those documents.
    assert learned[("ballast_model_baseline_class_detection_rate", (("class", "signature"),))] == 0.5
    assert learned[("ballast_model_baseline_class_detection_rate", (("class", "total"),))] == 1.0
    document = json.loads(pool_store.get(kept))
    assert document["modelDigest"] == DIGEST and document["documents"] == 4
    assert document["confidence"] == pytest.approx(0.8)

    # Restarted in the middle of a drift (confidence now 0.5): the kept baseline serves at once.
    restarted, said = serving(pool_store, FixedModel(0.5))
    assert said == f"baseline from {kept} (4 documents)"
    assert samples(restarted)[("ballast_model_baseline_confidence", ())] == pytest.approx(0.8)
    restarted.predict(page)
    assert samples(restarted)[("ballast_model_baseline_confidence", ())] == pytest.approx(0.8)


def test_a_gated_model_alerts_per_field_from_its_test_set_rates_before_any_document(pool_store):
    gate_figures = {"classDetectionRate": {"total": 0.97, "signature": 0.3}, "latencySeconds": 0.004}
    state, _ = serving(pool_store, FixedModel(0.9), gate_figures)
    rates = samples(state)
    assert rates[("ballast_model_baseline_class_detection_rate", (("class", "signature"),))] == 0.3
    # The gate's latency was measured on the training GPU: never the serving baseline.
    assert ("ballast_model_baseline_latency_seconds", ()) not in rates
    for _ in range(4):
        state.predict(render("classic", 8).png())
    assert samples(state)[("ballast_model_baseline_class_detection_rate", (("class", "signature"),))] == 0.3


def test_a_baseline_of_another_model_in_the_same_place_is_not_reused(pool_store):
    pool_store.put(layout.beside(BASE_KEY, FILE), json.dumps({"modelDigest": "sha256:" + "cd" * 32}).encode())
    _, said = serving(pool_store, FixedModel(0.8))
    assert said.startswith("learning")
