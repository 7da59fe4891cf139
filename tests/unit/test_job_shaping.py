"""A pool shapes its GPU Jobs (Kueue queue, priority, pod labels, pull secrets, volumes) without
changing what they run; a Job waiting in a queue is reported as Queued, not running."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from ballast.api.common import ObjectStoreSpec, SecretKeyRef
from ballast.api.conditions import Reason
from ballast.api.jobs import JobSettings
from ballast.api.params import TrainingParams
from ballast.policy.finetunerun import RunStep, job_refused
from ballast.policy.manifests import LABEL_RUN, build_job

from .builders import a_pool_spec
from .test_run_reconcile import PLANNED, observe

STORE = ObjectStoreSpec(endpoint="minio:9000", bucket="ballast", credentials_secret_ref=SecretKeyRef(name="s"))
VOLUMES = {
    "volumes": [
        {"name": "cache", "persistentVolumeClaim": {"claimName": "yolo-cache"}},
        {"name": "ca", "configMap": {"name": "corp-ca"}},
    ],
    "volumeMounts": [
        {"name": "cache", "mountPath": "/mnt/cache"},
        {"name": "ca", "mountPath": "/mnt/ca", "readOnly": True},
    ],
}


def job(jobs: dict[str, Any] | None = None, stage: str = "train") -> dict[str, Any]:
    return build_job(
        run="r",
        run_uid="u",
        pool="p",
        stage=stage,
        training=TrainingParams(),
        image="trainer:1",
        store=STORE,
        plan_uri="s3://b/plan.json",
        plan_digest="sha256:" + "0" * 64,
        jobs=JobSettings.model_validate(jobs) if jobs is not None else None,
    )


def pod(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["template"]["spec"]


def trainer(manifest: dict[str, Any]) -> dict[str, Any]:
    return pod(manifest)["containers"][0]


def disruption_ignored(manifest: dict[str, Any]) -> bool:
    rules = manifest["spec"]["podFailurePolicy"]["rules"]
    return {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} in rules


Check = Callable[[dict[str, Any]], bool]


@pytest.mark.parametrize(
    ("jobs", "check"),
    [
        pytest.param(
            {"queueName": "gpu"},
            lambda m: m["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu" and m["spec"]["suspend"] is True,
            id="a queue name labels the Job for Kueue and creates it suspended",
        ),
        pytest.param(
            None,
            lambda m: "suspend" not in m["spec"] and "kueue.x-k8s.io/queue-name" not in m["metadata"]["labels"],
            id="without a queue the Job starts at once",
        ),
        pytest.param(
            {"queueName": "gpu"},
            lambda m: "kueue.x-k8s.io/queue-name" not in m["spec"]["template"]["metadata"]["labels"],
            id="the queue label is on the Job, where Kueue reads it, not on its pods",
        ),
        pytest.param(
            {"priorityClassName": "ml-batch"},
            lambda m: pod(m)["priorityClassName"] == "ml-batch",
            id="a priority class reaches the pods",
        ),
        pytest.param(
            {"podLabels": {"team": "vision"}, "podAnnotations": {"cost-center": "42"}},
            lambda m: (
                m["spec"]["template"]["metadata"]["labels"]["team"] == "vision"
                and m["spec"]["template"]["metadata"]["labels"][LABEL_RUN] == "r"
                and m["spec"]["template"]["metadata"]["annotations"] == {"cost-center": "42"}
            ),
            id="pod labels and annotations join Ballast's own labels",
        ),
        pytest.param(
            {"imagePullSecrets": [{"name": "registry"}]},
            lambda m: pod(m)["imagePullSecrets"] == [{"name": "registry"}],
            id="image pull secrets reach the pods",
        ),
        pytest.param(
            VOLUMES,
            lambda m: (
                [v["name"] for v in pod(m)["volumes"]] == ["scratch", "dshm", "cache", "ca"]
                and trainer(m)["volumeMounts"][-2:]
                == [
                    {"name": "cache", "mountPath": "/mnt/cache", "readOnly": False},
                    {"name": "ca", "mountPath": "/mnt/ca", "readOnly": True},
                ]
            ),
            id="extra volumes are added beside the operator's own and mounted under /mnt",
        ),
        pytest.param(
            VOLUMES,
            lambda m: (
                trainer(m)["volumeMounts"][:2]
                == [{"name": "scratch", "mountPath": "/scratch"}, {"name": "dshm", "mountPath": "/dev/shm"}]
                and trainer(m)["command"] == trainer(job())["command"]
                and trainer(m)["env"] == trainer(job())["env"]
            ),
            id="shaping never changes the trainer's command, environment or own mounts",
        ),
        pytest.param(None, disruption_ignored, id="a pod lost to a node disruption does not count as a failure"),
        pytest.param(
            None,
            lambda m: (
                {
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "trainer", "operator": "In", "values": [3]},
                }
                in m["spec"]["podFailurePolicy"]["rules"]
            ),
            id="a trainer that refused its plan fails the Job at once",
        ),
        pytest.param(
            None,
            lambda m: pod(m)["restartPolicy"] == "Never",
            id="the pods never restart in place (a pod failure policy needs it)",
        ),
    ],
)
def test_the_training_job_is_shaped_by_the_pools_job_settings(jobs: dict[str, Any] | None, check: Check) -> None:
    assert check(job(jobs))


@pytest.mark.parametrize("stage", ["train", "rebase", "gate"])
def test_every_stage_of_a_run_waits_in_the_same_queue(stage: str) -> None:
    manifest = job({"queueName": "gpu", "priorityClassName": "ml-batch"}, stage)
    assert manifest["spec"]["suspend"] is True and pod(manifest)["priorityClassName"] == "ml-batch"
    assert disruption_ignored(manifest)


@pytest.mark.parametrize(
    ("jobs", "message"),
    [
        pytest.param(
            {"volumes": [{"name": "host", "hostPath": {"path": "/var/run"}}]},
            r"jobs.volumes\[host\]: volume kind hostPath is not allowed",
            id="a hostPath volume is refused",
        ),
        pytest.param(
            {"volumes": [{"name": "nfs", "nfs": {"server": "x", "path": "/"}}]},
            r"volume kind nfs is not allowed",
            id="any kind outside the allowed list is refused",
        ),
        pytest.param(
            {"volumes": [{"name": "two", "emptyDir": {}, "secret": {"secretName": "s"}}]},
            r"jobs.volumes\[two\]: needs exactly one of",
            id="a volume with two sources is refused",
        ),
        pytest.param(
            {"volumes": [{"name": "none"}]}, r"jobs.volumes\[none\]: needs exactly one of", id="a volume with no source"
        ),
        pytest.param(
            {"volumes": [{"name": "scratch", "emptyDir": {}}]},
            r"jobs.volumes\[scratch\]: the name is the operator's own volume",
            id="a volume may not take the operator's scratch volume's name",
        ),
        pytest.param(
            {"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]},
            r"jobs.volumes: volume names must be unique",
            id="two volumes of one name are refused",
        ),
        pytest.param(
            {
                "volumes": [{"name": "code", "configMap": {"name": "x"}}],
                "volumeMounts": [{"name": "code", "mountPath": "/usr/lib/python3"}],
            },
            r"jobs.volumeMounts\[code\].mountPath '/usr/lib/python3' must lie under /mnt/",
            id="a mount over the trainer's code is refused",
        ),
        pytest.param(
            {
                "volumes": [{"name": "s", "emptyDir": {}}],
                "volumeMounts": [{"name": "s", "mountPath": "/mnt/../scratch"}],
            },
            r"mountPath '/mnt/../scratch' must lie under /mnt/",
            id="a mount climbing out of /mnt is refused",
        ),
        pytest.param(
            {"volumeMounts": [{"name": "ghost", "mountPath": "/mnt/g"}]},
            r"jobs.volumeMounts: ghost is not one of jobs.volumes",
            id="a mount of an undeclared volume is refused",
        ),
        pytest.param(
            {"podLabels": {"ballast.dev/run": "other-run"}},
            r"jobs.podLabels: ballast.dev/run may not be set",
            id="a pod label may not override Ballast's run label",
        ),
        pytest.param(
            {"podLabels": {"app.kubernetes.io/managed-by": "me"}},
            r"jobs.podLabels: app.kubernetes.io/managed-by may not be set",
            id="a pod label may not override managed-by",
        ),
        pytest.param(
            {"podLabels": {"kueue.x-k8s.io/queue-name": "other"}},
            r"jobs.podLabels: kueue.x-k8s.io/queue-name may not be set",
            id="a queue is chosen with queueName, not with a pod label",
        ),
        pytest.param(
            {"podAnnotations": {"ballast.dev/model": "x"}},
            r"jobs.podAnnotations: ballast.dev/model may not be set",
            id="a pod annotation may not use Ballast's keys",
        ),
        pytest.param(
            {"podLabels": {"bad key": "x"}}, r"jobs.podLabels: bad key is not a label key", id="a bad label key"
        ),
        pytest.param({"podLabels": {"team": "a b"}}, r"podLabels.team", id="a bad label value names its key"),
        pytest.param({"queueName": "GPU Queue"}, r"queueName", id="a queue name that is no object name"),
        pytest.param({"priorityClassName": "High!"}, r"priorityClassName", id="a bad priority class name"),
        pytest.param({"imagePullSecrets": [{"name": ""}]}, r"imagePullSecrets.0.name", id="an empty pull secret name"),
        pytest.param({"queue": "gpu"}, r"jobs.queue\b|queue\s+Extra inputs", id="a misspelt setting is refused"),
    ],
)
def test_bad_job_settings_are_refused_naming_the_field(jobs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        a_pool_spec(jobs=jobs)


def test_a_job_the_apiserver_refuses_fails_the_run_naming_the_refusal() -> None:
    answer = 'Job.batch "r-train" is invalid: spec.template.spec.volumes[2].configMap.name: Required value'
    action = job_refused(observe(PLANNED), "train", answer)
    assert action.step is RunStep.FAIL and action.status.phase == "Failed"
    assert action.status.message == f"JobRefused: the apiserver refused Job r-train: {answer}"
    trained = next(c for c in action.status.conditions if c.type == "Trained")
    assert (trained.status, trained.reason) == ("False", "JobFailed")
    assert [(e.reason, e.warning) for e in action.events] == [(Reason.JOB_REFUSED, True)]
