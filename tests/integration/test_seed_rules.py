"""The seed's rules off the happy path, on the local cluster: a short anchor set, a rejected Rebase,
a retry. The operator runs as in the README (its own process, the chart's RBAC is exercised in
test_chart/test_trust); Jobs run the real trainer on tiny data."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kubernetes import client

from ballast.api.contracts import RunPlan
from ballast_dev.testing.datasets import write_pool_samples
from ballast_dev.testing.kube import eventually, notify_samples_added, run_files
from tests.conftest import ANCHOR_TRAIN

from .test_operator import custom, get, jobs, pool_status, run_phase, runs, start_pool

GROUP, VERSION = "ballast.dev", "v1alpha1"


def events(kube, namespace: str, reason: str) -> list[str]:
    return [e.message for e in client.CoreV1Api(kube).list_namespaced_event(namespace).items if e.reason == reason]


def condition(body: dict, type_: str) -> dict:
    return next(c for c in body.get("status", {}).get("conditions", []) if c["type"] == type_)


def ballast(cluster, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "ballast"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
        check=False,
        timeout=60,
    )


def rebases(kube, namespace: str) -> list[str]:
    return sorted(r["metadata"]["name"] for r in runs(kube, namespace) if r["spec"]["kind"] == "Rebase")


def test_a_short_anchor_is_refused_with_its_reason_and_a_retry_plans_the_same_samples_once_allowed(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    # The fixture anchor holds 60 samples; at 50 new the seed's table asks for 1000 old ones.
    write_pool_samples(pool_store, "invoices", range(50))
    start_pool(kube, cluster, namespace, pool_store, mixing={"allowSmallerAnchor": False})
    failed = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 60, what="run-1 refused")
    assert failed["status"]["phase"] == "Failed", failed["status"]
    planned = condition(failed, "Planned")
    assert (planned["status"], planned["reason"]) == ("False", "AnchorTooSmall")
    assert f"holds {ANCHOR_TRAIN} samples" in planned["message"] and "allowSmallerAnchor" in planned["message"]
    assert failed["status"]["message"].startswith("AnchorTooSmall:")
    assert eventually(lambda: events(kube, namespace, "AnchorTooSmall"), 30, what="a warning event")
    assert jobs(kube, namespace) == []  # refused before any Job

    # The platform team decides a smaller anchor is acceptable, then retries on the same samples.
    custom(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "finetunepools", "invoices", {"spec": {"mixing": {"allowSmallerAnchor": True}}}
    )
    retried = ballast(cluster, "runs", "retry", "invoices-run-1", "-n", namespace)
    assert retried.returncode == 0, retried.stderr
    assert "invoices-run-1-retry-1" in retried.stdout
    retry = get(kube, namespace, "finetuneruns", "invoices-run-1-retry-1")
    assert (retry["spec"]["trigger"], retry["spec"]["retryOf"]) == ("Retry", "invoices-run-1")
    assert retry["spec"]["snapshot"] == failed["status"]["snapshot"]
    retry = eventually(
        lambda: (
            (r := get(kube, namespace, "finetuneruns", "invoices-run-1-retry-1")).get("status", {}).get("plan") and r
        ),
        60,
        what="the retry planned",
    )
    plan = retry["status"]["plan"]
    assert (plan["newSamples"], plan["oldSamples"], plan["anchorShortfall"]) == (50, ANCHOR_TRAIN, 1000 - ANCHOR_TRAIN)
    planned = condition(retry, "Planned")
    assert (planned["status"], planned["reason"]) == ("True", "AnchorShortfall")
    assert eventually(lambda: events(kube, namespace, "AnchorShortfall"), 30, what="the shortfall event")
    assert eventually(lambda: events(kube, namespace, "Retry"), 30, what="the retry event")
    stored = RunPlan.model_validate_json(pool_store.get(run_files(kube, namespace, "invoices-run-1-retry-1").plan))
    assert stored.anchor_shortfall == 1000 - ANCHOR_TRAIN and len(stored.old_samples) == ANCHOR_TRAIN

    # A retry of a run that is not failed or rejected is refused, with a distinct message.
    again = ballast(cluster, "runs", "retry", "invoices-run-1-retry-1", "-n", namespace)
    assert again.returncode != 0 and "only a Failed run or a Reject verdict is retried" in again.stderr
    time.sleep(3)
    assert sorted(r["metadata"]["name"] for r in runs(kube, namespace)) == ["invoices-run-1", "invoices-run-1-retry-1"]


def test_a_rejected_rebase_leads_to_exactly_one_rebase_until_50_more_samples_arrive(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    # The seed's gates; one epoch from scratch cannot keep the base's mAP50 on the old test set.
    write_pool_samples(pool_store, "invoices", range(50))
    start_pool(kube, cluster, namespace, pool_store, rebase={"threshold": 50, "epochs": 1})
    first = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 600, interval=2, what="rebase run 1")
    assert first["spec"]["kind"] == "Rebase"
    assert (first["status"]["phase"], first["status"].get("verdict")) == ("Succeeded", "Reject"), first["status"][
        "message"
    ]
    assert first["status"]["model"]["version"] == "base_v2"

    # Fine-tunes go on (the 50 samples the rejected Rebase did not merge still wait), no second Rebase.
    second = eventually(lambda: run_phase(kube, namespace, "invoices-run-2"), 600, interval=2, what="run 2")
    assert second["spec"]["kind"] == "FineTune" and second["spec"]["baseModel"]["version"] == "base_v1"
    time.sleep(5)  # reconciles after run 2 finished
    assert rebases(kube, namespace) == ["invoices-run-1"]
    waiting = condition(get(kube, namespace, "finetunepools", "invoices"), "RebaseRecommended")
    assert (waiting["status"], waiting["reason"]) == ("True", "RebaseRetryWaiting"), waiting
    assert pool_status(kube, namespace)["currentBase"] == "base_v1"

    # 49 more samples: still one Rebase. The 50th: exactly one more, under its own version.
    write_pool_samples(pool_store, "invoices", range(50, 99))
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 49)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 99, 60, what="99 counted")
    time.sleep(3)
    assert rebases(kube, namespace) == ["invoices-run-1"]
    write_pool_samples(pool_store, "invoices", range(99, 100))
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 1)
    eventually(lambda: len(rebases(kube, namespace)) == 2, 60, what="the second Rebase")
    retry = rebases(kube, namespace)[1]
    run = eventually(
        lambda: (r := get(kube, namespace, "finetuneruns", retry)).get("status", {}).get("plan") and r,
        60,
        what="the second Rebase planned",
    )
    plan = RunPlan.model_validate_json(pool_store.get(run_files(kube, namespace, retry).plan))
    assert plan.kind == "Rebase" and plan.new_version == "base_v3" and len(plan.new_samples) == 100
    assert run["spec"]["trigger"] == "RebaseDue"
    time.sleep(3)
    assert len(rebases(kube, namespace)) == 2
