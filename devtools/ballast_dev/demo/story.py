"""The demo's story on the local cluster, step by step (see ballast_dev.demo)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.common import BaseModelRef
from ballast.api.contracts import GateReport, RunPlan
from ballast.api.finetunerun import GateEvidence
from ballast_dev import REPO
from ballast_dev.cluster import build, plane
from ballast_dev.demo.results import ModelRow, lesson_summary, plot, print_table, reviewer_decision, write_json
from ballast_dev.demo.steps import Report, Settings, http, say, stage, wait
from ballast_dev.synth import CLASSES, render
from ballast_dev.testing.datasets import TEST_MANIFEST, TRAIN_MANIFEST, put_base, write_anchor
from ballast_dev.testing.trainer import put_plan, trainer_argv

NAMESPACE = "ballast-demo"
BUCKET = "ballast-demo"
POOL = "invoices"
RELEASE = "invoices-detector"
GROUP, VERSION = "ballast.dev", "v1alpha1"
UNSEEN = range(7000, 7010)  # new-template pages no run ever trains on: what users will send next
SEED_RECIPE = {"epochs": 10, "lr0": 0.001, "optimizer": "SGD", "freeze": 10, "warmupEpochs": 1, "cosLr": True}


class Demo:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.report = Report()
        self.bin = Path(sys.executable).parent
        self.rows: list[ModelRow] = []
        self.next_document = 0

    # ---- helpers -----------------------------------------------------------------------------------
    def kubectl(self, *args: str) -> str:
        command = [str(build.binary("kubectl")), "--kubeconfig", self.info.kubeconfig, "-n", NAMESPACE, *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def ballast(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.bin / "ballast"), *args, "-n", NAMESPACE],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": self.info.kubeconfig},
            check=False,
        )
        if out.returncode not in (0, 1, 3, 4):  # a refusal is part of the story; usage or unreachable is not
            raise RuntimeError(out.stderr)
        return out.stdout + out.stderr

    def helm(self, *args: str) -> None:
        command = [str(build.binary("helm")), "--kubeconfig", self.info.kubeconfig, *args]
        subprocess.run(command, check=True, capture_output=True)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name))
        except ApiException as error:
            if error.status == 404:
                return {}
            raise

    def release_status(self) -> dict[str, Any]:
        return self.get("modelreleases", RELEASE).get("status", {})

    # ---- the story ---------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        state = s.state_dir or Path(tempfile.mkdtemp(prefix="ballast-demo-"))
        node = "node agent" if s.node == "agent" else "a kubelet on containerd and runc"
        with stage(self.report, f"Local cluster: etcd, kube-apiserver, controllers, {node}, MinIO"):
            self.info = plane.up(state, node_kind=s.node, log=say)
        try:
            self.story()
        finally:
            if s.keep:
                self.print_keep()
            else:
                plane.down(state, log=say)
                if s.state_dir is None:
                    shutil.rmtree(state, ignore_errors=True)
        return 0

    def story(self) -> None:
        self.install()
        base = self.data()
        self.serve(base)
        self.base_row = ModelRow(model="base_v1", role="(serving)")
        with stage(self.report, "Production shifts to a new template"):
            self.base_row.fields_found_unseen = self.fields_found()
            say(f"   base_v1 finds {self.base_row.fields_found_unseen:.1f} of 8 fields on unseen new-template pages")
        released = None
        for number in range(1, self.settings.rounds + 1):
            count = self.settings.failures if number == 1 else self.settings.more
            self.feedback_and_review(count)
            released = self.fine_tune(number)
            if released:
                break
        if released:
            with stage(self.report, "Rollback: `ballast release rollback`, then forward again"):
                say("   " + self.ballast("release", "rollback", RELEASE).strip())
                wait("rollback", lambda: self.serving() == "base_v1", 300)
                say("   " + self.ballast("release", "rollback", RELEASE, "--to", released).strip())
                wait("roll forward", lambda: self.serving() == released, 300)
                say(f"   {RELEASE} serves {released} again; every model stays under models/{POOL}/")
        with stage(self.report, "The lesson: the same failures without the old data"):
            unmixed = self.unmixed(self.last_run)
            say(f"   {lesson_summary(self.rows[-1], unmixed)}")
            self.rows.append(unmixed)
        self.summary()

    def install(self) -> None:
        from kubernetes import client, config

        configuration = client.Configuration()
        config.load_kube_config(self.info.kubeconfig, client_configuration=configuration)
        api = client.ApiClient(configuration)
        self.custom, self.core = client.CustomObjectsApi(api), client.CoreV1Api(api)

        # The chart installs the CRDs (templates, so `helm upgrade` upgrades them), as for a user.
        with stage(self.report, "Install: CRDs and the operator (Helm chart)"):
            self.core.create_namespace({"metadata": {"name": NAMESPACE}})
            store_keys = {"accessKey": self.info.minio_access_key, "secretKey": self.info.minio_secret_key}
            self.feedback_token = secrets.token_hex(16)
            for name, data in (
                ("ballast-store", store_keys),
                ("ballast-webhook", {"token": secrets.token_hex(16)}),
                ("ballast-feedback", {"token": self.feedback_token}),
            ):
                self.core.create_namespaced_secret(NAMESPACE, {"metadata": {"name": name}, "stringData": data})
            # The local cluster's pods are host processes sharing ports: each listens on its own address.
            chart, listen = str(REPO / "charts" / "ballast"), "listenAddress=$(POD_IP)"
            self.helm("install", "ballast", chart, "-n", NAMESPACE, "--set", listen, "--wait", "--timeout", "180s")
            say("   " + self.kubectl("get", "pods", "-l", "app.kubernetes.io/component=operator").splitlines()[-1])

    def data(self) -> BaseModelRef:
        from minio import Minio

        s = self.settings
        with stage(self.report, f"Data: {s.anchor} original documents, {s.test} held out; base model base_v1"):
            keys = (self.info.minio_access_key, self.info.minio_secret_key)
            Minio(self.info.minio_endpoint, *keys, secure=False).make_bucket(BUCKET)
            self.store = ObjectStore(self.info.minio_endpoint, *keys, BUCKET, secure=False)
            write_anchor(self.store, train=s.anchor, test=s.test, size=s.imgsz)
            base = put_base(self.store)
            recipe = {**SEED_RECIPE, "epochs": s.epochs, "freeze": s.freeze}
            differs = {k: v for k, v in recipe.items() if SEED_RECIPE[k] != v}
            say(f"   recipe: {recipe}" + (f" (differs from the seed's: {differs})" if differs else " (the seed's)"))
            self.recipe = recipe
            self.apply_pool(base)
        return base

    def serve(self, base: BaseModelRef) -> None:
        s = self.settings
        with stage(self.report, "Serving base_v1 (ballast-trainer serve, moved by a ModelRelease)"):
            values = {
                "serve.enabled": "true",
                "serve.pool": POOL,
                "serve.imgsz": str(s.imgsz),
                "serve.name": RELEASE,
                "serve.release": RELEASE,
                "serve.objectStore.endpoint": self.info.minio_endpoint,
                "serve.objectStore.secure": "false",  # the local MinIO speaks plain HTTP
            }
            sets = [arg for key, value in values.items() for arg in ("--set", f"{key}={value}")]
            chart = str(REPO / "charts" / "ballast")
            # The release first: it writes base_v1 into its ConfigMap, which the serve pods read.
            self.apply_release("base_v1")
            self.helm(
                "upgrade", "ballast", chart, "-n", NAMESPACE, "--reuse-values", *sets, "--wait", "--timeout", "240s"
            )
            wait("release of base_v1", lambda: self.release_status().get("phase") == "Released", 240)
            self.serve_url = self.ready_serving_pod()
            say(f"   {RELEASE} serves base_v1 at {self.serve_url}")

    def feedback_and_review(self, count: int) -> None:
        first, self.next_document = self.next_document, self.next_document + count
        documents = range(first, self.next_document)
        with stage(self.report, f"Users report {count} failures; a reviewer labels them and imports the export"):
            for index in documents:
                page = render("modern", 8000 + index, self.settings.imgsz)
                url = f"{self.serve_url}/feedback?documentId=DOC-{index:05d}&reportedBy=customer-{index % 7}"
                http("POST", url, page.png(), self.feedback_token)
            export = Path(tempfile.mkdtemp(prefix="ballast-review-"))
            (export / "images").mkdir()
            (export / "labels").mkdir()
            for index in documents:  # the reviewer's labels, in a Label Studio YOLO export
                page = render("modern", 8000 + index, self.settings.imgsz)
                (export / "images" / f"DOC-{index:05d}.png").write_bytes(page.png())
                (export / "labels" / f"DOC-{index:05d}.txt").write_text(page.label_text())
            imported = self.ballast(
                "samples",
                "import",
                POOL,
                str(export),
                "--format",
                "label-studio",
                "--reviewed-by",
                "reviewer@example.com",
            )
            say("   " + imported.strip().splitlines()[-1])
            shutil.rmtree(export, ignore_errors=True)

    def fine_tune(self, number: int) -> str | None:
        """The pool's run `number`: wait for its verdict; release it if it passed. The released model."""
        run = f"{POOL}-run-{number}"
        started = time.monotonic()
        with stage(self.report, f"{run}: the seed's mix, fine-tuned from the base, gated"):
            wait(
                run,
                lambda: self.get("finetuneruns", run).get("status", {}).get("phase") in ("Succeeded", "Failed"),
                1800,
                3,
                progress=lambda: self.run_state(run),
            )
            status = self.get("finetuneruns", run)["status"]
            if status["phase"] != "Succeeded":
                raise RuntimeError(f"{run} failed: {status.get('message')}")
            plan = status["plan"]
            held = plan.get("heldOutSamples", 0)
            say(f"   plan: {plan['newSamples']} new (+{held} held out) + {plan['oldSamples']} old")
            say("   " + self.kubectl("get", "ftr", run).rstrip().replace("\n", "\n   "))
            model = status["model"]["version"]
            row = ModelRow.from_run(model, "mixed (seed's mix)", status, time.monotonic() - started)
            self.rows.append(row)
            report = GateReport.model_validate_json(self.store.get(self.store.relative(status["gates"]["reportUri"])))
            for condition in status["conditions"]:
                if condition["type"].startswith("Gate"):
                    say(f"   {condition['type']} {condition['reason']}: {condition['message']}")
            if self.base_row.map50 is None:  # every new document is unseen to the base
                self.base_row.detection_held_out = report.base_detection_rate
                self.base_row.map50 = status["gates"]["baseMap50"]
            self.last_run = run
        if status["verdict"] != "Pass" and not self.review(run, model, status, row):
            return None
        with stage(self.report, f"Release {model} through the ModelRelease"):
            self.patch_release(model)
            wait("release", lambda: self.serving() == model, 300)
            row.released = True
            row.fields_found_unseen = self.fields_found()
            found = row.fields_found_unseen
            say(f"   {RELEASE} serves {model}: it finds {found:.1f} of 8 fields on unseen new pages")
        return model

    def review(self, run: str, model: str, status: dict[str, Any], row: ModelRow) -> bool:
        """A person reads a Review from the operator's figures: approves it (in their own name) or
        not, saying why. A Reject is final."""
        gate2 = self.get("finetunepools", POOL)["spec"]["gates"]["newSamples"]
        decision = reviewer_decision(GateEvidence.model_validate(status["gates"]), float(gate2["minDetectionRate"]))
        if status["verdict"] == "Reject" or not decision.approve:
            row.note = f"not released ({status['verdict']}): " + decision.reason
            say(f"   {status['verdict']}: the reviewer does not approve {model}: {decision.reason}")
            return False
        say(f"   Review: the reviewer approves {model}: {decision.reason}")
        say("   " + self.ballast("runs", "approve", run, "--reason", decision.reason).strip())

        def approved() -> bool:
            conditions = self.get("finetuneruns", run).get("status", {}).get("conditions", [])
            return any(c["type"] == "Approved" and c["status"] == "True" for c in conditions)

        wait("the operator verifies the approval", approved, 120)
        row.note = "approved by a reviewer: " + decision.reason
        return True

    # ---- pieces ------------------------------------------------------------------------------------
    def run_state(self, name: str) -> str:
        status = self.get("finetuneruns", name).get("status", {})
        return f"{name}: {status.get('phase', 'Pending')} {status.get('message', '')}".strip()

    def serving(self) -> str | None:
        status = self.release_status()
        return status.get("currentModel") if status.get("phase") == "Released" else None

    def fields_found(self) -> float:
        """Fields (of 8) the served model finds on each unseen new-template page, on average."""
        self.serve_url = self.ready_serving_pod()
        found = []
        for seed in UNSEEN:
            _, body = http("POST", f"{self.serve_url}/predict", render("modern", seed, self.settings.imgsz).png())
            found.append(len({box["name"] for box in json.loads(body)["boxes"]}))
        return sum(found) / len(found)

    def apply_pool(self, base: BaseModelRef) -> None:
        s = self.settings
        training = {"epochs": s.epochs, "freeze": s.freeze, "imgsz": s.imgsz, "batch": 16, "gpus": 0}
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FineTunePool",
            "metadata": {"name": POOL},
            "spec": {
                "classes": list(CLASSES),
                "objectStore": {
                    "endpoint": self.info.minio_endpoint,
                    "secure": False,  # the local MinIO speaks plain HTTP
                    "bucket": BUCKET,
                    "credentialsSecretRef": {"name": "ballast-store"},
                },
                "anchor": {"trainManifest": TRAIN_MANIFEST, "testManifest": TEST_MANIFEST},
                "baseModel": base.to_wire(),
                "training": training,
                # The demo's anchor is a few hundred pages; the seed's table asks for 20x the new ones.
                # Allowed explicitly, the shortfall shows in the run's plan, Planned condition and events.
                "mixing": {"allowSmallerAnchor": True},
            },
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "finetunepools", body)

    def apply_release(self, model: str) -> None:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelRelease",
            "metadata": {"name": RELEASE},
            "spec": {"pool": POOL, "deployment": {"name": RELEASE, "container": "serve"}, "model": model},
        }
        self.custom.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "modelreleases", body)

    def patch_release(self, model: str) -> None:
        body = {"spec": {"model": model}}
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, NAMESPACE, "modelreleases", RELEASE, body)

    def ready_serving_pod(self) -> str:
        def ready() -> str | None:
            pods = self.core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=ballast-serve").items
            for pod in pods:
                if pod.metadata.deletion_timestamp is None and any(
                    c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
                ):
                    return f"http://{pod.status.pod_ip}:8000"
            return None

        return str(wait("a ready serving pod", ready, 240))

    def unmixed(self, run: str) -> ModelRow:
        """Train and gate the run's plan with its anchor draw removed: what the ballast prevents."""
        started = time.monotonic()
        body = self.get("finetuneruns", run)
        plan = RunPlan.model_validate_json(self.store.get(self.store.relative(body["status"]["plan"]["uri"])))
        lesson = plan.evolve(
            run="lesson-no-anchor",
            old_samples=[],
            serving_model=None,
            mixing_rule="no old data (what the seed forbids)",
        )
        files = layout.RunArtifacts(lesson.run, lesson.run_uid)
        env = {**os.environ, **self.info.env()}
        env |= {
            "BALLAST_S3_ENDPOINT": self.info.minio_endpoint,
            "BALLAST_S3_SECURE": "false",  # the local MinIO speaks plain HTTP
            "BALLAST_S3_ACCESS_KEY": self.info.minio_access_key,
            "BALLAST_S3_SECRET_KEY": self.info.minio_secret_key,
        }
        planned = put_plan(self.store, lesson)
        for stage_name in ("train", "gate"):
            say(f"   ballast-trainer {stage_name} (no anchor samples) ...")
            extra = ("--unmixed-experiment",) if stage_name == "train" else ()  # refused without it
            subprocess.run(trainer_argv(stage_name, planned, *extra), env=env, check=True, capture_output=True)
        report = GateReport.model_validate_json(self.store.get(files.gate_report))
        say(f"   verdict {report.verdict}: {report.gates[0].reason}")
        return ModelRow(
            model="no anchor",
            role="failures only",
            new_samples=len(lesson.new_samples),
            held_out=len(lesson.held_out_samples),
            old_samples=0,
            map50=report.candidate_map50,
            map50_drop=report.map50_drop,
            detection_trained=report.trained_detection_rate,
            detection_held_out=report.held_out_detection_rate,
            detection_judged=report.detection_rate,
            gate1=report.gates[0].verdict,
            gate2=report.gates[1].verdict,
            verdict=report.verdict,
            seconds=time.monotonic() - started,
        )

    def summary(self) -> None:
        print_table(self.base_row, self.rows)
        print("\nTime per stage:")
        for title, seconds in self.report.stages:
            print(f"  {seconds:7.1f} s  {title}")
        print(f"  {sum(s for _, s in self.report.stages):7.1f} s  in all")
        write_json(Path("ballast-demo.json"), self.recipe, self.base_row, self.rows, self.report.stages)
        say(f"summary written to {Path('ballast-demo.json').resolve()}")
        if plot(Path("ballast-demo.png"), self.base_row, self.rows):
            say(f"plot written to {Path('ballast-demo.png').resolve()}")

    def print_keep(self) -> None:
        env = " ".join(f"{k}={v}" for k, v in self.info.env().items() if k == "KUBECONFIG")
        print(
            f"\nThe cluster is still up. Explore it:\n  export {env}\n  export PATH={build.cache_dir() / 'links'}:$PATH"
            f"\n  kubectl -n {NAMESPACE} get ftp,ftr,mrel\n  kubectl -n {NAMESPACE} describe ftr {POOL}-run-1"
            f"\n  .venv/bin/ballast status -n {NAMESPACE}\n  .venv/bin/ballast-dev cluster logs POD -n {NAMESPACE}"
            f"\nStop it with: .venv/bin/ballast-dev cluster --state-dir {self.info.state_dir} down"
        )
