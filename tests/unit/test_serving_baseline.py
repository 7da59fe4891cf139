"""The serving baseline `ballast serve` learns from a model's first documents (ballast_trainer.servingbaseline)."""

from __future__ import annotations

import json

import pytest

from ballast_trainer.servingbaseline import Baseline, BaselineLearner, gate_class_rates, stored_baseline

CLASSES = ["total", "signature"]


def feed(learner: BaselineLearner, documents: list[tuple[float, list[float], set[str]]]) -> list[Baseline | None]:
    return [learner.observe(*document) for document in documents]


def test_no_baseline_exists_before_the_last_of_the_first_documents():
    learner = BaselineLearner(3, CLASSES)
    results = feed(learner, [(0.1, [0.9], {"total"}), (0.3, [0.7], {"total"})])
    assert results == [None, None] and learner.learning


def test_the_baseline_is_the_mean_latency_and_the_mean_box_confidence_of_the_first_documents():
    learner = BaselineLearner(3, CLASSES)
    *_, learned = feed(learner, [(0.1, [0.9, 0.8], {"total"}), (0.3, [], set()), (0.2, [0.7], {"total", "signature"})])
    assert learned is not None
    assert learned.latency_seconds == pytest.approx(0.2)
    assert learned.confidence == pytest.approx(0.8)  # per box, as serve's confidence_sum / confidence_count
    assert learned.documents == 3 and not learner.learning


def test_a_model_no_gate_measured_learns_its_per_field_rates_from_the_same_documents():
    learner = BaselineLearner(4, CLASSES)
    *_, learned = feed(learner, [(0.1, [0.9], {"total"})] * 3 + [(0.1, [0.9], {"total", "signature"})])
    assert learned is not None and learned.class_source == "serving"
    assert learned.class_detection_rate == {"total": 1.0, "signature": 0.25}


def test_a_gated_model_keeps_its_test_set_rates_for_the_per_field_alert():
    learner = BaselineLearner(2, CLASSES, {"total": 0.98, "signature": 0.3})
    *_, learned = feed(learner, [(0.1, [0.9], set())] * 2)
    assert learned is not None and learned.class_source == "testset"
    assert learned.class_detection_rate == {"total": 0.98, "signature": 0.3}


def test_documents_after_the_baseline_is_learned_do_not_change_it():
    learner = BaselineLearner(1, CLASSES)
    assert feed(learner, [(0.1, [0.9], set())])[0] is not None
    assert feed(learner, [(5.0, [0.1], set())]) == [None]
    assert learner.documents == 1


def test_documents_that_find_nothing_give_a_zero_confidence_baseline_which_never_alerts():
    learned = feed(BaselineLearner(2, CLASSES), [(0.1, [], set())] * 2)[-1]
    assert learned is not None and learned.confidence == 0.0


def test_fewer_than_one_baseline_document_is_refused_naming_the_count():
    with pytest.raises(ValueError, match="at least 1, not 0"):
        BaselineLearner(0, CLASSES)


BASELINE = Baseline(100, 0.25, 0.8, {"total": 0.9}, "serving")


def forged(**changes) -> bytes:
    document = {**json.loads(BASELINE.to_json("sha256:aa")), **changes}
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("raw", "digest", "expected"),
    [
        (BASELINE.to_json("sha256:aa"), "sha256:aa", BASELINE),
        (BASELINE.to_json("sha256:aa"), "sha256:bb", None),  # another model's: learn again
        (None, "sha256:aa", None),
        (b"{not json", "sha256:aa", None),
        (b'{"modelDigest": "sha256:aa", "documents": 1}', "sha256:aa", None),
        (forged(confidence=float("nan")), "sha256:aa", None),
        (forged(latencySeconds=float("inf")), "sha256:aa", None),
        (forged(classDetectionRate={"total": 7}), "sha256:aa", None),
        (forged(classDetectionRate={"total": 0.9, "x" * 50: 0.5}), "sha256:aa", BASELINE),
        (forged(padding="x" * 70_000), "sha256:aa", None),
    ],
    ids=[
        "a stored baseline of the same model is reused",
        "a stored baseline of another model is ignored",
        "no stored baseline means learning",
        "an unreadable stored baseline means learning",
        "an incomplete stored baseline means learning",
        "a NaN confidence (which would silence the alert for good) is refused",
        "an infinite latency is refused",
        "a rate above 1 is refused",
        "classes the model does not have are dropped, not made into series",
        "a stored baseline far larger than one is refused",
    ],
)
def test_stored_baselines_are_reused_only_for_the_model_they_were_learned_on(raw, digest, expected):
    assert stored_baseline(raw, digest, CLASSES) == expected


@pytest.mark.parametrize(
    ("gate_figures", "expected"),
    [
        ({"classDetectionRate": {"total": 0.9}, "latencySeconds": 0.01}, {"total": 0.9}),
        ({"latencySeconds": 0.01}, None),
        ({}, None),
        ({"classDetectionRate": {}}, None),
        ({"classDetectionRate": {"total": float("nan")}}, None),
        ({"classDetectionRate": {"total": 0.9, "forged": 0.5}}, {"total": 0.9}),
    ],
    ids=[
        "gate figures give the test-set rates",
        "no rates",
        "no gate figures",
        "empty rates",
        "a rate that is not one gives none",
        "only the model's classes are taken",
    ],
)
def test_only_the_gates_per_field_rates_are_taken_from_its_figures(gate_figures, expected):
    assert gate_class_rates(gate_figures, CLASSES) == expected
