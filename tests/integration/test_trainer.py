"""The trainer entrypoints, run as the Jobs run them, against real MinIO with real Ultralytics on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ballast.adapters.models import publish_model
from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.common import BaseModelRef
from ballast.api.contracts import (
    BaseEvaluation,
    GateReport,
    Lineage,
    RunPlan,
    TerminationReport,
    TrainResult,
    canonical_json,
    digest_bytes,
)
from ballast.api.params import GateThresholds, Mixing, RebaseParams, TrainingParams
from ballast.policy.gates import overall_verdict
from ballast.policy.mixing import draw_old_samples, old_sample_count
from ballast_dev.synth import CLASSES
from ballast_dev.testing.datasets import TEST_MANIFEST, write_anchor, write_pool_samples
from ballast_dev.testing.trainer import put_plan

TRAINER = str(Path(sys.executable).parent / "ballast-trainer")
TINY = TrainingParams(epochs=1, imgsz=160, batch=16, gpus=0)


def run_trainer(cluster, stage: str, plan: tuple[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    """`ballast-trainer STAGE --plan URI --plan-digest DIGEST`, as the operator's Job runs it; the
    termination message goes to tmp_path/termination-log."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "BALLAST_S3_ENDPOINT": cluster.minio_endpoint,
        "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
        "BALLAST_S3_ACCESS_KEY": cluster.minio_access_key,
        "BALLAST_S3_SECRET_KEY": cluster.minio_secret_key,
        "BALLAST_TERMINATION_LOG": str(tmp_path / f"termination-log-{stage}"),
        # The checkout under test, where it is put ahead of an installed copy.
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    uri, digest = plan
    return subprocess.run(
        [TRAINER, stage, "--plan", uri, "--plan-digest", digest, "--workdir", str(tmp_path / f"work-{stage}")],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def files(plan: RunPlan) -> layout.RunArtifacts:
    return layout.RunArtifacts(plan.run, plan.run_uid)


def a_plan(**fields) -> RunPlan:
    defaults = dict(
        run_uid="uid-" + str(fields.get("run", "")),
        bucket="",
        classes=list(CLASSES),
        seed=7,
        new_samples=[],
        old_samples=[],
        test_manifest=TEST_MANIFEST,
        mixing_rule="test",
        training=TINY,
        rebase=RebaseParams(epochs=2),
        gates=GateThresholds(),
    )
    return RunPlan(**(defaults | fields))


@pytest.fixture(scope="module")
def trained(cluster, tmp_path_factory):
    """A base trained from scratch by `rebase`, then a fine-tune from it by `train`, then `gate`."""
    from minio import Minio

    tmp = tmp_path_factory.mktemp("trainer")
    bucket = "trainer-e2e"
    raw = Minio(cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, secure=False)
    if not raw.bucket_exists(bucket):
        raw.make_bucket(bucket)
    store = ObjectStore(
        cluster.minio_endpoint, cluster.minio_access_key, cluster.minio_secret_key, bucket, "ballast", secure=False
    )
    anchor = write_anchor(store, train=48, test=12)
    pool_refs = write_pool_samples(store, "invoices", range(10))

    bootstrap = a_plan(
        run="bootstrap",
        pool="invoices",
        kind="Rebase",
        bucket=bucket,
        prefix="ballast",
        new_version="base_v1",
        old_samples=anchor.train,
    )
    rebase = run_trainer(cluster, "rebase", put_plan(store, bootstrap), tmp)
    assert rebase.returncode == 0, rebase.stdout + rebase.stderr
    base_result = TrainResult.model_validate_json(store.get(files(bootstrap).train_result))
    # Adopt it as base_v1, weights and lineage side by side, as the operator does.
    base = publish_model(store, "invoices", base_result.model)
    base = BaseModelRef.model_validate(base.to_wire())

    mix = old_sample_count(len(pool_refs), Mixing())
    drawn_ids = draw_old_samples([r.image for r in anchor.train], min(mix.old_samples, len(anchor.train)), seed=11)
    old = [r for r in anchor.train if r.image in set(drawn_ids)]
    plan = a_plan(
        run="invoices-run-1",
        pool="invoices",
        kind="FineTune",
        bucket=bucket,
        prefix="ballast",
        new_version="ft_v1.1",
        base_model=base,
        seed=11,
        new_samples=pool_refs,
        old_samples=old,
        mixing_rule=mix.rule,
    )
    plan_uri = put_plan(store, plan)
    train = run_trainer(cluster, "train", plan_uri, tmp)
    assert train.returncode == 0, train.stdout + train.stderr
    gate = run_trainer(cluster, "gate", plan_uri, tmp)
    assert gate.returncode == 0, gate.stdout + gate.stderr
    return {
        "store": store,
        "plan": plan,
        "base": base,
        "base_result": base_result,
        "bootstrap": bootstrap,
        "logs": (rebase, train, gate),
        "tmp": tmp,
        "anchor": anchor,
    }


def test_rebase_trains_a_base_from_scratch_with_lineage(trained):
    store = trained["store"]
    bootstrap = files(trained["bootstrap"])
    lineage = Lineage.model_validate_json(store.get(bootstrap.lineage))
    assert lineage.model_version == "base_v1"
    assert lineage.base_digest is None  # from scratch: nothing to chain from
    assert lineage.params["pretrained"] is False
    # 48 images at batch 16 for 2 epochs: a base's bias warm-up starts at its own lr0, one step a batch.
    ran = lineage.ran
    assert (ran.warmup_bias_lr, ran.nbs, ran.accumulate) == (0.01, 16, 1)
    assert (ran.batches_per_epoch, ran.warmup_iterations, ran.optimizer_steps) == (3, 3, 6)
    assert (ran.amp, ran.devices) == ("off", ["cpu"])
    weights = store.get(bootstrap.model, trained["base_result"].model.digest)  # raises on mismatch
    assert len(weights) > 100_000


def test_the_fine_tune_starts_from_the_base_with_the_seeds_recipe(trained):
    store, plan = trained["store"], trained["plan"]
    result = TrainResult.model_validate_json(store.get(files(trained["plan"]).train_result))
    assert result.model.version == "ft_v1.1"
    store.get(store.relative(result.model.uri), result.model.digest)  # the digest checks out
    lineage_raw = store.get(store.relative(result.lineage_uri))
    lineage = Lineage.model_validate_json(lineage_raw)
    assert lineage.base_digest == trained["base"].digest
    assert lineage.base_version == "base_v1"
    assert lineage.plan_digest.startswith("sha256:")
    assert lineage.params["optimizer"] == "SGD"
    assert (lineage.params["lr0"], lineage.params["freeze"], lineage.params["warmup_epochs"]) == (0.001, 10, 1.0)
    assert lineage.params["cos_lr"] is True
    assert lineage.seed == plan.seed
    assert {"ultralytics", "torch", "ballast"} <= set(lineage.libraries)
    assert set(lineage.seconds) >= {"download", "train"}
    assert result.epochs and "train/box_loss" in result.epochs[-1].metrics


def test_the_lineage_of_a_fine_tune_shows_the_recipe_that_ran(trained, cluster):
    """24 pages (10 new, 14 old) at batch 8 for 2 epochs: 3 batches an epoch, one optimizer step
    per batch (nbs = batch, not Ultralytics' 64), a warm-up of one epoch (3 iterations) whose bias
    learning rate starts at lr0 (not Ultralytics' 0.1), measured inside the trainer."""
    store, plan = trained["store"], trained["plan"]
    recipe = plan.evolve(
        run="recipe",
        run_uid="uid-recipe",
        new_version="ft_v1.2",
        old_samples=trained["anchor"].train[:14],
        training=TINY.evolve(epochs=2, batch=8),
    )
    completed = run_trainer(cluster, "train", put_plan(store, recipe), trained["tmp"] / "recipe")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    lineage = Lineage.model_validate_json(store.get(files(recipe).lineage))
    images, batch, epochs = 24, 8, 2
    ran = lineage.ran
    assert (lineage.params["warmup_bias_lr"], lineage.params["nbs"]) == (0.001, 8)
    assert (ran.warmup_bias_lr, ran.nbs, ran.batch, ran.accumulate, ran.effective_batch) == (0.001, 8, 8, 1, 8)
    assert ran.batches_per_epoch == -(-images // batch)
    assert ran.warmup_iterations == ran.batches_per_epoch  # warmupEpochs 1
    assert ran.iterations == ran.optimizer_steps == epochs * -(-images // batch)
    assert (ran.amp, ran.devices) == ("off", ["cpu"])
    # val=False: Ultralytics still validates the last epoch and best.pt; the lineage says so.
    assert ran.validation_passes == 2 and ran.validation_seconds > 0


def test_the_gates_write_a_report_whose_verdict_follows_the_policy(trained):
    store = trained["store"]
    report = GateReport.model_validate_json(store.get(files(trained["plan"]).gate_report))
    assert [g.name for g in report.gates] == ["Gate1Regression", "Gate2NewSamples"]
    assert report.verdict == overall_verdict(g.verdict for g in report.gates)
    assert 0.0 <= report.detection_rate <= 1.0
    assert report.map50_drop == pytest.approx((report.base_map50 - report.candidate_map50) * 100, abs=1e-4)
    assert {c.name for c in report.per_class_detection} == set(CLASSES)
    assert sum(c.instances for c in report.per_class_detection) == 10 * 8  # 8 fields on each of 10 pages
    # With no figure in the plan, the gate measured the base itself (and says so).
    assert report.base_measured is True


def test_the_trainer_never_reaches_beyond_the_object_store(trained):
    for completed in trained["logs"]:
        audit_line = next(line for line in completed.stdout.splitlines() if "network audit:" in line)
        connections = int(audit_line.split("network audit:")[1].split()[0])
        assert connections > 0  # the hook is live: it saw the object-store connections
        assert "refused: []" in audit_line, completed.stdout[-2000:]


def test_the_audit_hook_refuses_any_other_host_before_a_packet_leaves():
    code = (
        "import socket\n"
        "from ballast_trainer import offline\n"
        "audit = offline.audit({'127.0.0.1'})\n"
        "try:\n"
        "    socket.getaddrinfo('weights.example.invalid', 443)\n"
        "except PermissionError as error:\n"
        "    print('refused', error)\n"
        "print(audit.refused)\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "refused network access to weights.example.invalid" in completed.stdout


def test_a_plan_carrying_a_verified_base_figure_is_not_measured_again(trained, cluster):
    store, plan = trained["store"], trained["plan"]
    first = GateReport.model_validate_json(store.get(files(plan).gate_report))
    known = BaseEvaluation(
        base_digest=trained["base"].digest,
        test_manifest_digest=digest_bytes(store.get(TEST_MANIFEST)),
        imgsz=plan.training.imgsz,
        map50=first.base_map50,
    )
    again = plan.evolve(run_uid="uid-again", base_evaluation=known)
    store.copy(files(plan).train_result, files(again).train_result)  # the same training, judged again
    completed = run_trainer(cluster, "gate", put_plan(store, again), trained["tmp"] / "again")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "base mAP50 from the plan" in completed.stdout
    report = GateReport.model_validate_json(store.get(files(again).gate_report))
    assert report.base_measured is False and report.base_map50 == pytest.approx(first.base_map50)


def test_each_stage_reports_its_results_digest_in_the_termination_message(trained):
    store, plan = trained["store"], trained["plan"]
    for stage, key in (("train", files(plan).train_result), ("gate", files(plan).gate_report)):
        report = TerminationReport.model_validate_json((trained["tmp"] / f"termination-log-{stage}").read_text())
        assert report.document == key
        assert report.digest == digest_bytes(store.get(key))


def test_a_plan_rewritten_in_the_bucket_is_refused(trained, cluster):
    store, plan = trained["store"], trained["plan"]
    honest = plan.evolve(run="rewritten", run_uid="uid-rewritten")
    uri, digest = put_plan(store, honest)
    store.put(files(honest).plan, canonical_json(honest.evolve(old_samples=[])), "application/json")  # a bucket writer
    completed = run_trainer(cluster, "train", (uri, digest), trained["tmp"] / "rewritten")
    assert completed.returncode == 3, completed.stdout[-2000:]
    error = json.loads(store.get(files(honest).error("train")))
    assert error["reason"] == "Refused" and "not the one this Job was given" in error["message"]
    assert not store.exists(files(honest).model)


def test_a_plan_that_starts_from_a_fine_tuned_model_is_refused(trained, cluster):
    store, plan = trained["store"], trained["plan"]
    result = TrainResult.model_validate_json(store.get(files(trained["plan"]).train_result))
    # Dress the fine-tune up as a base: the name passes admission, the lineage gives it away.
    disguised_key = layout.released_model("invoices", "base_v9")
    store.copy(store.relative(result.model.uri), disguised_key)
    store.copy(store.relative(result.lineage_uri), layout.beside(disguised_key, "lineage.json"))
    disguised = BaseModelRef(version="base_v9", uri=store.uri(disguised_key), digest=result.model.digest)
    chained = plan.evolve(run="chained", run_uid="uid-chained", base_model=disguised, new_version="ft_v9.1")
    completed = run_trainer(cluster, "train", put_plan(store, chained), trained["tmp"] / "chained")
    assert completed.returncode == 3
    error = json.loads(store.get(files(chained).error("train")))
    assert error["reason"] == "Refused" and "never chain fine-tunes" in error["message"]
    assert not store.exists(files(chained).model)


def test_a_tampered_base_is_refused_by_digest(trained, cluster):
    store, plan = trained["store"], trained["plan"]
    wrong = trained["base"].model_copy(update={"digest": "sha256:" + "0" * 64})
    tampered = plan.evolve(run="tampered", run_uid="uid-tampered", base_model=wrong)
    completed = run_trainer(cluster, "train", put_plan(store, tampered), trained["tmp"] / "tampered")
    assert completed.returncode == 1
    assert "DigestMismatch" in json.loads(store.get(files(tampered).error("train")))["message"]


def test_a_fine_tune_plan_without_old_samples_is_refused_by_the_trainer(trained, cluster):
    store, plan = trained["store"], trained["plan"]
    unmixed = plan.evolve(run="unmixed", run_uid="uid-unmixed", old_samples=[])
    completed = run_trainer(cluster, "train", put_plan(store, unmixed), trained["tmp"] / "unmixed")
    assert completed.returncode == 3, completed.stdout[-2000:]
    error = json.loads(store.get(files(unmixed).error("train")))
    assert error["reason"] == "Refused" and "never trains on new data only" in error["message"]
    assert not store.exists(files(unmixed).model)
