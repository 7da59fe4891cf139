"""Faults during a run, on the local cluster: each ends in a correct terminal state, with no duplicate
Job, no second run for one trigger, no sample lost, and no release of an unverified model."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from kubernetes import client

from ballast.adapters.pool import list_index
from ballast.api.contracts import digest_bytes
from ballast_dev.cluster import plane
from ballast_dev.testing.datasets import BASE_KEY, write_pool_samples
from ballast_dev.testing.kube import eventually, run_files
from ballast_dev.testing.operator import OperatorProcess
from tests.integration.test_operator import (
    LENIENT,
    TRAINING,
    a_release,
    create,
    custom,
    get,
    jobs,
    pool_status,
    release_status,
    run_phase,
    runs,
    served_version,
    serving_deployment,
    start_pool,
)

RUN = "invoices-run-1"


def start_run(kube, cluster, namespace, pool_store, **spec) -> None:
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    start_pool(kube, cluster, namespace, pool_store, **{"gates": LENIENT, **spec})


def run_status(kube, namespace: str) -> dict:
    return get(kube, namespace, "finetuneruns", RUN).get("status", {})


def pods_of(kube, namespace: str, job: str) -> list:
    return client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def running_pod(kube, namespace: str, job: str):
    pods = [p for p in pods_of(kube, namespace, job) if p.status.phase == "Running"]
    return pods[0] if pods else None


def assert_nothing_lost_or_duplicated(kube, namespace: str, pool_store) -> None:
    assert [r["metadata"]["name"] for r in runs(kube, namespace)] == [RUN]  # one run for one trigger
    names = jobs(kube, namespace)
    assert len(names) == len(set(names)) and set(names) <= {f"{RUN}-train", f"{RUN}-gate"}
    assert len(list_index(pool_store, "invoices")) == 50  # every verified sample is still there


def test_the_operator_killed_while_gating_resumes_without_a_duplicate_job(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(kube, cluster, namespace, pool_store)
    eventually(lambda: running_pod(kube, namespace, f"{RUN}-gate"), 300, interval=0.5, what="gate pod running")
    operator_process.kill()
    restarted = OperatorProcess(cluster.kubeconfig, namespace, operator_process.log).start()
    try:
        run = eventually(lambda: run_phase(kube, namespace, RUN), 300, interval=1, what="run finished")
    finally:
        restarted.stop()
    assert run["status"]["phase"] == "Succeeded" and run["status"]["verdict"] == "Pass"
    assert len(pods_of(kube, namespace, f"{RUN}-gate")) == 1
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)


def test_a_kube_apiserver_restart_mid_training_does_not_stop_the_run(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(kube, cluster, namespace, pool_store, training={**TRAINING, "epochs": 2})
    eventually(lambda: running_pod(kube, namespace, f"{RUN}-train"), 120, interval=0.5, what="training pod")
    state = Path(cluster.state_dir)
    plane.kill(state, "kube-apiserver")
    time.sleep(5)
    plane.restart(state, "kube-apiserver")
    run = eventually(lambda: _tolerant(lambda: run_phase(kube, namespace, RUN)), 420, interval=2, what="run done")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)
    assert len(pods_of(kube, namespace, f"{RUN}-train")) == 1


def _tolerant(call):
    try:
        return call()
    except Exception:  # the apiserver is still coming back
        return None


def test_a_killed_node_agent_fails_the_training_pod_and_the_run_says_why(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(kube, cluster, namespace, pool_store, training={**TRAINING, "epochs": 5, "backoffLimit": 0})
    eventually(lambda: running_pod(kube, namespace, f"{RUN}-train"), 120, interval=0.5, what="training pod")
    state = Path(cluster.state_dir)
    plane.kill(state, "node-agent")  # SIGKILL: the pod's processes are orphaned, then cleaned up
    plane.restart(state, "node-agent")
    run = eventually(lambda: run_phase(kube, namespace, RUN), 180, interval=1, what="run failed")
    assert run["status"]["phase"] == "Failed"
    assert "TrainingFailed" in run["status"]["message"] and "NodeAgentRestarted" in run["status"]["message"]
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)
    assert not pool_store.exists(run_files(kube, namespace, RUN).model)


def test_a_training_job_past_its_deadline_fails_the_run_with_the_reason(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(
        kube,
        cluster,
        namespace,
        pool_store,
        training={**TRAINING, "epochs": 200, "activeDeadlineSeconds": 60, "backoffLimit": 0},
    )
    run = eventually(lambda: run_phase(kube, namespace, RUN), 240, interval=1, what="run failed")
    assert run["status"]["phase"] == "Failed"
    assert "DeadlineExceeded" in run["status"]["message"]
    trained = next(c for c in run["status"]["conditions"] if c["type"] == "Trained")
    assert (trained["status"], trained["reason"]) == ("False", "JobFailed")
    eventually(
        lambda: not any(p.status.phase == "Running" for p in pods_of(kube, namespace, f"{RUN}-train")),
        60,
        what="training pod stopped",
    )
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)


OUTAGE_SECONDS = 60  # the "MinIO unavailable for a minute"


def pod_log(cluster, namespace: str, job: str) -> str:
    logs = Path(cluster.state_dir) / "node" / "logs"
    return "".join(path.read_text(errors="replace") for path in sorted(logs.glob(f"{namespace}_{job}-*.log")))


@contextmanager
def minio_outage(cluster) -> Iterator[float]:
    """MinIO down from entering the block until OUTAGE_SECONDS after; then started again."""
    state = Path(cluster.state_dir)
    plane.kill(state, "minio")
    down_at = time.monotonic()
    try:
        yield down_at
        time.sleep(max(0.0, down_at + OUTAGE_SECONDS - time.monotonic()))
    finally:
        plane.restart(state, "minio")


def assert_model_verified(run: dict, pool_store) -> None:
    """The run's model is in the store with the digest its status names."""
    model = run["status"]["model"]
    pool_store.get(pool_store.relative(model["uri"]), model["digest"])


