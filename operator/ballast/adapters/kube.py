"""Kubernetes I/O: clients, idempotent creates, status patches, Events, reads of Jobs and Deployments.

The only module that calls the generated Kubernetes client (and the only one with mypy exemptions
for it): everything it returns is a plain dict or one of the policy layer's views.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ballast.adapters.objectstore import ObjectStore
from ballast.adapters.storeidentity import ca_problem
from ballast.api.common import GROUP, VERSION, CABundleRef, ObjectStoreSpec
from ballast.api.contracts import TerminationReport
from ballast.api.jobs import KUEUE_QUEUE_LABEL
from ballast.api.modelrelease import (
    ANNOTATION_MODEL_CHECKSUM,
    ANNOTATION_WRITTEN_AT,
    ENV_MODEL_DIGEST,
    ENV_MODEL_URI,
    ENV_MODEL_VERSION,
)
from ballast.policy.conditions import Event
from ballast.policy.finetunerun import JobState, JobView
from ballast.policy.manifests import LABEL_RELEASE, job_differences, pod_differences
from ballast.policy.modelrelease import DeploymentView
from ballast.policy.servingconfig import FIELD_MANAGER, MODEL_KEYS, ModelConfigView, ModelSource, PodView


@dataclass
class Clients:
    api: client.ApiClient
    core: client.CoreV1Api
    batch: client.BatchV1Api
    apps: client.AppsV1Api
    custom: client.CustomObjectsApi
    authorization: client.AuthorizationV1Api
    authentication: client.AuthenticationV1Api


class Conflict(RuntimeError):
    """The object changed since it was read (optimistic concurrency): read it again and retry."""


def current_namespace() -> str:
    """The kubeconfig context's namespace (in a pod: the pod's), else `default`."""
    try:
        _, active = config.list_kube_config_contexts()
        return str(active.get("context", {}).get("namespace") or "default")
    except (config.ConfigException, TypeError):
        return "default"


def connect(kubeconfig: str | None = None) -> Clients:
    """In-cluster credentials when running in a pod, else the kubeconfig (`kubeconfig` or $KUBECONFIG)."""
    configuration = client.Configuration()
    try:
        if kubeconfig is not None:
            raise config.ConfigException("a kubeconfig was named")
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(kubeconfig, client_configuration=configuration)
    api = client.ApiClient(configuration)
    return Clients(
        api,
        client.CoreV1Api(api),
        client.BatchV1Api(api),
        client.AppsV1Api(api),
        client.CustomObjectsApi(api),
        client.AuthorizationV1Api(api),
        client.AuthenticationV1Api(api),
    )


# ---- identity and permissions --------------------------------------------------------------------------
@dataclass(frozen=True)
class Identity:
    username: str
    groups: list[str]


def whoami(clients: Clients) -> Identity:
    """The authenticated caller, as the apiserver sees them (a SelfSubjectReview)."""
    review = clients.authentication.create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    info = review.status.user_info
    return Identity(username=info.username, groups=list(info.groups or []))


def may(clients: Clients, namespace: str, user: str, groups: list[str], verb: str, plural: str, name: str) -> bool:
    """May `user` (in `groups`) do `verb` on one of our resources? A LocalSubjectAccessReview."""
    review = clients.authorization.create_namespaced_local_subject_access_review(
        namespace,
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "LocalSubjectAccessReview",
            "spec": {
                "user": user,
                "groups": groups,
                "resourceAttributes": {
                    "namespace": namespace,
                    "verb": verb,
                    "group": GROUP,
                    "resource": plural,
                    "name": name,
                },
            },
        },
    )
    return bool(review.status.allowed)


class StoreCredentialsMissing(RuntimeError):
    """A Secret or ConfigMap the pool's objectStore names is missing or lacks the key (the message
    names the field)."""


def _read_keys(clients: Clients, namespace: str, kind: str, name: str, keys: list[str], field: str) -> dict[str, str]:
    """The named keys of a Secret or ConfigMap, decoded; a clear error naming `field` otherwise."""
    read = clients.core.read_namespaced_secret if kind == "Secret" else clients.core.read_namespaced_config_map
    try:
        found = read(name, namespace)
    except ApiException as error:
        if error.status == 404:
            raise StoreCredentialsMissing(f"spec.objectStore.{field}: {kind} {name} not found") from None
        raise
    data = dict(found.data or {})
    missing = [key for key in keys if key not in data]
    if missing:
        raise StoreCredentialsMissing(f"spec.objectStore.{field}: {kind} {name} has no key {', '.join(missing)}")
    if kind == "Secret":
        return {key: base64.b64decode(data[key]).decode() for key in keys}
    return {key: str(data[key]) for key in keys}


def _ca_bundle(clients: Clients, namespace: str, ref: CABundleRef) -> str:
    kind, field, source = (
        ("Secret", "caBundle.secret", ref.secret) if ref.secret else ("ConfigMap", "caBundle.configMap", ref.config_map)
    )
    assert source is not None  # the model holds exactly one
    pem = _read_keys(clients, namespace, kind, source.name, [source.key], field)[source.key]
    problem = ca_problem(pem)
    if problem:
        raise StoreCredentialsMissing(f"spec.objectStore.{field}: {kind} {source.name} key {source.key} {problem}")
    return pem


def object_store(clients: Clients, namespace: str, spec: ObjectStoreSpec) -> ObjectStore:
    """An ObjectStore for a pool: keys read from the pool's Secret (never logged) or, when it names
    none, found by this process (environment, IAM role); the pool's CA bundle trusted, if any."""
    access_key = secret_key = None
    ref = spec.credentials_secret_ref
    if ref is not None:
        keys = _read_keys(
            clients, namespace, "Secret", ref.name, [ref.access_key_key, ref.secret_key_key], "credentialsSecretRef"
        )
        access_key, secret_key = keys[ref.access_key_key], keys[ref.secret_key_key]
    return ObjectStore(
        spec.endpoint,
        access_key,
        secret_key,
        spec.bucket,
        spec.prefix,
        secure=spec.secure,
        region=spec.region,
        ca_pem=_ca_bundle(clients, namespace, spec.ca_bundle) if spec.ca_bundle else None,
    )


