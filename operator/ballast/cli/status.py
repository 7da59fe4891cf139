"""`ballast status [-o table|json|yaml]`: the namespace's pools, runs and releases at a glance.

The table (the default) is for people; `-o json` and `-o yaml` give each object's name and its
status columns as stored, for scripts.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

STATUS_COLUMNS = (
    ("finetunepools", ("verifiedSamples", "samplesSinceLastRun", "currentBase", "activeRun")),
    ("finetuneruns", ("phase", "verdict", "model", "message")),
    ("modelreleases", ("phase", "currentModel", "message")),
)


def status_report(namespace: str, listed: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The structured `ballast status`: each object's name and its status columns, as stored."""
    report: dict[str, Any] = {"namespace": namespace}
    for plural, columns in STATUS_COLUMNS:
        report[plural] = [
            {"name": item["metadata"]["name"], **{c: (item.get("status") or {}).get(c) for c in columns}}
            for item in listed.get(plural, [])
        ]
    return report


def status_table(report: dict[str, Any]) -> str:
    rows: list[str] = []
    for plural, columns in STATUS_COLUMNS:
        rows.append(f"{plural}:")
        for item in report[plural]:
            values = []
            for column in columns:
                value = item[column]
                if isinstance(value, dict):
                    value = value.get("version")
                values.append(f"{column}={json.dumps(value) if value is not None else '-'}")
            rows.append(f"  {item['name']}: " + " ".join(values))
    return "\n".join(rows)


def render(report: dict[str, Any], output: str) -> str:
    """`-o table|json|yaml` of a list-like report."""
    if output == "json":
        return json.dumps(report, indent=2, sort_keys=False, default=str)
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(json.loads(json.dumps(report, default=str)), sort_keys=False)).rstrip("\n")
    return status_table(report)


def show_status(args: argparse.Namespace) -> int:
    from ballast.adapters.kube import list_custom
    from ballast.cli.people import _kube, _namespace

    kube = _kube()
    namespace = _namespace(args)
    listed = {plural: list_custom(kube, namespace, plural) for plural, _ in STATUS_COLUMNS}
    print(render(status_report(namespace, listed), args.output))
    return 0
