"""The operator end to end on the local cluster: real kopf, real Jobs, the real trainer on tiny data, real MinIO."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from ballast.api import layout
from ballast.api.contracts import Lineage, RunPlan
from ballast.api.params import Mixing
from ballast.policy.mixing import draw_old_samples, old_sample_count
from ballast.policy.plan import holdout_position
from ballast_dev.cluster import build, plane
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import TEST_MANIFEST, TRAIN_MANIFEST, write_pool_samples
from ballast_dev.testing.kube import eventually, notify_samples_added, run_files
from tests.conftest import ANCHOR_TRAIN

GROUP, VERSION = "ballast.dev", "v1alpha1"
# A tiny, CPU-only recipe: the seed's parameters, one epoch, small images.
TRAINING = {"epochs": 1, "imgsz": 256, "batch": 16, "gpus": 0}
LENIENT = {"regression": {"passBelow": 100, "rejectAbove": 101}, "newSamples": {"minDetectionRate": 0.0}}


def a_pool(name: str, bucket: str, base_digest: str, **spec: Any) -> dict:
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "FineTunePool",
        "metadata": {"name": name},
        "spec": {
            "classes": list(CLASSES),
            # The local MinIO speaks plain HTTP: said explicitly, TLS being the default.
            "objectStore": {
                "endpoint": "",
                "secure": False,
                "bucket": bucket,
                "credentialsSecretRef": {"name": "store-credentials"},
            },
            "anchor": {"trainManifest": TRAIN_MANIFEST, "testManifest": TEST_MANIFEST},
            "baseModel": {"version": "base_v1", "uri": f"s3://{bucket}/models/base_v1/model.pt", "digest": base_digest},
            "training": TRAINING,
            # The fixture anchor holds 60 samples; the seed's table asks for 1000 old ones at 50 new.
            "mixing": {"allowSmallerAnchor": True},
            **spec,
        },
    }
    return body


def custom(kube) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube)


def create(kube, namespace: str, plural: str, body: dict) -> dict:
    return custom(kube).create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def get(kube, namespace: str, plural: str, name: str) -> dict:
    return custom(kube).get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)


def runs(kube, namespace: str) -> list[dict]:
    return custom(kube).list_namespaced_custom_object(GROUP, VERSION, namespace, "finetuneruns")["items"]


def jobs(kube, namespace: str) -> list[str]:
    return sorted(j.metadata.name for j in client.BatchV1Api(kube).list_namespaced_job(namespace).items)


def start_pool(kube, cluster, namespace: str, pool_store, name: str = "invoices", **spec: Any) -> dict:
    body = a_pool(name, pool_store.bucket, pool_store_digest(pool_store), **spec)
    body["spec"]["objectStore"]["endpoint"] = cluster.minio_endpoint
    return create(kube, namespace, "finetunepools", body)


def pool_store_digest(store) -> str:
    from ballast.api.contracts import digest_bytes

    return digest_bytes(store.get("models/base_v1/model.pt"))


def pool_status(kube, namespace: str, name: str = "invoices") -> dict:
    return get(kube, namespace, "finetunepools", name).get("status", {})


def run_phase(kube, namespace: str, name: str, phases=("Succeeded", "Failed")) -> dict | None:
    try:
        run = get(kube, namespace, "finetuneruns", name)
    except client.exceptions.ApiException as error:
        if error.status == 404:
            return None
        raise
    return run if run.get("status", {}).get("phase") in phases else None


def test_49_samples_do_not_trigger_a_run_and_the_50th_triggers_exactly_one(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    write_pool_samples(pool_store, "invoices", range(49))
    start_pool(kube, cluster, namespace, pool_store)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 49, 60, what="49 counted")
    import time

    time.sleep(5)  # a few reconcile ticks
    assert runs(kube, namespace) == []
    assert pool_status(kube, namespace)["samplesSinceLastRun"] == 49
    write_pool_samples(pool_store, "invoices", range(49, 50))
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 1)  # as `ballast samples add` does
    started = eventually(lambda: runs(kube, namespace), 30, what="a run")
    time.sleep(5)
    assert [r["metadata"]["name"] for r in runs(kube, namespace)] == ["invoices-run-1"]
    run = started[0]
    assert run["spec"]["trigger"] == "Volume" and run["spec"]["kind"] == "FineTune"
    assert run["spec"]["snapshot"]["sampleCount"] == 50
    status = pool_status(kube, namespace)
    assert status["activeRun"] == "invoices-run-1" and status["samplesSinceLastRun"] == 0
    # The training Job exists, with the run's deterministic name and owner.
    eventually(lambda: "invoices-run-1-train" in jobs(kube, namespace), 30, what="training Job")
    job = client.BatchV1Api(kube).read_namespaced_job("invoices-run-1-train", namespace)
    assert job.metadata.owner_references[0].name == "invoices-run-1"
    assert job.spec.template.spec.containers[0].command[:2] == ["ballast-trainer", "train"]


def test_samples_written_by_many_writers_while_the_operator_counts_are_all_counted(
    kube, namespace, store_secret, pool_store, operator_process, cluster, monkeypatch
):
    start_pool(kube, cluster, namespace, pool_store, triggers={"minNewSamples": 1000})
    write_pool_samples(pool_store, "invoices", range(400), size=32, workers=16)  # 16 concurrent writers
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 400)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 400, 60, what="400 counted")
    # A writer whose index PUT stalled: its key is stamped 30 s ago, before keys already counted.
    # (Before the settle window the cursor had passed it and it was never counted.)
    stalled = datetime.now(UTC) - timedelta(seconds=30)
    monkeypatch.setattr("ballast.adapters.pool.now", lambda: stalled)
    write_pool_samples(pool_store, "invoices", range(400, 401), size=32, workers=1)
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 1)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 401, 30, what="the late key counted")
    time.sleep(5)  # and it stays exact: nothing counted twice
    assert pool_status(kube, namespace)["verifiedSamples"] == 401
    assert runs(kube, namespace) == []


def test_a_hand_made_run_on_a_10_sample_pool_fails_before_any_job_exists(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    write_pool_samples(pool_store, "invoices", range(10))
    start_pool(kube, cluster, namespace, pool_store)
    eventually(lambda: pool_status(kube, namespace).get("verifiedSamples") == 10, 60, what="10 counted")
    pool = get(kube, namespace, "finetunepools", "invoices")
    create(
        kube,
        namespace,
        "finetuneruns",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FineTuneRun",
            "metadata": {"name": "by-hand"},
            "spec": {"pool": "invoices", "baseModel": pool["spec"]["baseModel"], "training": TRAINING},
        },
    )
    run = eventually(lambda: run_phase(kube, namespace, "by-hand"), 60, what="run refused")
    assert run["status"]["phase"] == "Failed"
    assert "never fine-tune on fewer than 50" in run["status"]["message"]
    planned = next(c for c in run["status"]["conditions"] if c["type"] == "Planned")
    assert (planned["status"], planned["reason"]) == ("False", "PlanRefused")
    assert jobs(kube, namespace) == []


def kubectl(cluster, *args: str) -> str:
    completed = subprocess.run(
        [str(build.binary("kubectl")), "--kubeconfig", cluster.kubeconfig, *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def table_rows(table: str) -> list[dict[str, str]]:
    """`kubectl get`'s table by column (cells are left-aligned under their header; empty ones are blank)."""
    header, *lines = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, bounds, strict=True)} for line in lines]


