"""Pure builders of the objects the operator creates: Jobs, FineTuneRuns, Deployment patches.

Names are deterministic, so a retried reconcile finds what the first attempt created.
"""

from __future__ import annotations

from typing import Any

from ballast.api.common import API_VERSION, ObjectStoreSpec
from ballast.api.finetunerun import KIND as RUN_KIND
from ballast.api.finetunerun import FineTuneRunSpec
from ballast.api.jobs import KUEUE_QUEUE_LABEL, JobSettings
from ballast.api.params import TrainingParams

LABEL_POOL = "ballast.dev/pool"
LABEL_RUN = "ballast.dev/run"
LABEL_STAGE = "ballast.dev/stage"
LABEL_MODEL = "ballast.dev/model-version"
# A Deployment opts in to being moved by a ModelRelease by naming it in this label.
LABEL_RELEASE = "ballast.dev/model-release"
# Where a trainer stage reports its result's digest: the container's termination message file
# (inside the scratch emptyDir, so the image's root can stay read-only).
TERMINATION_LOG = "/scratch/termination-log"
# The trainer's exit code for a stage that refused its plan (ballast_trainer.common.fail): the same
# plan is refused again, so a retry would only spend GPU time.
EXIT_REFUSED = 3
MANAGED_BY = {"app.kubernetes.io/managed-by": "ballast"}

Stage = str  # "train" | "gate" | "rebase"


def job_name(run: str, stage: Stage) -> str:
    return f"{run[:55]}-{'train' if stage == 'rebase' else stage}"


# Where a pod finds the store's CA bundle (objectStore.caBundle), mounted read-only.
STORE_CA_DIR = "/etc/ballast/store-ca"
STORE_CA_FILE = f"{STORE_CA_DIR}/ca.crt"
STORE_CA_VOLUME = "store-ca"


def store_env(store: ObjectStoreSpec) -> list[dict[str, Any]]:
    """The object store for a pod: endpoint in plain env, keys only through secretKeyRef. Without
    a Secret there are no keys: the pod's own identity (its ServiceAccount's IAM role) is used."""
    env: list[dict[str, Any]] = [
        {"name": "BALLAST_S3_ENDPOINT", "value": store.endpoint},
        {"name": "BALLAST_S3_SECURE", "value": "true" if store.secure else "false"},
    ]
    if store.region:
        env.append({"name": "BALLAST_S3_REGION", "value": store.region})
    if store.ca_bundle:
        env.append({"name": "BALLAST_S3_CA_FILE", "value": STORE_CA_FILE})
    ref = store.credentials_secret_ref
    if ref is not None:
        env += [
            {
                "name": "BALLAST_S3_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.access_key_key}},
            },
            {
                "name": "BALLAST_S3_SECRET_KEY",
                "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.secret_key_key}},
            },
        ]
    return env


def store_ca_volume(store: ObjectStoreSpec) -> dict[str, Any] | None:
    """The volume that puts the pool's CA bundle at STORE_CA_FILE (None without one)."""
    ref = store.ca_bundle
    if ref is None:
        return None
    if ref.secret is not None:
        items = [{"key": ref.secret.key, "path": "ca.crt"}]
        return {"name": STORE_CA_VOLUME, "secret": {"secretName": ref.secret.name, "items": items}}
    assert ref.config_map is not None  # the model holds exactly one
    items = [{"key": ref.config_map.key, "path": "ca.crt"}]
    return {"name": STORE_CA_VOLUME, "configMap": {"name": ref.config_map.name, "items": items}}


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def needs_shared_memory(stage: Stage, training: TrainingParams) -> bool:
    """A training on GPUs gets a memory-backed /dev/shm: its data-loader worker processes (8 per
    GPU) hand batches over through shared memory, which a container runtime caps at 64 MiB by
    default. It counts against the pod's memory limit. CPU trainings load in-process; the gate
    loads in-process too."""
    return stage in ("train", "rebase") and training.gpus > 0


