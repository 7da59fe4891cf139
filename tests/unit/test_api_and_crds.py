from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from ballast.api.finetunerun import FineTuneRunSpec
from ballast.codegen import crds, docs, sync
from ballast.codegen.schema import RESOURCES, crd
from ballast.policy.conditions import set_condition

from .builders import DIGEST, T0, a_pool_spec

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_crds_match_the_models() -> None:
    assert sync(crds.files(), ROOT, check=True) == [], "run `python -m ballast.codegen`"


def test_the_check_notices_a_hand_edited_crd(tmp_path: Path) -> None:
    sync(crds.files(), tmp_path, check=False)
    target = tmp_path / "crds" / "ballast.dev_finetunepools.yaml"
    target.write_text(target.read_text().replace("minimum: 50", "minimum: 5"))
    assert sync(crds.files(), tmp_path, check=True) == [Path("crds/ballast.dev_finetunepools.yaml")]


def walk(node: object):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_every_schema_node_is_structural(resource) -> None:
    schema = crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for node in walk(schema["properties"]["spec"]):
        if "properties" in node or "items" in node:
            assert node.get("type"), node
        assert "$ref" not in node and "anyOf" not in node and "title" not in node


@pytest.mark.parametrize(
    ("kind", "short", "columns"),
    [
        ("FineTunePool", "ftp", ["Verified", "Since-Last-Run", "Base", "Active-Run", "Ready", "Message", "Age"]),
        (
            "FineTuneRun",
            "ftr",
            [
                "Pool",
                "Kind",
                "Phase",
                "Queued",
                "Verdict",
                "mAP50-Drop",
                "Det-Rate",
                "Model",
                "Ready",
                "Message",
                "Age",
            ],
        ),
        ("ModelRelease", "mrel", ["Deployment", "Model", "Desired", "Phase", "Ready", "Message", "Age"]),
    ],
)
def test_printer_columns_and_short_names(kind: str, short: str, columns: list[str]) -> None:
    resource = next(r for r in RESOURCES if r.kind == kind)
    definition = crd(resource)
    assert definition["spec"]["names"]["shortNames"] == [short]
    assert definition["spec"]["names"]["categories"] == ["ballast"]
    version = definition["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == columns
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_ready_shows_in_kubectl_get_and_its_message_with_wide_output(resource) -> None:
    columns = {c["name"]: c for c in crd(resource)["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert "priority" not in columns["Ready"]
    assert columns["Message"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].message'
    assert columns["Message"]["priority"] == 1


@pytest.mark.parametrize("resource", RESOURCES, ids=lambda r: r.kind)
def test_conditions_are_a_list_map_keyed_by_type_with_metav1_required_fields(resource) -> None:
    status = crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert "observedGeneration" in item["properties"]
    assert "nullable" not in item["properties"]["lastTransitionTime"]
    assert item["properties"]["reason"]["pattern"] == "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
    assert "observedGeneration" in status["properties"]


def test_every_condition_reason_is_a_camel_case_identifier() -> None:
    from ballast.api.common import REASON_PATTERN
    from ballast.api.conditions import Reason

    assert [r for r in Reason if not re.fullmatch(REASON_PATTERN, r)] == []


def test_run_spec_is_immutable_except_approval_by_cel() -> None:
    resource = next(r for r in RESOURCES if r.kind == "FineTuneRun")
    spec = crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rule = spec["x-kubernetes-validations"][-1]["rule"]
    assert "self.pool == oldSelf.pool" in rule and "approval" not in rule


def test_field_descriptions_reach_the_crd_for_kubectl_explain() -> None:
    resource = next(r for r in RESOURCES if r.kind == "FineTuneRun")
    spec = crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "Ultralytics" in spec["properties"]["training"]["properties"]["optimizer"]["description"]


def test_seed_defaults_are_published_for_the_apiserver() -> None:
    resource = next(r for r in RESOURCES if r.kind == "FineTunePool")
    spec = crd(resource)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    training = spec["properties"]["training"]["properties"]
    assert (training["epochs"]["default"], training["lr0"]["default"], training["freeze"]["default"]) == (10, 0.001, 10)
    assert spec["properties"]["triggers"]["properties"]["minNewSamples"]["minimum"] == 50
    assert spec["properties"]["mixing"]["properties"]["table"]["default"][0] == {"newSamples": 10, "multiplier": 50}


def test_the_pool_defaults_are_the_seeds() -> None:
    spec = a_pool_spec()
    assert spec.triggers.min_new_samples == 50
    assert spec.rebase.threshold == 2000
    assert (spec.training.epochs, spec.training.lr0, spec.training.freeze) == (10, 0.001, 10)
    assert (spec.training.warmup_epochs, spec.training.cos_lr) == (1, True)
    assert spec.mixing.old_sample_cap == 3000
    assert (spec.gates.regression.pass_below, spec.gates.regression.reject_above) == (1.0, 3.0)
    assert spec.gates.new_samples.min_detection_rate == 0.80


def test_a_typo_in_a_manifest_is_an_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match="epoch"):
        a_pool_spec(training={"epoch": 5})


def test_gate_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValidationError, match="passBelow must be below rejectAbove"):
        a_pool_spec(gates={"regression": {"passBelow": 3.0, "rejectAbove": 1.0}})


def test_a_run_may_not_start_from_a_fine_tune() -> None:
    with pytest.raises(ValidationError, match="baseModel|base_model"):
        FineTuneRunSpec.model_validate(
            {"pool": "p", "baseModel": {"version": "ft_v1.1", "uri": "s3://b/k", "digest": DIGEST}}
        )


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    first = set_condition([], "Ready", True, "SpecValid", "ok", T0)
    later = T0.replace(hour=13)
    again = set_condition(first, "Ready", True, "SpecValid", "still ok", later)
    assert again[0].last_transition_time == T0 and again[0].message == "still ok"
    flipped = set_condition(again, "Ready", False, "SpecInvalid", "bad", later)
    assert flipped[0].last_transition_time == later and len(flipped) == 1


def test_the_crd_reference_in_docs_is_current() -> None:
    assert sync(docs.files(), ROOT, check=True) == [], "run `python -m ballast.codegen`"


def test_every_reason_says_when_it_is_set_and_is_used() -> None:
    import ast

    from ballast.api.conditions import Reason

    module = ROOT / "operator" / "ballast" / "api" / "conditions.py"
    body = next(
        n for n in ast.parse(module.read_text()).body if isinstance(n, ast.ClassDef) and n.name == "Reason"
    ).body
    documented = {
        statement.targets[0].id  # type: ignore[attr-defined]
        for statement, after in itertools.pairwise(body)
        if isinstance(statement, ast.Assign) and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
    }
    users = "".join(p.read_text() for p in (ROOT / "operator" / "ballast").rglob("*.py") if p != module)
    for reason in Reason:
        assert reason.name in documented, f"Reason.{reason.name} has no sentence saying when it is set"
        assert f"Reason.{reason.name}" in users, f"Reason.{reason.name} is never set"
