"""Trustworthy verdicts, attacked as a tenant of a shared cluster would: with the pool's store key
(every reviewer holds it) or with namespace rights only. The operator runs as the README installs
it: its own namespace, the chart's ServiceAccount and RBAC, the admission policy on.

Seed section 4: never auto-deploy; only the operator's own Jobs judge a model, and only an
authorized person approves a Review, in their own name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from ballast.api import layout
from ballast.api.contracts import GateReport, GateResult, RunPlan, TrainResult, canonical_json, digest_bytes
from ballast.api.samples import parse_manifest
from ballast_dev.cluster import plane
from ballast_dev.testing.datasets import BASE_KEY, TEST_MANIFEST, TRAIN_MANIFEST, write_pool_samples
from ballast_dev.testing.kube import eventually, run_files
from ballast_dev.testing.operator import OperatorProcess
from ballast_dev.testing.trainer import put_plan, trainer_argv
from tests.integration.test_operator import (
    GROUP,
    TRAINING,
    VERSION,
    a_release,
    create,
    custom,
    get,
    grant_approver,
    jobs,
    release_status,
    run_phase,
    served_version,
    serving_deployment,
    start_pool,
)

RUN = "invoices-run-1"
BALLAST = str(Path(sys.executable).parent / "ballast")
# A recipe that wrecks the base in one epoch: Gate 1 must reject it, whatever the bucket says.
DESTRUCTIVE = {**TRAINING, "lr0": 0.5, "freeze": 0, "warmupEpochs": 0}


def api_as(cluster, user: str, groups: tuple[str, ...] = ()) -> client.ApiClient:
    """An API client authenticated as `user` (a client certificate from the cluster's CA)."""
    configuration = client.Configuration()
    config.load_kube_config(str(plane.user_kubeconfig(cluster, user, groups)), client_configuration=configuration)
    return client.ApiClient(configuration)


def refused(call) -> str:
    """The apiserver's refusal message, or '' when the call went through."""
    try:
        call()
    except ApiException as error:
        return str(json.loads(error.body).get("message", "")) if error.body else str(error)
    return ""


def pods(kube, namespace: str, job: str) -> list:
    return client.CoreV1Api(kube).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def grant(kube, namespace: str, user: str, verbs: list[str]) -> None:
    """A namespace Role on finetuneruns for `user` (what a platform team binds)."""
    rbac = client.RbacAuthorizationV1Api(kube)
    rule = {"apiGroups": ["ballast.dev"], "resources": ["finetuneruns"], "verbs": verbs}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": f"runs-{user}"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"runs-{user}"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"runs-{user}"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        },
    )


def forged_documents(bucket: str, run: str, uid: str, base_digest: str) -> dict[str, bytes]:
    """What a bucket writer would plant: a plan, a train result and a gate report that says Pass."""
    files = layout.RunArtifacts(run, uid)
    model = {"version": "ft_v1.1", "uri": f"s3://{bucket}/{files.model}", "digest": base_digest}
    base = {"version": "base_v1", "uri": f"s3://{bucket}/{BASE_KEY}", "digest": base_digest}
    result = TrainResult.model_validate(
        {"run": run, "model": model, "lineageUri": f"s3://{bucket}/{files.lineage}", "lineageDigest": base_digest}
        | {"epochs": [], "seconds": 1}
    )
    gates = [GateResult(name=n, verdict="Pass", reason="forged") for n in ("Gate1Regression", "Gate2NewSamples")]
    report = GateReport.model_validate(
        {"run": run, "candidate": model, "base": base, "baseMap50": 0.0, "candidateMap50": 0.99}
        | {"map50Drop": -99.0, "dropUnit": "points", "detectionRate": 1.0, "perClassDetection": []}
        | {"gates": [g.to_wire() for g in gates], "verdict": "Pass"}
    )
    return {files.train_result: canonical_json(result), files.gate_report: canonical_json(report)}