def build_job(
    *,
    run: str,
    run_uid: str,
    pool: str,
    stage: Stage,
    training: TrainingParams,
    image: str,
    store: ObjectStoreSpec,
    plan_uri: str,
    plan_digest: str,
    jobs: JobSettings | None = None,
) -> dict[str, Any]:
    """The training (or gate) Job of a run: the operator's trainer image, GPUs, placement, limits,
    owner reference. The plan's digest travels on the command line: the trainer refuses any other
    plan. The stage reports its result's digest in the termination message.

    The gate Job gets the same image, GPUs and placement as the training Job: it evaluates both
    models on the same kind of hardware the candidate was trained on. Both are shaped by the pool's
    `jobs` settings (Kueue queue, priority class, pod labels, pull secrets, volumes), which never
    override Ballast's own labels, volumes or container.
    """
    jobs = jobs or JobSettings()
    labels = {LABEL_POOL: pool, LABEL_RUN: run, LABEL_STAGE: stage, **MANAGED_BY}
    resources: dict[str, Any] = {
        "requests": dict(training.resources.requests),
        "limits": dict(training.resources.limits),
    }
    if training.gpus > 0:
        resources["limits"]["nvidia.com/gpu"] = str(training.gpus)
    volumes: list[dict[str, Any]] = [{"name": "scratch", "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": "scratch", "mountPath": "/scratch"}]
    if needs_shared_memory(stage, training):
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    ca_volume = store_ca_volume(store)
    if ca_volume is not None:
        volumes.append(ca_volume)
        mounts.append({"name": STORE_CA_VOLUME, "mountPath": STORE_CA_DIR, "readOnly": True})
    volumes += [v.to_wire() for v in jobs.volumes]
    mounts += [m.to_wire() for m in jobs.volume_mounts]
    container = {
        "name": "trainer",
        "image": image,
        "command": [
            "ballast-trainer",
            stage,
            "--plan",
            plan_uri,
            "--plan-digest",
            plan_digest,
            "--workdir",
            "/scratch/work",
        ],
        "env": [
            *store_env(store),
            {"name": "TMPDIR", "value": "/scratch"},
            {"name": "YOLO_OFFLINE", "value": "true"},
            {"name": "YOLO_AUTOINSTALL", "value": "false"},
            # Weights load with torch's weights_only and Ultralytics' allow-list: no pickled code runs.
            {"name": "ULTRALYTICS_SAFE_LOAD", "value": "1"},
            {"name": "BALLAST_TERMINATION_LOG", "value": TERMINATION_LOG},
            {"name": "PYTHONUNBUFFERED", "value": "1"},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "resources": resources,
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "nodeSelector": dict(training.node_selector),
        "tolerations": [t.to_wire() for t in training.tolerations],
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if store.service_account_name:
        # Its IAM role only (IRSA's webhook mounts that token itself): no Kubernetes API token.
        pod_spec["serviceAccountName"] = store.service_account_name
    if jobs.priority_class_name:
        pod_spec["priorityClassName"] = jobs.priority_class_name
    if jobs.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [s.to_wire() for s in jobs.image_pull_secrets]
    pod_metadata: dict[str, Any] = {"labels": {**jobs.pod_labels, **labels}}
    if jobs.pod_annotations:
        pod_metadata["annotations"] = dict(jobs.pod_annotations)
    job_labels = dict(labels)
    if jobs.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = jobs.queue_name
    spec: dict[str, Any] = {
        "backoffLimit": training.backoff_limit,
        "activeDeadlineSeconds": training.active_deadline_seconds,
        "podFailurePolicy": POD_FAILURE_POLICY,
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    if jobs.queue_name:
        # Kueue's webhook suspends a labelled Job at creation; creating it suspended ourselves keeps
        # it waiting where the webhook is absent or late. Kueue admits it by unsuspending it.
        spec["suspend"] = True
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run, stage),
            "labels": job_labels,
            "ownerReferences": [owner_reference(RUN_KIND, run, run_uid)],
        },
        "spec": spec,
    }


# A pod lost to a node drain, preemption or eviction (the DisruptionTarget condition) is not the
# trainer failing: it does not count against backoffLimit. A refused plan fails the Job at once.
POD_FAILURE_POLICY: dict[str, Any] = {
    "rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [EXIT_REFUSED]}},
    ]
}


def job_differences(actual: dict[str, Any], expected: dict[str, Any]) -> str:
    """Why the Job found under a run's deterministic name is not the one the operator builds
    (empty when it is): another owner, or another image, command or environment in its pod."""
    owner = expected["metadata"]["ownerReferences"][0]["uid"]
    owners = [r.get("uid") for r in actual.get("metadata", {}).get("ownerReferences") or [] if r.get("controller")]
    if owners != [owner]:
        return "it is not controlled by this run"
    return pod_differences(actual["spec"]["template"], expected["spec"]["template"])


def pod_differences(actual: dict[str, Any], expected: dict[str, Any]) -> str:
    """Why a pod (or pod template) does not run what the operator's Job runs (empty when it does)."""
    have = (actual.get("spec", {}).get("containers") or [{}])[0]
    want = expected["spec"]["containers"][0]
    for field in ("image", "command", "env", "terminationMessagePath"):
        if have.get(field) != want.get(field):
            return f"its container's {field} differs"
    return ""


def build_run(
    *,
    name: str,
    pool: str,
    pool_uid: str,
    spec: FineTuneRunSpec,
) -> dict[str, Any]:
    """A FineTuneRun the pool starts, owned by the pool (deleting a pool deletes its runs' Jobs too)."""
    return {
        "apiVersion": API_VERSION,
        "kind": RUN_KIND,
        "metadata": {
            "name": name,
            "labels": {LABEL_POOL: pool, **MANAGED_BY},
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "FineTunePool",
                    "name": pool,
                    "uid": pool_uid,
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ],
        },
        "spec": spec.to_wire(),
    }
