"""Generate the CustomResourceDefinitions from the pydantic models (the single source of truth).

Pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3.0 schema: no $ref,
every node typed, `nullable` instead of `anyOf [.., null]`, boolean `exclusiveMinimum`. The
conversion is mechanical and lives here; the rules themselves stay on the models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from ballast.api import finetunepool, finetunerun, modelrelease
from ballast.api.common import GROUP, VERSION

CATEGORY = "ballast"


class _SchemaWithFactoryDefaults(GenerateJsonSchema):
    """Publish default_factory defaults too, so the apiserver fills in the whole default tree.

    A nested model default is the model's full default value: the apiserver validates defaults
    against the CEL rules as they are, without applying nested defaults first, so `{}` would not do.
    Empty containers are left out; they add nothing to `kubectl get -o yaml`.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is None or schema.get("default_factory_takes_data"):
            return super().get_default_value(schema)
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=False)
        if isinstance(value, list) and value:
            return [v.model_dump(mode="json", by_alias=True) if isinstance(v, BaseModel) else v for v in value]
        return NoDefault


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **siblings}, defs)
    return {key: _resolve(value, defs) for key, value in node.items() if key != "$defs"}


def _structural(node: Any) -> Any:
    """Rewrite one resolved JSON-Schema node (recursively) into structural OpenAPI v3."""
    if isinstance(node, list):
        return [_structural(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    node.pop("title", None)
    any_of = node.pop("anyOf", None)
    if any_of is not None:
        non_null = [branch for branch in any_of if branch.get("type") != "null"]
        if len(non_null) != 1:
            raise ValueError(f"crdgen: only Optional[X] unions are supported, got {any_of}")
        merged = {**non_null[0], **node}
        if len(non_null) != len(any_of):
            merged["nullable"] = True
            if merged.get("default", "unset") is None:
                merged.pop("default")
        node = merged
        node.pop("title", None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, exclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[exclusive] = node.pop(bound)
            node[bound] = True
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    if "properties" in node:
        node["type"] = "object"
        node["properties"] = {name: _structural(prop) for name, prop in node["properties"].items()}
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _structural(node["additionalProperties"])
    else:
        node.pop("additionalProperties", None)
    if "items" in node:
        node["items"] = _structural(node["items"])
    if "type" not in node:
        raise ValueError(f"crdgen: schema node without a type: {node}")
    return node


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a model, $refs inlined."""
    raw = model.model_json_schema(by_alias=True, schema_generator=_SchemaWithFactoryDefaults, mode="validation")
    return _structural(_resolve(raw, raw.get("$defs", {})))


def immutable_except(spec_schema: dict[str, Any], mutable: set[str]) -> dict[str, str]:
    """A CEL transition rule: every spec field but `mutable` keeps its value (and its presence)."""
    required = set(spec_schema.get("required", []))
    clauses = []
    for name in spec_schema["properties"]:
        if name in mutable:
            continue
        if name in required:
            clauses.append(f"self.{name} == oldSelf.{name}")
        else:
            clauses.append(
                f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})"
            )
    return {
        "rule": " && ".join(clauses),
        "message": f"spec is immutable except {', '.join(sorted(mutable))}",
    }


@dataclass(frozen=True)
class Resource:
    kind: str
    plural: str
    short_name: str
    spec: type[BaseModel]
    status: type[BaseModel]
    printer_columns: list[dict[str, Any]]
    description: str
    spec_rules: Callable[[dict[str, Any]], list[dict[str, str]]] = lambda _: []


RESOURCES = (
    Resource(
        finetunepool.KIND,
        finetunepool.PLURAL,
        finetunepool.SHORT_NAME,
        finetunepool.FineTunePoolSpec,
        finetunepool.FineTunePoolStatus,
        finetunepool.PRINTER_COLUMNS,
        (finetunepool.__doc__ or "").strip(),
    ),
    Resource(
        finetunerun.KIND,
        finetunerun.PLURAL,
        finetunerun.SHORT_NAME,
        finetunerun.FineTuneRunSpec,
        finetunerun.FineTuneRunStatus,
        finetunerun.PRINTER_COLUMNS,
        (finetunerun.__doc__ or "").strip(),
        spec_rules=lambda spec: [immutable_except(spec, {"approval"})],
    ),
    Resource(
        modelrelease.KIND,
        modelrelease.PLURAL,
        modelrelease.SHORT_NAME,
        modelrelease.ModelReleaseSpec,
        modelrelease.ModelReleaseStatus,
        modelrelease.PRINTER_COLUMNS,
        (modelrelease.__doc__ or "").strip(),
    ),
)


def crd(resource: Resource) -> dict[str, Any]:
    spec = openapi_schema(resource.spec)
    rules = spec.get("x-kubernetes-validations", []) + resource.spec_rules(spec)
    if rules:
        spec["x-kubernetes-validations"] = rules
    status = openapi_schema(resource.status)
    # kopf may add its own bookkeeping beside our fields; keep it rather than prune it.
    status["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{resource.plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.kind.lower(),
                "shortNames": [resource.short_name],
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": resource.printer_columns,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": resource.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status,
                            },
                        }
                    },
                }
            ],
        },
    }


def file_name(resource: Resource) -> str:
    return f"{GROUP}_{resource.plural}.yaml"