def test_forged_artifacts_staged_in_advance_and_a_poisoned_base_figure_change_no_verdict(
    kube, namespace, store_secret, pool_store, documented_operator, cluster
):
    base_digest = digest_bytes(pool_store.get(BASE_KEY))
    # Before the run exists, a bucket writer plants a Pass for it where its name says it would
    # look (the run's name is predictable), and a base figure of 0 where a gate cache would be.
    for key, data in forged_documents(pool_store.bucket, RUN, "", base_digest).items():
        pool_store.put(key.replace("//", "/"), data)
    pool_store.put(f"runs/{RUN}/plan.json", b'{"forged": true}')
    test_digest = digest_bytes(pool_store.get(TEST_MANIFEST))
    pool_store.put(
        layout.gate1_cache(base_digest, test_digest, TRAINING["imgsz"]), b'{"map50": 0.0, "perClassAp50": {}}'
    )
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    start_pool(kube, cluster, namespace, pool_store, training=DESTRUCTIVE)  # the seed's gates
    run = eventually(lambda: run_phase(kube, namespace, RUN), 600, interval=1, what="run judged")
    status = run["status"]
    assert status["phase"] == "Succeeded", status
    # Both stages really ran, and the verdict is the operator's own from real figures.
    assert len(pods(kube, namespace, f"{RUN}-train")) == 1 and len(pods(kube, namespace, f"{RUN}-gate")) == 1
    assert status["verdict"] == "Reject" and status["gates"]["gate1"] == "Reject"
    assert status["gates"]["baseMap50"] > 0.5 and status["gates"]["map50Drop"] > 3
    files = run_files(kube, namespace, RUN)
    assert files.prefix == f"runs/{RUN}/{run['metadata']['uid']}/"  # keyed by uid: nothing planted was read


def test_a_result_rewritten_in_the_bucket_after_its_job_is_not_read(
    kube, namespace, store_secret, pool_store, documented_operator, cluster
):
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    start_pool(kube, cluster, namespace, pool_store)
    eventually(lambda: f"{RUN}-train" in jobs(kube, namespace), 120, what="training Job")
    documented_operator.process.kill()  # the operator is away while the Job finishes
    batch = client.BatchV1Api(kube)
    eventually(
        lambda: any(
            c.type == "Complete" for c in batch.read_namespaced_job(f"{RUN}-train", namespace).status.conditions or []
        ),
        300,
        interval=1,
        what="training Job complete",
    )
    # The store key holder rewrites the result to name a model of their own making.
    files = run_files(kube, namespace, RUN)
    result = TrainResult.model_validate_json(pool_store.get(files.train_result))
    planted = pool_store.put(files.model, b"weights of someone else's choosing")
    pool_store.put(files.train_result, canonical_json(result.evolve(model=result.model.evolve(digest=planted))))
    restarted = OperatorProcess(
        str(documented_operator.kubeconfig),
        namespace,
        documented_operator.process.log,
        pod_namespace=documented_operator.namespace,
    ).start()
    try:
        run = eventually(lambda: run_phase(kube, namespace, RUN), 120, interval=1, what="run refused")
    finally:
        restarted.stop()
    assert run["status"]["phase"] == "Failed"
    assert "ResultUnverified" in run["status"]["message"] and "not what the Job wrote" in run["status"]["message"]
    assert f"{RUN}-gate" not in jobs(kube, namespace)  # nothing was judged on the planted model


def test_a_hand_made_run_cannot_choose_how_it_is_judged(
    kube, namespace, store_secret, pool_store, documented_operator, cluster
):
    write_pool_samples(pool_store, "invoices", range(50), family="classic")
    pool = start_pool(kube, cluster, namespace, pool_store, triggers={"minNewSamples": 60})
    base = pool["spec"]["baseModel"]

    def hand_made(name: str, **spec) -> dict:
        body = {"pool": "invoices", "baseModel": base, **spec}
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "FineTuneRun", "metadata": {"name": name}, "spec": body}

    # Looser gates than the pool's: refused before any Job, saying which.
    create(
        kube,
        namespace,
        "finetuneruns",
        hand_made("loose", gates={"regression": {"passBelow": 1000, "rejectAbove": 1001}}),
    )
    loose = eventually(lambda: run_phase(kube, namespace, "loose"), 120, what="loose run refused")
    assert loose["status"]["phase"] == "Failed" and "passBelow 1000 > the pool's 1" in loose["status"]["message"]
    assert not [j for j in jobs(kube, namespace) if j.startswith("loose")]
    # Its own trainer image: no resource has such a field; a strict client is told so, and a lax one's
    # field is dropped, so the Job runs the operator's image.
    runs_api = custom(kube)
    with_image = hand_made("own-image", training={**TRAINING, "image": "registry.example/evil:1"})
    message = refused(
        lambda: runs_api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "finetuneruns", with_image, field_validation="Strict"
        )
    )
    assert 'unknown field "spec.training.image"' in message
    runs_api.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetuneruns", with_image)
    eventually(lambda: "own-image-train" in jobs(kube, namespace), 120, what="its training Job")
    job = client.BatchV1Api(kube).read_namespaced_job("own-image-train", namespace)
    assert job.spec.template.spec.containers[0].image == "ghcr.io/ballast-dev/trainer:0.1.0"
    # Approved at creation: refused at admission.
    approval = {"by": "ballast-admin", "at": "2026-11-26T12:00:00Z", "reason": "x", "modelDigest": base["digest"]}
    message = refused(lambda: create(kube, namespace, "finetuneruns", hand_made("pre-approved", approval=approval)))
    assert "cannot be set when a run is created" in message
    # A Rebase by hand needs its own verb: mallory may create runs, not Rebase runs; rita may.
    grant(kube, namespace, "mallory", ["get", "list", "create"])
    grant(kube, namespace, "rita", ["get", "list", "create", "rebase"])
    rebase = hand_made("by-hand-rebase", kind="Rebase")
    as_mallory = client.CustomObjectsApi(api_as(cluster, "mallory"))
    message = refused(
        lambda: as_mallory.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetuneruns", rebase)
    )
    assert "needs the `rebase` verb" in message
    as_rita = client.CustomObjectsApi(api_as(cluster, "rita"))
    assert (
        refused(lambda: as_rita.create_namespaced_custom_object(GROUP, VERSION, namespace, "finetuneruns", rebase))
        == ""
    )