def create_or_get(create: Any, read: Any, namespace: str, body: dict[str, Any]) -> tuple[Any, bool]:
    """Create; when the deterministic name already exists, that is success: return the existing one."""
    try:
        return create(namespace, body), True
    except ApiException as error:
        if error.status != 409:
            raise
    return read(body["metadata"]["name"], namespace), False


# ---- custom resources ----------------------------------------------------------------------------------
def list_custom(clients: Clients, namespace: str, plural: str, selector: str | None = None) -> list[dict[str, Any]]:
    listing: dict[str, Any] = clients.custom.list_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, namespace, plural, label_selector=selector
    )
    return list(listing.get("items", []))


def list_objects(clients: Clients, plural: str, namespaces: list[str] | None) -> list[dict[str, Any]]:
    """Every object of one of our kinds in `namespaces` (None: in every namespace)."""
    if namespaces is None:
        listing: dict[str, Any] = clients.custom.list_cluster_custom_object(GROUP, VERSION, plural)  # type: ignore[assignment]
        return list(listing.get("items", []))
    return [item for namespace in namespaces for item in list_custom(clients, namespace, plural)]


def get_custom(clients: Clients, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    try:
        return dict(clients.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def create_custom(clients: Clients, namespace: str, plural: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    def create(ns: str, b: dict[str, Any]) -> Any:
        return clients.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, b)

    def read(name: str, ns: str) -> Any:
        return clients.custom.get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)

    return create_or_get(create, read, namespace, body)


def patch_custom(clients: Clients, namespace: str, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return dict(clients.custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch))


def patch_status(
    clients: Clients, namespace: str, plural: str, name: str, status: dict[str, Any], resource_version: str | None
) -> dict[str, Any]:
    """Merge-patch the status subresource. With `resource_version` the apiserver refuses the patch
    (Conflict) when the object changed since it was read, so a decision made on a stale copy is
    never written."""
    body: dict[str, Any] = {"status": status}
    if resource_version:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        return dict(clients.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, body))
    except ApiException as error:
        if error.status == 409:
            raise Conflict(f"{plural}/{name} changed since it was read") from None
        raise


# ---- Jobs ----------------------------------------------------------------------------------------------
class JobInvalid(RuntimeError):
    """The apiserver refused a Job as invalid (422): the same Job would be refused again."""


def create_job(clients: Clients, namespace: str, job: dict[str, Any]) -> bool:
    """Create a Job under its deterministic name; False when it already exists. JobInvalid when
    the apiserver refuses it as invalid (what a pool's `jobs` volume sources pass on unchecked)."""
    try:
        _, created = create_or_get(
            clients.batch.create_namespaced_job, clients.batch.read_namespaced_job, namespace, job
        )
    except ApiException as error:
        if error.status != 422:
            raise
        raise JobInvalid(_status_message(error)) from None
    return created


def _status_message(error: ApiException) -> str:
    """The message of the Status an apiserver answered with (else its reason)."""
    try:
        return str(json.loads(error.body or "{}").get("message") or error.reason)[:800]
    except ValueError:
        return str(error.reason)


