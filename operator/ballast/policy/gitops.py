"""Is an object's desired state kept in Git? Then Ballast must not change it behind Git's back.

A ModelRelease that Argo CD or Flux applies has its `spec.model` in Git: patching it from the CLI
lasts until the next self-heal or reconcile, which puts Git's model back, and the operator then
rolls forward again (each step counted as a rollback). So `ballast release rollback` refuses such a
release and prints the change to make in Git instead (what Argo Rollouts tells its users too).

Recognised by the marks the tools themselves leave on what they apply:
- Argo CD: the `argocd.argoproj.io/tracking-id` annotation (annotation tracking, the default since
  Argo CD 3), the `argocd.argoproj.io/instance` label (label tracking configured to that key);
- Flux: the `kustomize.toolkit.fluxcd.io/name` or `helm.toolkit.fluxcd.io/name` labels;
- either: a field manager of their controllers (`argocd-controller`, `kustomize-controller`,
  `helm-controller`) owning `spec` in managedFields (server-side apply).
The plain `app.kubernetes.io/instance` label is not a sign: Helm sets it on everything it installs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ARGO_ANNOTATIONS = ("argocd.argoproj.io/tracking-id",)
ARGO_LABELS = ("argocd.argoproj.io/instance",)
FLUX_LABELS = {
    "kustomize.toolkit.fluxcd.io/name": "Kustomization",
    "helm.toolkit.fluxcd.io/name": "HelmRelease",
}
CONTROLLER_MANAGERS = {
    "argocd-controller": "Argo CD",
    "argocd-application-controller": "Argo CD",
    "kustomize-controller": "Flux",
    "helm-controller": "Flux",
}


@dataclass(frozen=True)
class GitOwner:
    tool: str  # "Argo CD" or "Flux"
    source: str  # what says so, e.g. "Application invoices (argocd.argoproj.io/tracking-id)"


def git_owner(metadata: Mapping[str, Any]) -> GitOwner | None:
    """The GitOps tool that applies this object, or None when nothing says one does."""
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    labels: Mapping[str, str] = metadata.get("labels") or {}
    for key in ARGO_ANNOTATIONS:
        if annotations.get(key):
            application = annotations[key].split(":", 1)[0]
            return GitOwner("Argo CD", f"Application {application} ({key})")
    for key in ARGO_LABELS:
        if labels.get(key):
            return GitOwner("Argo CD", f"Application {labels[key]} ({key})")
    for key, kind in FLUX_LABELS.items():
        if labels.get(key):
            namespace = labels.get(key.replace("/name", "/namespace"), "")
            where = f"{namespace}/{labels[key]}" if namespace else labels[key]
            return GitOwner("Flux", f"{kind} {where} ({key})")
    return _spec_manager(metadata.get("managedFields") or [])


def _spec_manager(managed_fields: Sequence[Mapping[str, Any]]) -> GitOwner | None:
    for entry in managed_fields:
        tool = CONTROLLER_MANAGERS.get(str(entry.get("manager")))
        if tool is not None and "f:spec" in str(entry.get("fieldsV1", {})):
            return GitOwner(tool, f"field manager {entry.get('manager')} owns spec")
    return None


def git_change(kind: str, namespace: str, name: str, field: str, current: str | None, target: str) -> str:
    """The change to make in the Git repository, as a reviewer would read it."""
    return (
        f"# In the Git repository, in the manifest of {kind} {namespace}/{name}:\n"
        f"#   {field}: {current or '(unset)'}  ->  {target}\n"
        f"spec:\n  {field.removeprefix('spec.')}: {target}\n"
    )