def approve_as(cluster, namespace: str, user: str, run: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KUBECONFIG": str(plane.user_kubeconfig(cluster, user))}
    command = [BALLAST, "runs", "approve", run, "-n", namespace, "--reason", "the new template is the known gap"]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


def test_only_an_approver_approves_a_review_in_their_own_name_and_only_an_opted_in_deployment_moves(
    kube, namespace, store_secret, pool_store, documented_operator, cluster
):
    # Failures of the new template, one short epoch: Gate 2 asks for a person (the seed's gates).
    write_pool_samples(pool_store, "invoices", range(50))
    start_pool(kube, cluster, namespace, pool_store)
    grant_approver(kube, namespace, "alice")
    grant(kube, namespace, "mallory", ["get", "list", "patch"])
    eventually(lambda: run_phase(kube, namespace, RUN, ("Training", "Gating")), 120, what="run training")
    early = approve_as(cluster, namespace, "alice", RUN)
    assert early.returncode != 0 and "only a Review verdict is approved" in early.stderr  # before the verdict
    run = eventually(lambda: run_phase(kube, namespace, RUN), 600, interval=1, what="run judged")
    assert run["status"]["verdict"] == "Review", run["status"]
    digest = run["status"]["model"]["digest"]

    def approval(by: str, model_digest: str = digest) -> dict:
        wire = {"by": by, "at": "2026-11-26T12:00:00Z", "reason": "ok", "modelDigest": model_digest}
        return {"spec": {"approval": wire}}

    as_mallory = client.CustomObjectsApi(api_as(cluster, "mallory"))
    as_alice = client.CustomObjectsApi(api_as(cluster, "alice"))

    def patch(api, body) -> str:
        return refused(lambda: api.patch_namespaced_custom_object(GROUP, VERSION, namespace, "finetuneruns", RUN, body))

    assert "needs the `approve` verb" in patch(as_mallory, approval("mallory"))  # patch rights are not enough
    assert "must be your own username" in patch(as_alice, approval("bob"))  # not in another's name
    assert "must be the digest of the model" in patch(as_alice, approval("alice", "sha256:" + "0" * 64))
    assert approve_as(cluster, namespace, "mallory", RUN).returncode != 0

    # The Deployment whose owner did not opt in is never moved; the one that did is.
    apps = client.AppsV1Api(kube)
    apps.create_namespaced_deployment(namespace, serving_deployment("not-mine", opted_in=False))
    create(kube, namespace, "modelreleases", a_release("not-mine", "invoices", "ft_v1.1"))
    apps.create_namespaced_deployment(namespace, serving_deployment("detector"))
    create(kube, namespace, "modelreleases", a_release("detector", "invoices", "ft_v1.1"))
    eventually(lambda: release_status(kube, namespace).get("phase") == "Blocked", 60, what="blocked until approved")

    approved = approve_as(cluster, namespace, "alice", RUN)
    assert approved.returncode == 0, approved.stderr
    assert get(kube, namespace, "finetuneruns", RUN)["spec"]["approval"]["by"] == "alice"
    eventually(lambda: release_status(kube, namespace).get("phase") == "Released", 180, what="released")
    assert served_version(kube, namespace) == "ft_v1.1"
    assert release_status(kube, namespace)["history"][0]["approvedBy"] == "alice"
    blocked = eventually(lambda: release_status(kube, namespace, "not-mine").get("phase") == "Blocked", 60, what="x")
    assert blocked
    reason = next(c for c in release_status(kube, namespace, "not-mine")["conditions"] if c["type"] == "Blocked")
    assert reason["reason"] == "DeploymentNotOptedIn"
    assert served_version(kube, namespace, "not-mine") is None


@pytest.fixture
def evil_model(tmp_path) -> tuple[bytes, Path]:
    """A torch checkpoint whose unpickling would run a shell command that leaves a marker file."""
    marker = tmp_path / "pwned"
    code = (
        "import os, sys, torch\n"
        "class Evil:\n"
        "    def __reduce__(self):\n"
        f"        return (os.system, ('touch {marker}',))\n"
        "torch.save({'model': Evil(), 'train_args': {}}, sys.argv[1])\n"
    )
    path = tmp_path / "evil.pt"
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    return path.read_bytes(), marker


def test_a_model_whose_pickle_runs_code_is_refused_and_nothing_runs(cluster, pool_store, evil_model, tmp_path):
    data, marker = evil_model
    key = layout.released_model("invoices", "ft_v1.9")
    digest = pool_store.put(key, data)
    pool_store.put(layout.beside(key, "lineage.json"), b"{}")
    env = {
        **os.environ,
        **cluster.env(),
        "BALLAST_MODEL_URI": pool_store.uri(key),
        "BALLAST_MODEL_DIGEST": digest,
        "BALLAST_MODEL_VERSION": "ft_v1.9",
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
        "BALLAST_S3_ACCESS_KEY": cluster.minio_access_key,
        "BALLAST_S3_SECRET_KEY": cluster.minio_secret_key,
        "HOME": str(tmp_path),
    }
    serve = subprocess.run(
        [str(Path(sys.executable).parent / "ballast-trainer"), "serve", "--port", "0", "--imgsz", "64"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert serve.returncode != 0
    assert "outside the supported Ultralytics checkpoint format" in serve.stdout + serve.stderr
    assert not marker.exists()  # the pickled command never ran


def test_a_base_whose_pickle_runs_code_is_refused_by_the_trainer(cluster, pool_store, evil_model, tmp_path):
    data, marker = evil_model
    key = "models/imported/base_v1/model.pt"  # someone pointed a pool at an uploaded file
    digest = pool_store.put(key, data)
    lineage = {
        "modelVersion": "base_v1",
        "planDigest": digest,
        "params": {},
        "seed": 0,
        "libraries": {},
        "startedAt": "2026-11-26T00:00:00Z",
        "finishedAt": "2026-11-26T00:00:00Z",
        "seconds": {},
    }
    pool_store.put(layout.beside(key, "lineage.json"), json.dumps(lineage).encode())
    anchor = parse_manifest(pool_store.get(TRAIN_MANIFEST).decode())
    plan = RunPlan.model_validate(
        {
            "run": "evil-base",
            "runUid": "u",
            "pool": "invoices",
            "kind": "FineTune",
            "bucket": pool_store.bucket,
            "classes": ["title"],
            "baseModel": {"version": "base_v1", "uri": pool_store.uri(key), "digest": digest},
            "newVersion": "ft_v1.1",
            "seed": 1,
            "newSamples": [],
            # A plan valid but for its base: the trainer refuses an unmixed one before it opens the base.
            "oldSamples": [ref.to_wire() for ref in anchor[:1]],
            "testManifest": TEST_MANIFEST,
            "mixingRule": "x",
            "training": TRAINING,
            "rebase": {},
            "gates": {},
        }
    )
    env = {**os.environ, **cluster.env(), "HOME": str(tmp_path)}
    env |= {
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
        "BALLAST_S3_ACCESS_KEY": cluster.minio_access_key,
        "BALLAST_S3_SECRET_KEY": cluster.minio_secret_key,
    }
    completed = subprocess.run(
        trainer_argv("train", put_plan(pool_store, plan), "--workdir", str(tmp_path / "work")),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode != 0
    error = json.loads(pool_store.get(layout.RunArtifacts("evil-base", "u").error("train")))
    assert "outside the supported Ultralytics checkpoint format" in error["message"]
    assert not marker.exists()