def condition_reasons(status: dict) -> set[str]:
    return {c["reason"] for c in status.get("conditions", [])}


def test_minio_down_a_minute_when_a_run_must_plan_delays_the_plan_and_loses_nothing(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    # A pool that will not trigger by itself (60 wanted, 50 there) and a run made by hand.
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    start_pool(kube, cluster, namespace, pool_store, gates=LENIENT, triggers={"minNewSamples": 60})
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 50, 60, what="50 counted")
    pool = custom(kube).get_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools", "invoices")
    hand_made = {
        "apiVersion": "ballast.dev/v1alpha1",
        "kind": "FineTuneRun",
        "metadata": {"name": RUN},
        "spec": {"pool": "invoices", "baseModel": pool["spec"]["baseModel"], "training": TRAINING, "gates": LENIENT},
    }
    with minio_outage(cluster):
        create(kube, namespace, "finetuneruns", hand_made)
        # kubectl shows why nothing happens, and the run neither fails nor plans without the store.
        waiting = eventually(
            lambda: "unreachable" in run_status(kube, namespace).get("message", "") and run_status(kube, namespace),
            60,
            what="run says the store is unreachable",
        )
        assert waiting.get("phase") in (None, "Pending") and "plan" not in waiting
        eventually(
            lambda: "ObjectStoreUnreachable" in condition_reasons(pool_status(kube, namespace)), 30, what="NotReady"
        )
        assert jobs(kube, namespace) == []
    run = eventually(lambda: run_phase(kube, namespace, RUN), 300, interval=1, what="run finished")
    assert run["status"]["phase"] == "Succeeded" and run["status"]["verdict"] == "Pass", run["status"]
    # The plan was written once, after the outage: the status names exactly what is in the store.
    plan = pool_store.get(run_files(kube, namespace, RUN).plan)
    assert digest_bytes(plan) == run["status"]["plan"]["digest"]
    assert run["status"]["plan"]["newSamples"] == 50
    assert_model_verified(run, pool_store)
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)