def serving_deployment(name: str, opted_in: bool = True) -> dict:
    """A serving Deployment; its owner lets the ModelRelease of the same name move it (the label)."""
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": {"ballast.dev/model-release": name} if opted_in else {}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    # Admitted under the restricted Pod Security Standard too.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 10001,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [
                        {
                            "name": "serve",
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                            "image": "ghcr.io/ballast-dev/ballast:0.1.0",
                            # Its model comes from the release's ConfigMap, which the release owns.
                            "envFrom": [{"configMapRef": {"name": f"{name}-model"}}],
                            # Stands in for `ballast-trainer serve`: ready once it is up; prints the model it was given.
                            "command": [
                                "python3",
                                "-c",
                                "import os, time; print(os.environ.get('BALLAST_MODEL_VERSION'), flush=True); "
                                "time.sleep(3600)",
                            ],
                        }
                    ],
                },
            },
        },
    }


def served_version(kube, namespace: str, name: str = "detector") -> str | None:
    """The model the release gave the Deployment: its ConfigMap's BALLAST_MODEL_VERSION."""
    try:
        config_map = client.CoreV1Api(kube).read_namespaced_config_map(f"{name}-model", namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return (config_map.data or {}).get("BALLAST_MODEL_VERSION")


def release_status(kube, namespace: str, name: str = "detector") -> dict:
    return get(kube, namespace, "modelreleases", name).get("status", {})


def test_the_whole_loop_trains_from_the_base_gates_and_releases_then_rolls_back(
    kube, namespace, store_secret, pool_store, operator_process, cluster, fixture_data
):
    # Samples of the family the base knows: the fine-tune keeps finding them, so both gates pass.
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    start_pool(kube, cluster, namespace, pool_store, gates=LENIENT)
    run = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 420, interval=1, what="run finished")
    status = run["status"]
    assert status["phase"] == "Succeeded", status
    assert status["verdict"] == "Pass"
    assert status["model"]["version"] == "ft_v1.1"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert all(
        conditions[t]["status"] == "True"
        for t in ("Planned", "Trained", "Gate1Regression", "Gate2NewSamples", "Approved")
    )

    # The plan holds the seed's old-sample count (limited by the small anchor set) and its draw is reproducible.
    files = run_files(kube, namespace, "invoices-run-1")
    plan = RunPlan.model_validate_json(pool_store.get(files.plan))
    assert old_sample_count(50, Mixing()).old_samples == 1000
    assert len(plan.new_samples) == 50 and len(plan.old_samples) == min(1000, ANCHOR_TRAIN)
    anchor_images = [line.split()[0] for line in pool_store.get(TRAIN_MANIFEST).decode().splitlines()]
    assert sorted(r.image for r in plan.old_samples) == draw_old_samples(anchor_images, ANCHOR_TRAIN, plan.seed)
    assert status["plan"]["seed"] == plan.seed and status["plan"]["oldSamples"] == ANCHOR_TRAIN
    lineage = Lineage.model_validate_json(pool_store.get(files.lineage))
    assert lineage.base_digest == fixture_data["base_digest"]

    # Gate results reach status and the printer columns.
    gates = status["gates"]
    assert gates["gate1"] == "Pass" and 0.0 <= gates["detectionRate"] <= 1.0
    table = kubectl(cluster, "get", "ftr", "-n", namespace)
    header = table.splitlines()[0].split()
    assert header == [
        "NAME", "POOL", "KIND", "PHASE", "QUEUED", "VERDICT", "MAP50-DROP", "DET-RATE", "MODEL", "READY", "AGE"
    ]  # fmt: skip
    row = table_rows(table)[0]
    assert [row[c] for c in ("NAME", "POOL", "KIND", "PHASE", "QUEUED", "VERDICT", "MODEL")] == [
        "invoices-run-1", "invoices", "FineTune", "Succeeded", "", "Pass", "ft_v1.1"
    ]  # fmt: skip
    assert float(row["MAP50-DROP"]) == pytest.approx(gates["map50Drop"], abs=1e-3)
    # The kstatus summary Flux and Argo CD read: Ready, for the generation the status was computed for.
    assert row["READY"] == "True"
    generation = run["metadata"]["generation"]
    assert status["observedGeneration"] == generation
    assert (conditions["Ready"]["status"], conditions["Ready"]["observedGeneration"]) == ("True", generation)
    assert not {"Reconciling", "Stalled"} & set(conditions)

    # A Pass model reaches the Deployment through a ModelRelease.
    client.AppsV1Api(kube).create_namespaced_deployment(namespace, serving_deployment("detector"))
    create(
        kube,
        namespace,
        "modelreleases",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRelease",
            "metadata": {"name": "detector"},
            "spec": {"pool": "invoices", "deployment": {"name": "detector"}, "model": "ft_v1.1"},
        },
    )
    eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 120, what="released")
    assert served_version(kube, namespace) == "ft_v1.1"
    table = kubectl(cluster, "get", "mrel", "-n", namespace, "detector")
    header, row = table.splitlines()[0].split(), table.splitlines()[1].split()
    assert header == ["NAME", "DEPLOYMENT", "MODEL", "PHASE", "READY", "AGE"]
    assert row[1:5] == ["detector", "ft_v1.1", "Released", "True"]
    wide = kubectl(cluster, "get", "mrel", "-n", namespace, "detector", "-o", "wide").splitlines()[0].split()
    assert wide == ["NAME", "DEPLOYMENT", "MODEL", "DESIRED", "PHASE", "READY", "MESSAGE", "AGE"]
    # A release whose Deployment does not exist is Blocked: Stalled for kstatus, never healthy.
    create(kube, namespace, "modelreleases", a_release("ghost", "invoices", "ft_v1.1"))
    eventually(lambda: release_status(kube, namespace, "ghost").get("phase") == "Blocked", 60, what="ghost blocked")
    ghost = get(kube, namespace, "modelreleases", "ghost")
    summary = {c["type"]: c for c in ghost["status"]["conditions"]}
    generation = ghost["metadata"]["generation"]
    assert ghost["status"]["observedGeneration"] == generation
    for type_, status_ in (("Ready", "False"), ("Stalled", "True")):
        condition = summary[type_]
        assert (condition["status"], condition["reason"]) == (status_, "DeploymentNotFound")
        assert condition["observedGeneration"] == generation
    assert "Reconciling" not in summary
    row = kubectl(cluster, "get", "mrel", "-n", namespace, "ghost").splitlines()[1].split()
    assert row[-3:-1] == ["Blocked", "False"]  # PHASE, READY (no MODEL: kubectl leaves it blank)
    history = release_status(kube, namespace)["history"]
    assert history[0]["model"]["version"] == "ft_v1.1" and history[0]["verdict"] == "Pass"
    assert pool_store.exists(layout.released_model("invoices", "ft_v1.1"))

    # The next run still starts from the base, not from the released fine-tune.
    write_pool_samples(pool_store, "invoices", range(50, 100))
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 50)
    second = eventually(
        lambda: run_phase(kube, namespace, "invoices-run-2", ("Planning", "Training", "Gating", "Succeeded")),
        60,
        what="second run",
    )
    assert second["spec"]["baseModel"]["version"] == "base_v1"
    plan2 = eventually(
        lambda: (
            (p := run_phase(kube, namespace, "invoices-run-2", ("Training", "Gating", "Succeeded")))
            and RunPlan.model_validate_json(pool_store.get(pool_store.relative(p["status"]["plan"]["uri"])))
        ),
        60,
        what="second plan",
    )
    assert plan2.base_model.version == "base_v1" and plan2.new_version == "ft_v1.2"
    # All 100 reviewed samples are in the plan; the pool's default share (0.2) of them, chosen by
    # image digest, is held out as unseen evidence for Gate 2, and at least 50 are trained on.
    share = plan2.gates.new_samples.holdout_share
    everything = plan2.new_samples + plan2.held_out_samples
    assert share == 0.2 and len(everything) == 100 and len(plan2.new_samples) >= 50
    assert {r.image_digest for r in plan2.held_out_samples} == {
        r.image_digest for r in everything if holdout_position(r.image_digest) < share
    }

    # Rollback: GitOps sets an earlier version; the previous model comes back.
    custom(kube).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelreleases", "detector", {"spec": {"model": "base_v1"}}
    )
    eventually(lambda: served_version(kube, namespace) == "base_v1", 60, what="rolled back")
    eventually(lambda: release_status(kube, namespace).get("currentModel") == "base_v1", 120, what="base current")
    assert release_status(kube, namespace)["phase"] == "Released"