def read_job(clients: Clients, namespace: str, expected: dict[str, Any]) -> JobView:
    """The state of the Job named as `expected` (the Job the operator builds), whether it is that
    Job, and, once it succeeded, what its pod reported as its result."""
    try:
        job = clients.batch.read_namespaced_job(expected["metadata"]["name"], namespace)
    except ApiException as error:
        if error.status == 404:
            return JobView(JobState.MISSING)
        raise
    foreign = job_differences(clients.api.sanitize_for_serialization(job), expected)
    for condition in job.status.conditions or []:
        if condition.status != "True":
            continue
        if condition.type == "Complete":
            return JobView(JobState.SUCCEEDED, foreign=foreign, reported=_reported(clients, namespace, job, expected))
        if condition.type == "Failed":
            return JobView(JobState.FAILED, condition.reason or "Failed", foreign=foreign)
    queue = (job.metadata.labels or {}).get(KUEUE_QUEUE_LABEL, "")
    return JobView(JobState.ACTIVE, foreign=foreign, suspended=bool(job.spec.suspend), queue=queue)


def _reported(clients: Clients, namespace: str, job: Any, expected: dict[str, Any]) -> TerminationReport | None:
    """The result digest in the termination message of the Job's succeeded pod: one the Job
    controls and that runs the operator's container (only the kubelet writes pod status)."""
    pods = clients.core.list_namespaced_pod(
        namespace, label_selector=f"batch.kubernetes.io/controller-uid={job.metadata.uid}"
    )
    for pod in pods.items:
        owners = [r.uid for r in pod.metadata.owner_references or [] if r.controller]
        raw = clients.api.sanitize_for_serialization(pod)
        if (
            pod.status.phase != "Succeeded"
            or owners != [job.metadata.uid]
            or pod_differences(raw, expected["spec"]["template"])
        ):
            continue
        for status in pod.status.container_statuses or []:
            terminated = status.state.terminated if status.state else None
            if status.name == "trainer" and terminated is not None and terminated.exit_code == 0 and terminated.message:
                try:
                    return TerminationReport.model_validate_json(terminated.message)
                except ValueError:
                    return None
    return None


def pod_failure(clients: Clients, namespace: str, job: str) -> str:
    """What the Job's last failed pod says about why it failed (reason and exit code)."""
    pods = clients.core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    failed = [p for p in pods if p.status.phase == "Failed"]
    if not failed:
        return ""
    pod = max(failed, key=lambda p: p.metadata.creation_timestamp)
    for status in pod.status.container_statuses or []:
        terminated = status.state.terminated if status.state else None
        if terminated is not None:
            return f"pod {pod.metadata.name}: {terminated.reason or 'Error'} (exit code {terminated.exit_code})"
    return f"pod {pod.metadata.name}: {pod.status.reason or 'Failed'} {pod.status.message or ''}".strip()


