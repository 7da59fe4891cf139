"""GPU Jobs a platform team shapes, on the local cluster: a pool naming a Kueue queue gets its
training Job labelled and suspended, and its run reports Queued until the Job is admitted (the
local cluster has no Kueue: the test unsuspends the Job as Kueue would). The apiserver itself
refuses a hostPath volume, a mount over the trainer and Ballast's own labels in a pool."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from ballast_dev.testing.datasets import write_pool_samples
from ballast_dev.testing.kube import eventually
from tests.integration.test_operator import GROUP, VERSION, a_pool, get, jobs, kubectl, run_phase, runs, start_pool

RUN, JOB = "invoices-run-1", "invoices-run-1-train"


def run_status(kube, namespace: str) -> dict[str, Any]:
    return get(kube, namespace, "finetuneruns", RUN).get("status", {})


def trained(status: dict[str, Any]) -> tuple[str, str] | None:
    condition = next((c for c in status.get("conditions", []) if c["type"] == "Trained"), None)
    return (condition["status"], condition["reason"]) if condition else None


def run_events(kube, namespace: str, reason: str) -> list[str]:
    events = client.CoreV1Api(kube).list_namespaced_event(namespace, field_selector=f"involvedObject.name={RUN}")
    return [e.message for e in events.items if e.reason == reason]


def job_pods(kube, namespace: str) -> list[str]:
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"job-name={JOB}")
    return [p.metadata.name for p in pods.items]


def test_a_pool_with_a_kueue_queue_queues_its_training_job_until_it_is_admitted(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    write_pool_samples(pool_store, "invoices", range(50))
    start_pool(kube, cluster, namespace, pool_store, jobs={"queueName": "gpu"})
    eventually(lambda: JOB in jobs(kube, namespace), 60, what="training Job")
    job = client.BatchV1Api(kube).read_namespaced_job(JOB, namespace)
    assert job.metadata.labels["kueue.x-k8s.io/queue-name"] == "gpu"
    assert job.spec.suspend is True
    assert job.spec.pod_failure_policy.rules[0].on_pod_conditions[0].type == "DisruptionTarget"

    status = eventually(lambda: (s := run_status(kube, namespace)).get("queued") == "gpu" and s, 30, what="Queued")
    assert status["phase"] == "Training"
    assert status["message"].startswith(f"Queued: Job {JOB} is suspended in Kueue queue gpu")
    assert trained(status) == ("False", "Queued")
    table = kubectl(cluster, "get", "finetuneruns", "-n", namespace)
    assert table.splitlines()[0].split()[:4] == ["NAME", "POOL", "KIND", "PHASE"] and "QUEUED" in table
    assert "gpu" in table.splitlines()[1].split()

    time.sleep(4)  # several reconciles and Job watch events later: still waiting, nothing ran, one event
    assert job_pods(kube, namespace) == []
    assert len(run_events(kube, namespace, "Queued")) == 1
    assert run_status(kube, namespace).get("queued") == "gpu"

    # Kueue admits a Job by unsuspending it.
    client.BatchV1Api(kube).patch_namespaced_job(JOB, namespace, {"spec": {"suspend": False}})
    status = eventually(
        lambda: (
            (s := run_status(kube, namespace)).get("queued") is None and trained(s) == ("False", "JobRunning") and s
        ),
        30,
        what="running",
    )
    assert status["phase"] == "Training" and status["message"] == f"Job {JOB} running"
    eventually(lambda: job_pods(kube, namespace), 30, what="the admitted Job's pod")
    assert [r["metadata"]["name"] for r in runs(kube, namespace)] == [RUN]
    assert len(run_events(kube, namespace, "Queued")) == 1


def refusal(kube, namespace: str, jobs_settings: dict[str, Any], strict: bool = False) -> str:
    body = a_pool("shaped", "bucket", "sha256:" + "0" * 64, jobs=jobs_settings)
    body["spec"]["objectStore"]["endpoint"] = "minio:9000"
    options = {"field_validation": "Strict"} if strict else {}
    with pytest.raises(client.exceptions.ApiException) as caught:
        client.CustomObjectsApi(kube).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "finetunepools", body, **options
        )
    # A strict decoding error is a Bad Request; a schema or CEL refusal is Unprocessable.
    assert caught.value.status == (400 if strict else 422), caught.value.body
    return str(caught.value.body)


HOST_PATH = {"volumes": [{"name": "host", "hostPath": {"path": "/var/run"}}], "volumeMounts": []}


def test_the_apiserver_refuses_what_would_reach_the_node_or_override_ballast(kube, namespace):
    # kubectl asks for strict field validation: the unknown volume kind is named.
    assert 'unknown field \\"spec.jobs.volumes[0].hostPath\\"' in refusal(kube, namespace, HOST_PATH, strict=True)
    # A client that does not ask has hostPath pruned, and the volume without a source is refused.
    assert "each volume needs exactly one of configMap" in refusal(kube, namespace, HOST_PATH)
    over_code = {
        "volumes": [{"name": "code", "configMap": {"name": "x"}}],
        "volumeMounts": [{"name": "code", "mountPath": "/usr/lib/python3"}],
    }
    assert "jobs.volumeMounts: mountPath must lie under /mnt/" in refusal(kube, namespace, over_code)
    assert "jobs.podLabels: keys under ballast.dev/" in refusal(
        kube, namespace, {"podLabels": {"ballast.dev/run": "x"}}
    )
    ghost = {"volumeMounts": [{"name": "ghost", "mountPath": "/mnt/g"}]}
    assert "every mount must name one of jobs.volumes" in refusal(kube, namespace, ghost)
    # What is allowed is stored as written.
    body = a_pool("shaped", "bucket", "sha256:" + "0" * 64, jobs={"queueName": "gpu", **OK_VOLUMES})
    body["spec"]["objectStore"]["endpoint"] = "minio:9000"
    created = client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "finetunepools", body, field_validation="Strict"
    )
    assert created["spec"]["jobs"]["volumes"] == OK_VOLUMES["volumes"]


OK_VOLUMES = {
    "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": "yolo-cache"}}],
    "volumeMounts": [{"name": "cache", "mountPath": "/mnt/cache", "readOnly": False}],
}


def test_a_job_the_apiserver_refuses_fails_its_run_with_the_apiservers_answer(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    # The schema passes volume sources on as written; this one the apiserver refuses in a Job.
    write_pool_samples(pool_store, "invoices", range(50))
    start_pool(kube, cluster, namespace, pool_store, jobs={"volumes": [{"name": "settings", "configMap": {}}]})
    run = eventually(lambda: run_phase(kube, namespace, RUN), 60, what="run finished")
    assert run["status"]["phase"] == "Failed"
    message = run["status"]["message"]
    assert message.startswith(f"JobRefused: the apiserver refused Job {JOB}: ") and "configMap.name" in message
    assert jobs(kube, namespace) == []
    assert run_events(kube, namespace, "JobRefused") == [message]