def grant_approver(kube, namespace: str, user: str) -> None:
    """What a platform team does for a reviewer: bind the approve verb (as ballast-approver does)."""
    rbac = client.RbacAuthorizationV1Api(kube)
    rule = {"apiGroups": ["ballast.dev"], "resources": ["finetuneruns"], "verbs": ["get", "list", "patch", "approve"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": f"approver-{user}"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"approver-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"approver-{user}"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def a_release(name: str, pool: str, model: str) -> dict:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelRelease",
        "metadata": {"name": name},
        "spec": {"pool": pool, "deployment": {"name": name}, "model": model},
    }


METRICS_PORT = plane.free_port()


def scrape(name: str, labels: dict[str, str]) -> float | None:
    """One sample of the operator's /metrics, or None when it has no such series."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return sample.value
    return None


@pytest.mark.operator_args("--http-port", str(METRICS_PORT), "--http-host", "127.0.0.1")
def test_a_review_model_is_blocked_until_approved_and_a_reject_model_never_deploys(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    # Review: no detection rate can exceed 1.0, so Gate 2 always asks for a person.
    write_pool_samples(pool_store, "review", range(50))
    start_pool(
        kube,
        cluster,
        namespace,
        pool_store,
        name="review",
        gates={"regression": {"passBelow": 100, "rejectAbove": 101}, "newSamples": {"minDetectionRate": 1.0}},
    )
    # Reject: a destructive recipe (huge learning rate, nothing frozen) makes the model forget; any drop rejects.
    write_pool_samples(pool_store, "reject", range(50))
    start_pool(
        kube,
        cluster,
        namespace,
        pool_store,
        name="reject",
        training={**TRAINING, "lr0": 0.5, "freeze": 0, "warmupEpochs": 0},
        gates={"regression": {"passBelow": 0, "rejectAbove": 0.01}},
    )
    review = eventually(lambda: run_phase(kube, namespace, "review-run-1"), 600, interval=1, what="review run")
    reject = eventually(lambda: run_phase(kube, namespace, "reject-run-1"), 600, interval=1, what="reject run")
    assert review["status"]["verdict"] == "Review", review["status"]
    assert reject["status"]["verdict"] == "Reject", reject["status"]
    approved = next(c for c in review["status"]["conditions"] if c["type"] == "Approved")
    assert (approved["status"], approved["reason"]) == ("False", "RunNotApproved")

    apps = client.AppsV1Api(kube)
    for name, model in (("review-detector", "ft_v1.1"), ("reject-detector", "ft_v1.1")):
        apps.create_namespaced_deployment(namespace, serving_deployment(name))
        create(kube, namespace, "modelreleases", a_release(name, name.split("-")[0], model))
    eventually(
        lambda: release_status(kube, namespace, "review-detector").get("phase") == "Blocked", 60, what="review blocked"
    )
    eventually(
        lambda: release_status(kube, namespace, "reject-detector").get("phase") == "Blocked", 60, what="reject blocked"
    )
    assert "ballast runs approve review-run-1" in release_status(kube, namespace, "review-detector")["message"]
    assert served_version(kube, namespace, "review-detector") is None  # untouched
    # The health alerts' metrics: the Review waits since the run finished; both releases are Blocked.
    finished = datetime.fromisoformat(review["status"]["finishedAt"]).timestamp()
    review_run = {"namespace": namespace, "pool": "review", "run": "review-run-1"}
    assert scrape("ballast_run_review_waiting_since_seconds", review_run) == pytest.approx(finished, abs=1)
    assert scrape("ballast_run_review_waiting_since_seconds", {"run": "reject-run-1"}) is None
    for name in ("review-detector", "reject-detector"):
        assert scrape("ballast_release_phase", {"namespace": namespace, "release": name, "phase": "Blocked"}) == 1

    # ana may approve in this namespace (the `approve` verb), and approves in her own name.
    grant_approver(kube, namespace, "ana")
    approve = subprocess.run(
        [
            str(Path(sys.executable).parent / "ballast"),
            "runs",
            "approve",
            "review-run-1",
            "-n",
            namespace,
            "--reason",
            "new template; detection rate is the known gap",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": str(plane.user_kubeconfig(cluster, "ana"))},
        check=False,
    )
    assert approve.returncode == 0, approve.stderr
    eventually(
        lambda: release_status(kube, namespace, "review-detector").get("phase") == "Released",
        120,
        what="approved review released",
    )
    assert served_version(kube, namespace, "review-detector") == "ft_v1.1"
    assert release_status(kube, namespace, "review-detector")["history"][0]["approvedBy"] == "ana"
    eventually(
        lambda: scrape("ballast_run_review_waiting_since_seconds", review_run) is None, 30, what="the wait ended"
    )
    released = {"namespace": namespace, "release": "review-detector"}
    eventually(lambda: scrape("ballast_release_phase", {**released, "phase": "Released"}) == 1, 30, what="Released")
    assert scrape("ballast_release_phase", {**released, "phase": "Blocked"}) == 0

    # The rejected one stays blocked, whatever happens; its Deployment never moved.
    import time

    time.sleep(4)
    assert release_status(kube, namespace, "reject-detector")["phase"] == "Blocked"
    assert served_version(kube, namespace, "reject-detector") is None


def test_the_operator_killed_mid_training_resumes_without_a_duplicate_job(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    write_pool_samples(pool_store, "invoices", range(50))
    start_pool(kube, cluster, namespace, pool_store, training={**TRAINING, "epochs": 2}, gates=LENIENT)
    eventually(lambda: "invoices-run-1-train" in jobs(kube, namespace), 60, what="training Job")
    operator_process.kill()
    from ballast_dev.testing.operator import OperatorProcess

    restarted = OperatorProcess(cluster.kubeconfig, namespace, operator_process.log).start()
    try:
        run = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 600, interval=1, what="run finished")
    finally:
        restarted.stop()
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert jobs(kube, namespace) == ["invoices-run-1-gate", "invoices-run-1-train"]
    assert [r["metadata"]["name"] for r in runs(kube, namespace)] == ["invoices-run-1"]
    pods = client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector="job-name=invoices-run-1-train")
    assert len(pods.items) == 1


def test_2000_samples_lead_to_a_rebase_run_and_a_new_base(
    kube, namespace, store_secret, pool_store, operator_process, cluster
):
    # Small pages keep 2000 samples cheap to write, train on and gate.
    write_pool_samples(pool_store, "invoices", range(2000), size=64, workers=16)
    start_pool(
        kube,
        cluster,
        namespace,
        pool_store,
        training={**TRAINING, "imgsz": 64},
        rebase={"threshold": 2000, "epochs": 1},
        gates=LENIENT,
    )
    run = eventually(lambda: run_phase(kube, namespace, "invoices-run-1"), 900, interval=2, what="rebase run")
    assert run["spec"]["kind"] == "Rebase" and run["spec"]["trigger"] == "RebaseDue"
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["status"]["model"]["version"] == "base_v2"
    files = run_files(kube, namespace, "invoices-run-1")
    plan = RunPlan.model_validate_json(pool_store.get(files.plan))
    assert (len(plan.new_samples), len(plan.old_samples)) == (2000, ANCHOR_TRAIN)  # everything, from scratch
    lineage = Lineage.model_validate_json(pool_store.get(files.lineage))
    assert lineage.base_digest is None and lineage.params["pretrained"] is False
    if run["status"]["verdict"] == "Review":  # a person signs off a new base trained for one epoch
        grant_approver(kube, namespace, "ana")
        approve = subprocess.run(
            [
                str(Path(sys.executable).parent / "ballast"),
                "runs",
                "approve",
                "invoices-run-1",
                "-n",
                namespace,
                "--reason",
                "test base",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": str(plane.user_kubeconfig(cluster, "ana"))},
            check=False,
        )
        assert approve.returncode == 0, approve.stderr
    eventually(lambda: pool_status(kube, namespace).get("currentBase") == "base_v2", 60, what="base adopted")
    status = pool_status(kube, namespace)
    assert status["samplesSinceBase"] == 0
    rebase = next(c for c in status["conditions"] if c["type"] == "RebaseRecommended")
    assert rebase["status"] == "False"
    adopted = layout.released_model("invoices", "base_v2")
    assert pool_store.exists(adopted) and pool_store.exists(layout.beside(adopted, "lineage.json"))

    # The next fine-tune starts from base_v2 and plans only the samples since it: the 2000 it was
    # trained on are merged into it (they stay in the pool).
    since = write_pool_samples(pool_store, "invoices", range(2000, 2060), size=64)
    notify_samples_added(cluster.kubeconfig, namespace, "invoices", 60)
    run = eventually(
        lambda: run_phase(kube, namespace, "invoices-run-2", ("Training", "Gating", "Succeeded", "Failed")),
        120,
        what="the fine-tune after the rebase",
    )
    assert run["spec"]["kind"] == "FineTune" and run["spec"]["baseModel"]["version"] == "base_v2"
    assert run["status"]["plan"]["mergedSamples"] == 2000
    plan = RunPlan.model_validate_json(pool_store.get(run_files(kube, namespace, "invoices-run-2").plan))
    assert plan.new_version == "ft_v2.1"
    assert {r.image for r in plan.new_samples + plan.held_out_samples} == {r.image for r in since}
    assert pool_status(kube, namespace)["baseSnapshot"]["sampleCount"] == 2000