# ---- Deployments ---------------------------------------------------------------------------------------
def read_deployment(clients: Clients, namespace: str, name: str) -> DeploymentView | None:
    try:
        deployment = clients.apps.read_namespaced_deployment(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    state, detail = rollout_state(deployment)
    containers = deployment.spec.template.spec.containers
    template_annotations = deployment.spec.template.metadata.annotations or {}
    return DeploymentView(
        name=name,
        release=(deployment.metadata.labels or {}).get(LABEL_RELEASE),
        containers=tuple(c.name for c in containers),
        rollout=state,  # type: ignore[arg-type]
        detail=detail,
        sources={c.name: model_source(c) for c in containers},
        checksum=template_annotations.get(ANNOTATION_MODEL_CHECKSUM),
    )


def model_source(container: Any) -> ModelSource:
    """Where a container's BALLAST_MODEL_* come from, as the kubelet resolves them: envFrom
    ConfigMaps read without a prefix, then env, which wins over all of them."""
    config_maps = [
        s.config_map_ref.name for s in container.env_from or [] if s.config_map_ref is not None and not s.prefix
    ]
    literal, overridden = [], False
    for variable in container.env or []:
        if variable.name not in MODEL_KEYS:
            continue
        ref = variable.value_from.config_map_key_ref if variable.value_from else None
        if ref is not None and ref.key == variable.name:
            config_maps.append(ref.name)
        elif variable.value_from is not None:  # another key, a Secret, a field: not the release's value
            overridden = True
        else:
            literal.append((variable.name, variable.value or ""))
    return ModelSource(tuple(config_maps), tuple(literal), overridden)


def _stamp(text: str | None) -> datetime | None:
    """An RFC 3339 time from an annotation; anything else (edited by hand) is unknown, not a crash."""
    try:
        moment = datetime.fromisoformat(text) if text else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_model_config(clients: Clients, namespace: str, name: str) -> ModelConfigView | None:
    try:
        config_map = clients.core.read_namespaced_config_map(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    meta, data = config_map.metadata, config_map.data or {}
    return ModelConfigView(
        version=data.get(ENV_MODEL_VERSION),
        uri=data.get(ENV_MODEL_URI),
        digest=data.get(ENV_MODEL_DIGEST),
        written_at=_stamp((meta.annotations or {}).get(ANNOTATION_WRITTEN_AT)),
        release=(meta.labels or {}).get(LABEL_RELEASE),
    )


def serving_pods(clients: Clients, namespace: str, deployment: str, container: str | None) -> tuple[PodView, ...]:
    """The Deployment's own pods (its selector's labels, owned by one of its ReplicaSets), as their
    serving container (by name: injected sidecars may come first) runs."""
    try:
        found = clients.apps.read_namespaced_deployment(deployment, namespace)
    except ApiException as error:
        if error.status == 404:
            return ()
        raise
    selector = label_selector(found.spec.selector)
    template = found.spec.template.spec.containers
    name = container or (template[0].name if template else None)
    views = []
    for pod in clients.core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.metadata.deletion_timestamp is not None or not _owned_by(pod, deployment):
            continue
        spec = next((c for c in pod.spec.containers if c.name == name), None)
        if spec is None:
            continue
        status = next((c for c in pod.status.container_statuses or [] if c.name == spec.name), None)
        running = status.state.running if status and status.state else None
        views.append(
            PodView(
                name=pod.metadata.name,
                ready=bool(status and status.ready),
                started_at=running.started_at if running else None,
                source=model_source(spec),
                checksum=(pod.metadata.annotations or {}).get(ANNOTATION_MODEL_CHECKSUM),
            )
        )
    return tuple(views)


def label_selector(selector: Any) -> str:
    """A LabelSelector as the `label_selector` query string (matchLabels and matchExpressions)."""
    parts = [f"{k}={v}" for k, v in sorted((selector.match_labels or {}).items())]
    for expression in selector.match_expressions or []:
        values = ",".join(expression.values or [])
        operator = expression.operator
        if operator == "In":
            parts.append(f"{expression.key} in ({values})")
        elif operator == "NotIn":
            parts.append(f"{expression.key} notin ({values})")
        elif operator == "Exists":
            parts.append(expression.key)
        elif operator == "DoesNotExist":
            parts.append(f"!{expression.key}")
    return ",".join(parts)


def _owned_by(pod: Any, deployment: str) -> bool:
    """Created by one of the Deployment's ReplicaSets (`<deployment>-<template hash>`), not another
    workload that happens to share the labels."""
    return any(
        o.kind == "ReplicaSet" and o.name.rsplit("-", 1)[0] == deployment for o in pod.metadata.owner_references or []
    )


def apply(clients: Clients, namespace: str, body: dict[str, Any]) -> None:
    """Server-side apply as `ballast-operator`: it owns exactly the fields in `body`, no more."""
    kind, name = body["kind"], body["metadata"]["name"]
    options = {"field_manager": FIELD_MANAGER, "force": True, "_content_type": "application/apply-patch+yaml"}
    if kind == "ConfigMap":
        clients.core.patch_namespaced_config_map(name, namespace, body, **options)
    elif kind == "Deployment":
        clients.apps.patch_namespaced_deployment(name, namespace, body, **options)
    else:
        raise ValueError(f"apply: {kind} is not applied by the operator")


def rollout_state(deployment: Any) -> tuple[str, str]:
    """("Available" | "Progressing" | "Failed", message) for a Deployment's current template."""
    status = deployment.status
    desired = deployment.spec.replicas if deployment.spec.replicas is not None else 1
    # A template just changed: the controller has not looked yet, so an old deadline condition is stale.
    if (status.observed_generation or 0) < (deployment.metadata.generation or 0):
        return "Progressing", "waiting for the deployment controller"
    for condition in status.conditions or []:
        if condition.type == "Progressing" and condition.reason == "ProgressDeadlineExceeded":
            return "Failed", condition.message or "progress deadline exceeded"
    updated, available, total = status.updated_replicas or 0, status.available_replicas or 0, status.replicas or 0
    if updated == desired and available == desired and total == desired:
        return "Available", f"{available}/{desired} replicas available"
    return "Progressing", f"{updated}/{desired} updated, {available} available"


def post_event(clients: Clients, obj: dict[str, Any], event: Event, labels: dict[str, str] | None = None) -> None:
    """A core/v1 Event on an object (kubectl describe shows it). `labels` let a watcher select it."""
    meta = obj["metadata"]
    stamp = datetime.now(UTC)
    clients.core.create_namespaced_event(
        meta["namespace"],
        {
            "metadata": {"generateName": f"{meta['name']}.", "labels": labels or {}},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
            },
            "type": "Warning" if event.warning else "Normal",
            "reason": str(event.reason),
            "message": event.message[:1024],
            "source": {"component": "ballast-operator"},
            "firstTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "lastTimestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "count": 1,
        },
    )