# The pool re-lists its store every 15 s here (default 5 min), so it notices the outage while idle.
@pytest.mark.operator_args("--pool-resync-seconds", "15")
def test_minio_down_a_minute_through_the_end_of_training_the_trainer_waits_and_uploads(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(kube, cluster, namespace, pool_store)
    # Staging is done once this line is out; the rest of training needs no store, the upload does.
    eventually(lambda: "training ft_v1.1 from" in pod_log(cluster, namespace, f"{RUN}-train"), 180, what="training")
    with minio_outage(cluster):
        # While the store is down the pool says so instead of guessing.
        eventually(
            lambda: "ObjectStoreUnreachable" in condition_reasons(pool_status(kube, namespace)), 60, what="NotReady"
        )
        eventually(lambda: "trained in" in pod_log(cluster, namespace, f"{RUN}-train"), 55, what="training done")
    run = eventually(lambda: run_phase(kube, namespace, RUN), 300, interval=1, what="run finished")
    log = pod_log(cluster, namespace, f"{RUN}-train")
    assert "unreachable" in log and "retrying" in log  # the upload met the outage and waited it out
    assert run["status"]["phase"] == "Succeeded" and run["status"]["verdict"] == "Pass", run["status"]
    assert_model_verified(run, pool_store)
    assert len(pods_of(kube, namespace, f"{RUN}-train")) == 1  # waited, not retried as a new pod
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)
    eventually(
        lambda: any(
            c["type"] == "Ready" and c["status"] == "True" for c in pool_status(kube, namespace).get("conditions", [])
        ),
        60,
        what="pool Ready again",
    )


def test_minio_down_a_minute_during_the_gate_the_gate_waits_and_the_verdict_stands(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(kube, cluster, namespace, pool_store)
    eventually(lambda: running_pod(kube, namespace, f"{RUN}-gate"), 300, interval=0.25, what="gate pod running")
    with minio_outage(cluster):
        pass
    run = eventually(lambda: run_phase(kube, namespace, RUN), 300, interval=1, what="run finished")
    log = pod_log(cluster, namespace, f"{RUN}-gate")
    assert "unreachable" in log and "retrying" in log  # the gate met the outage and waited it out
    assert run["status"]["phase"] == "Succeeded" and run["status"]["verdict"] == "Pass", run["status"]
    assert pool_store.exists(run_files(kube, namespace, RUN).gate_report)
    assert len(pods_of(kube, namespace, f"{RUN}-gate")) == 1
    assert_model_verified(run, pool_store)
    assert_nothing_lost_or_duplicated(kube, namespace, pool_store)


def test_a_release_naming_a_tampered_model_is_blocked_and_the_deployment_untouched(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_pool(kube, cluster, namespace, pool_store)
    # Someone replaced the base's weights in the store: the digest the pool names no longer matches.
    pool_store.put(BASE_KEY, b"not the model that was gated")
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, serving_deployment("detector"))
    create(kube, namespace, "modelreleases", a_release("detector", "invoices", "base_v1"))
    eventually(lambda: release_status(kube, namespace).get("phase") == "Blocked", 60, what="blocked")
    blocked = next(c for c in release_status(kube, namespace)["conditions"] if c["type"] == "Blocked")
    assert blocked["reason"] == "DigestMismatch"
    assert served_version(kube, namespace) is None


def test_credentials_never_reach_logs_events_or_status(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    start_run(kube, cluster, namespace, pool_store)
    eventually(lambda: run_phase(kube, namespace, RUN), 300, interval=1, what="run finished")
    secret = cluster.minio_secret_key
    everything = [
        operator_process.output(),
        json.dumps([e.to_dict() for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items], default=str),
        json.dumps(custom(kube).list_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetunepools")),
        json.dumps(custom(kube).list_namespaced_custom_object("ballast.dev", "v1alpha1", namespace, "finetuneruns")),
    ]
    for text in everything:
        assert secret not in text
    for job in client.BatchV1Api(kube).list_namespaced_job(namespace).items:
        for env in job.spec.template.spec.containers[0].env:
            assert env.value != secret and env.value != cluster.minio_access_key
    logs = Path(cluster.state_dir) / "node" / "logs"
    for path in logs.glob(f"{namespace}_*"):
        assert secret not in path.read_text(errors="replace"), path.name
