"""`ballast-dev demo`: the whole continuous fine-tuning loop on the local cluster, start to finish.

 1. Start the local cluster; install the operator with the Helm chart.
 2. Write the anchor set (classic documents) and the base model base_v1 to MinIO.
 3. Serve base_v1 (`ballast-trainer serve`, a Deployment moved by a ModelRelease).
 4. Production shifts to a new template: predictions degrade; users report failures (/feedback).
 5. A reviewer labels the failures and imports them (`ballast samples import --reviewed-by`).
 6. At 50 verified samples the pool starts a run: the seed's mix, fine-tuned from the base, gated.
 7. The ModelRelease moves the Deployment (a Review verdict is approved with `ballast runs approve`).
 8. A rollback, then the lesson: the same failures without the old data, and Gate 1 rejects it.
A summary table (and a PNG plot) closes it. `--quick` trains for one epoch (what CI runs).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.common import BaseModelRef
from ballast.api.contracts import GateReport, RunPlan
from ballast_dev import REPO
from ballast_dev.cluster import build, plane
from ballast_dev.synth import CLASSES, render
from ballast_dev.testing.datasets import TEST_MANIFEST, TRAIN_MANIFEST, put_base, write_anchor
from ballast_dev.testing.trainer import put_plan, trainer_argv

ROOT = REPO
NAMESPACE = "ballast-demo"
BUCKET = "ballast-demo"
POOL = "invoices"
RELEASE = "invoices-detector"
GROUP, VERSION = "ballast.dev", "v1alpha1"


@dataclass
class Settings:
    quick: bool
    keep: bool
    state_dir: Path | None
    anchor: int = 300
    test: int = 60
    failures: int = 50
    epochs: int = 10
    imgsz: int = 256

    def __post_init__(self) -> None:
        if self.quick:
            self.anchor, self.test, self.epochs = 80, 24, 1


@dataclass
class Report:
    stages: list[tuple[str, float]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextmanager
def stage(report: Report, title: str):  # type: ignore[no-untyped-def]
    say(f"== {title}")
    started = time.monotonic()
    yield
    seconds = time.monotonic() - started
    report.stages.append((title, seconds))
    say(f"   done in {seconds:.0f} s")


def wait(
    what: str, check: Callable[[], Any], timeout: float, every: float = 2.0, progress: Callable[[], str] | None = None
) -> Any:
    deadline, last = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        if progress:
            line = progress()
            if line != last:
                say(f"   {line}")
                last = line
        time.sleep(every)
    raise TimeoutError(f"{what}: not done after {timeout:.0f} s")


def http(method: str, url: str, body: bytes | None = None, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=60) as response:
        return response.status, response.read()


class Demo:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.report = Report()
        self.bin = Path(sys.executable).parent

    # ---- helpers -----------------------------------------------------------------------------------
    def kubectl(self, *args: str) -> str:
        out = subprocess.run(
            [str(build.binary("kubectl")), "--kubeconfig", self.info.kubeconfig, "-n", NAMESPACE, *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout

    def ballast(self, *args: str) -> str:
        out = subprocess.run(
            [str(self.bin / "ballast"), *args, "-n", NAMESPACE],
            capture_output=True,
            text=True,
            env={**os.environ, "KUBECONFIG": self.info.kubeconfig},
            check=False,
        )
        if out.returncode not in (0, 1):
            raise RuntimeError(out.stderr)
        return out.stdout + out.stderr

    def get(self, plural: str, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural, name))
        except ApiException as error:
            if error.status == 404:
                return {}
            raise

    def run_state(self, name: str) -> str:
        status = self.get("finetuneruns", name).get("status", {})
        return f"{name}: {status.get('phase', 'Pending')} {status.get('message', '')}".strip()

    # ---- the story ---------------------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        state = s.state_dir or Path(tempfile.mkdtemp(prefix="ballast-demo-"))
        with stage(self.report, "Local cluster: etcd, kube-apiserver, controllers, node agent, MinIO"):
            self.info = plane.up(state, log=say)
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
        from kubernetes import client, config
        from minio import Minio

        s = self.settings
        configuration = client.Configuration()
        config.load_kube_config(self.info.kubeconfig, client_configuration=configuration)
        api = client.ApiClient(configuration)
        self.custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
        from ballast_dev.testing.kube import install_crds

        with stage(self.report, "Install: CRDs and the operator (Helm chart)"):
            install_crds(api, ROOT / "crds")
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            core.create_namespaced_secret(
                NAMESPACE,
                {
                    "metadata": {"name": "ballast-store"},
                    "stringData": {"accessKey": self.info.minio_access_key, "secretKey": self.info.minio_secret_key},
                },
            )
            core.create_namespaced_secret(
                NAMESPACE, {"metadata": {"name": "ballast-webhook"}, "stringData": {"token": secrets.token_hex(16)}}
            )
            self.feedback_token = secrets.token_hex(16)
            core.create_namespaced_secret(
                NAMESPACE, {"metadata": {"name": "ballast-feedback"}, "stringData": {"token": self.feedback_token}}
            )
            subprocess.run(
                [
                    str(build.binary("helm")),
                    "--kubeconfig",
                    self.info.kubeconfig,
                    "install",
                    "ballast",
                    str(ROOT / "charts" / "ballast"),
                    "-n",
                    NAMESPACE,
                    "--wait",
                    "--timeout",
                    "180s",
                ],
                check=True,
                capture_output=True,
            )
            say("   " + self.kubectl("get", "pods", "-l", "app.kubernetes.io/component=operator").splitlines()[-1])

        with stage(self.report, f"Data: {s.anchor} anchor documents, {s.test} held out; base model base_v1"):
            Minio(
                self.info.minio_endpoint, self.info.minio_access_key, self.info.minio_secret_key, secure=False
            ).make_bucket(BUCKET)
            store = ObjectStore(
                self.info.minio_endpoint, self.info.minio_access_key, self.info.minio_secret_key, BUCKET
            )
            write_anchor(store, train=s.anchor, test=s.test, size=s.imgsz)
            base = put_base(store)
            self.store = store
            self.apply_pool(base)

        with stage(self.report, "Serving base_v1 (ballast-trainer serve, moved by a ModelRelease)"):
            subprocess.run(
                [
                    str(build.binary("helm")),
                    "--kubeconfig",
                    self.info.kubeconfig,
                    "upgrade",
                    "ballast",
                    str(ROOT / "charts" / "ballast"),
                    "-n",
                    NAMESPACE,
                    "--reuse-values",
                    "--set",
                    "serve.enabled=true",
                    "--set",
                    f"serve.pool={POOL}",
                    "--set",
                    f"serve.imgsz={s.imgsz}",
                    "--set",
                    "serve.name=invoices-detector",
                    "--set",
                    f"serve.release={RELEASE}",
                    "--set",
                    f"serve.objectStore.endpoint={self.info.minio_endpoint}",
                    "--set",
                    "serve.initialModel.version=base_v1",
                    "--set",
                    f"serve.initialModel.uri={base.uri}",
                    "--set",
                    f"serve.initialModel.digest={base.digest}",
                    "--wait",
                    "--timeout",
                    "240s",
                ],
                check=True,
                capture_output=True,
            )
            self.apply_release("base_v1")
            wait(
                "release of base_v1",
                lambda: self.get("modelreleases", RELEASE).get("status", {}).get("phase") == "Released",
                240,
            )
            serve_url = self.serve_url(core)
            say(f"   {RELEASE} serves base_v1 at {serve_url}")

        with stage(self.report, "Production shifts to a new template; users report failures"):
            found = []
            for seed in range(10):
                _, body = http("POST", f"{serve_url}/predict", render("modern", 7000 + seed, s.imgsz).png())
                found.append(len({b["name"] for b in json.loads(body)["boxes"]}))
            _, body = http("POST", f"{serve_url}/predict", render("classic", 7000, s.imgsz).png())
            say(
                f"   base_v1 finds {sum(found) / len(found):.1f} of 8 fields on the new template "
                f"({len({b['name'] for b in json.loads(body)['boxes']})} of 8 on the old one)"
            )
            for index in range(s.failures):
                page = render("modern", 8000 + index, s.imgsz)
                http(
                    "POST",
                    f"{serve_url}/feedback?documentId=DOC-{index:05d}&reportedBy=customer-{index % 7}",
                    page.png(),
                    self.feedback_token,
                )
            inbox = [k for k in store.list(layout.inbox_prefix(POOL)) if k.endswith("report.json")]
            say(f"   {len(inbox)} failure reports in {layout.inbox_prefix(POOL)} (never straight into the pool)")

        with stage(self.report, "Review: a person labels the reports; `ballast samples import --reviewed-by`"):
            export = Path(tempfile.mkdtemp(prefix="ballast-review-"))
            (export / "images").mkdir()
            (export / "labels").mkdir()
            for key in inbox:
                report = json.loads(store.get(key))
                index = int(report["documentId"].split("-")[1])
                page = render("modern", 8000 + index, s.imgsz)  # the reviewer's labels, in a Label Studio export
                (export / "images" / f"{report['documentId']}.png").write_bytes(
                    store.get(key.rsplit("/", 1)[0] + "/" + report["imageFile"])
                )
                (export / "labels" / f"{report['documentId']}.txt").write_text(page.label_text())
            say(
                "   "
                + self.ballast(
                    "samples",
                    "import",
                    POOL,
                    str(export),
                    "--format",
                    "label-studio",
                    "--reviewed-by",
                    "reviewer@example.com",
                )
                .strip()
                .splitlines()[-1]
            )
            shutil.rmtree(export, ignore_errors=True)

        run = f"{POOL}-run-1"
        with stage(self.report, "The pool reaches 50: a run mixes, fine-tunes from the base, and gates"):
            wait(
                "the run",
                lambda: self.get("finetuneruns", run).get("status", {}).get("phase") in ("Succeeded", "Failed"),
                1800,
                3,
                progress=lambda: self.run_state(run),
            )
            status = self.get("finetuneruns", run)["status"]
            plan = status.get("plan", {})
            say(
                f"   plan: {plan.get('newSamples')} new + {plan.get('oldSamples')} old ({plan.get('rule')}), "
                f"seed {plan.get('seed')}"
            )
            say("   " + self.kubectl("get", "ftr").rstrip().replace("\n", "\n   "))
            if status["phase"] != "Succeeded":
                raise RuntimeError(f"{run} failed: {status.get('message')}")
            self.add_row("mixed fine-tune (seed recipe)", status)

        model = status["model"]["version"]
        with stage(self.report, f"Release {model} through the ModelRelease"):
            self.patch_release(model)
            if status["verdict"] == "Review":
                time.sleep(3)
                say(f"   blocked: {self.get('modelreleases', RELEASE).get('status', {}).get('message')}")
                say(
                    "   "
                    + self.ballast(
                        "runs",
                        "approve",
                        run,
                        "--reason",
                        "new template: Gate 2 gap accepted for this release",
                    ).strip()
                )
            if status["verdict"] == "Reject":
                time.sleep(3)
                say(f"   blocked: {self.get('modelreleases', RELEASE).get('status', {}).get('message')}")
            else:
                wait(
                    "release",
                    lambda: self.get("modelreleases", RELEASE).get("status", {}).get("currentModel") == model,
                    300,
                )
                say(f"   {RELEASE} now serves {model}")
                _, body = http("POST", f"{self.serve_url(core)}/predict", render("modern", 7000, s.imgsz).png())
                say(
                    f"   on the new template it finds {len({b['name'] for b in json.loads(body)['boxes']})} of 8 fields"
                )

        with stage(self.report, "Rollback: `ballast release rollback`"):
            say("   " + self.ballast("release", "rollback", RELEASE).strip())
            wait(
                "rollback",
                lambda: (
                    self.get("modelreleases", RELEASE).get("status", {}).get("currentModel") == "base_v1"
                    and self.get("modelreleases", RELEASE).get("status", {}).get("phase") == "Released"
                ),
                300,
            )
            say(f"   {RELEASE} serves base_v1 again; ft models stay in models/ for a later roll forward")

        with stage(self.report, "The lesson: the same failures without the old data"):
            self.add_row("failures only, no anchor data", self.unmixed(run))

        self.summary()

    # ---- pieces ------------------------------------------------------------------------------------
    def apply_pool(self, base: BaseModelRef) -> None:
        s = self.settings
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "FineTunePool",
            "metadata": {"name": POOL},
            "spec": {
                "classes": list(CLASSES),
                "objectStore": {
                    "endpoint": self.info.minio_endpoint,
                    "bucket": BUCKET,
                    "credentialsSecretRef": {"name": "ballast-store"},
                },
                "anchor": {"trainManifest": TRAIN_MANIFEST, "testManifest": TEST_MANIFEST},
                "baseModel": base.to_wire(),
                "training": {"epochs": s.epochs, "imgsz": s.imgsz, "batch": 16, "gpus": 0},
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
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, "modelreleases", RELEASE, {"spec": {"model": model}}
        )

    def serve_url(self, core: Any) -> str:
        def ready() -> str | None:
            pods = core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/name=ballast-serve").items
            for pod in pods:
                if pod.metadata.deletion_timestamp is None and any(
                    c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []
                ):
                    return f"http://{pod.status.pod_ip}:8000"
            return None

        return str(wait("a ready serving pod", ready, 240))

    def unmixed(self, run: str) -> dict[str, Any]:
        """Train and gate the run's plan with its anchor draw removed: what the ballast prevents."""
        body = self.get("finetuneruns", run)
        plan = RunPlan.model_validate_json(self.store.get(self.store.relative(body["status"]["plan"]["uri"])))
        lesson = plan.evolve(run="lesson-no-anchor", old_samples=[], mixing_rule="no old data (what the seed forbids)")
        files = layout.RunArtifacts(lesson.run, lesson.run_uid)
        planned = put_plan(self.store, lesson)
        env = {
            **os.environ,
            "BALLAST_S3_ENDPOINT": self.info.minio_endpoint,
            "BALLAST_S3_ACCESS_KEY": self.info.minio_access_key,
            "BALLAST_S3_SECRET_KEY": self.info.minio_secret_key,
        }
        started = time.monotonic()
        for stage_name in ("train", "gate"):
            say(f"   ballast-trainer {stage_name} (no anchor samples) ...")
            subprocess.run(trainer_argv(stage_name, planned), env=env, check=True, capture_output=True)
        report = GateReport.model_validate_json(self.store.get(files.gate_report))
        say(f"   verdict {report.verdict}: {report.gates[0].reason}")
        return {
            "phase": "Succeeded",
            "verdict": report.verdict,
            "seconds": time.monotonic() - started,
            "plan": {"newSamples": len(lesson.new_samples), "oldSamples": 0},
            "gates": {
                "baseMap50": report.base_map50,
                "candidateMap50": report.candidate_map50,
                "map50Drop": report.map50_drop,
                "detectionRate": report.detection_rate,
                "gate1": report.gates[0].verdict,
                "gate2": report.gates[1].verdict,
            },
        }

    def add_row(self, label: str, status: dict[str, Any]) -> None:
        gates, plan = status.get("gates", {}), status.get("plan", {})
        self.report.rows.append(
            {
                "model": label,
                "new": plan.get("newSamples"),
                "old": plan.get("oldSamples"),
                "base_map50": gates.get("baseMap50"),
                "map50": gates.get("candidateMap50"),
                "drop": gates.get("map50Drop"),
                "detection": gates.get("detectionRate"),
                "gate1": gates.get("gate1"),
                "gate2": gates.get("gate2"),
                "verdict": status.get("verdict"),
            }
        )

    def summary(self) -> None:
        rows = self.report.rows
        print("\nResults on the original held-out test set (Gate 1) and the new documents (Gate 2):")
        header = (
            f"{'model':34} {'new':>4} {'old':>5} {'mAP50':>7} {'drop':>7} {'det.rate':>9} {'gate1':>7} "
            f"{'gate2':>7} {'verdict':>8}"
        )
        print(header)
        print(f"{'base_v1':34} {'':>4} {'':>5} {rows[0]['base_map50']:7.3f} {'':>7} {'':>9}")
        for r in rows:
            print(
                f"{r['model']:34} {r['new']:>4} {r['old']:>5} {r['map50']:7.3f} {r['drop']:7.2f} "
                f"{r['detection']:9.3f} {r['gate1']:>7} {r['gate2']:>7} {r['verdict']:>8}"
            )
        print("\nTime per stage:")
        for title, seconds in self.report.stages:
            print(f"  {seconds:7.1f} s  {title}")
        print(f"  {sum(s for _, s in self.report.stages):7.1f} s  in all")
        self.plot(Path("ballast-demo.png"))

    def plot(self, path: Path) -> None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            say("matplotlib is not installed: no plot")
            return
        rows = self.report.rows
        labels = ["base_v1", *[r["model"] for r in rows]]
        map50 = [rows[0]["base_map50"], *[r["map50"] for r in rows]]
        detection = [None, *[r["detection"] for r in rows]]
        figure, axes = plt.subplots(1, 2, figsize=(11, 4))
        axes[0].bar(labels, map50, color=["grey", "tab:green", "tab:red"][: len(labels)])
        axes[0].set_title("mAP50 on the original test set (Gate 1)")
        axes[0].set_ylim(0, 1)
        axes[1].bar(labels[1:], [d or 0 for d in detection[1:]], color=["tab:green", "tab:red"][: len(rows)])
        axes[1].axhline(0.8, linestyle="--", color="black", label="Gate 2 threshold")
        axes[1].set_title("Detection rate on the new documents (Gate 2)")
        axes[1].set_ylim(0, 1)
        axes[1].legend()
        for axis in axes:
            axis.tick_params(axis="x", labelrotation=12, labelsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=110)
        say(f"plot written to {path.resolve()}")

    def print_keep(self) -> None:
        env = " ".join(f"{k}={v}" for k, v in self.info.env().items() if k == "KUBECONFIG")
        print(
            f"\nThe cluster is still up. Explore it:\n  export {env}\n  export PATH={build.cache_dir() / 'links'}:$PATH"
            f"\n  kubectl -n {NAMESPACE} get ftp,ftr,mrel\n  kubectl -n {NAMESPACE} describe ftr {POOL}-run-1"
            f"\n  .venv/bin/ballast status -n {NAMESPACE}\n  .venv/bin/ballast-dev cluster logs POD -n {NAMESPACE}"
            f"\nStop it with: .venv/bin/ballast-dev cluster --state-dir {self.info.state_dir} down"
        )


def run(quick: bool, keep: bool, state_dir: Path | None) -> int:
    return Demo(Settings(quick=quick, keep=keep, state_dir=state_dir)).run()
