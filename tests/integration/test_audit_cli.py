"""`ballast samples sample-audit` builds the Gate 3 audit set in the real object store: what it writes
is what the gate reads, and it refuses documents a model may have trained on."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from ballast.api import layout
from ballast.api.contracts import digest_bytes
from ballast.api.samples import parse_manifest
from ballast_dev.synth import CLASSES, render
from ballast_dev.testing.datasets import TRAIN_MANIFEST

from .test_operator import start_pool
from .test_samples_cli import ballast


def labelled_folder(root: Path, count: int, first_seed: int = 100) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(count):
        page = render("modern", first_seed + index)
        (root / "images" / f"p{index:03}.png").write_bytes(page.png())
        (root / "labels" / f"p{index:03}.txt").write_text(page.label_text())
    return root


def line_after(stdout: str, prefix: str) -> str:
    return next(line.strip()[len(prefix) :] for line in stdout.splitlines() if line.strip().startswith(prefix))


def audit_keys(pool_store) -> list[str]:
    return list(pool_store.list(layout.audit_prefix("invoices")))


def test_sample_audit_builds_a_100_document_set_the_gate_reads_and_the_pool_accepts(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    start_pool(kube, cluster, namespace, pool_store)
    folder = labelled_folder(tmp_path / "reviewed", 110)
    (folder / "images" / "copy.png").write_bytes((folder / "images" / "p000.png").read_bytes())
    (folder / "labels" / "copy.txt").write_text((folder / "labels" / "p000.txt").read_text())
    (folder / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "labels" / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (folder / "images" / "unlabelled.png").write_bytes(render("modern", 999).png())

    args = ("samples", "sample-audit", "invoices", "--from", str(folder), "--reviewed-by", "ana")
    too_many = ballast(cluster, namespace, *args, "--count", "111", "--seed", "7")
    assert too_many.returncode == 1
    assert "only 110 distinct reviewed documents qualify, fewer than --count 111" in too_many.stderr
    assert audit_keys(pool_store) == []

    built = ballast(cluster, namespace, *args, "--seed", "7")  # --count defaults to the seed's 100
    assert built.returncode == 0, built.stderr
    assert "broken.png" in built.stderr and "not a decodable image" in built.stderr
    assert "unlabelled.png: no label file" in built.stderr
    assert "images/p000.png has the same image as images/copy.png; counted once" in built.stderr
    key = line_after(built.stdout, "manifest: ")
    text = pool_store.get(key).decode()
    assert "seed 7" in text and "reviewed by ana" in text
    refs = parse_manifest(text, key)  # exactly as the gate reads gates.abComparison.auditManifest
    assert len(refs) == 100 and len({ref.image_digest for ref in refs}) == 100
    for ref in refs:
        assert ref.image.startswith(layout.audit_prefix("invoices"))
        assert digest_bytes(pool_store.get(ref.image)) == ref.image_digest
        assert digest_bytes(pool_store.get(ref.label)) == ref.label_digest
    assert len(audit_keys(pool_store)) == 201  # 100 images, 100 labels, the manifest
    assert list(pool_store.list(layout.samples_prefix("invoices"))) == []  # nothing entered the pool

    again = ballast(cluster, namespace, *args, "--seed", "7")
    assert again.returncode == 0 and "already built" in again.stdout
    assert line_after(again.stdout, "manifest: ") == key

    # The printed kubectl line, run as printed, sets the pool's Gate 3.
    patch = next(line for line in built.stdout.splitlines() if line.strip().startswith("kubectl "))
    env = {**os.environ, "KUBECONFIG": cluster.kubeconfig}
    subprocess.run(shlex.split(patch), check=True, capture_output=True, env=env)
    spec = _pool_spec(kube, namespace)
    assert spec["gates"]["abComparison"]["enabled"] is True
    assert spec["gates"]["abComparison"]["auditManifest"] == key


def _pool_spec(kube, namespace: str) -> dict:
    from kubernetes import client

    body = client.CustomObjectsApi(kube).get_namespaced_custom_object(
        "ballast.dev", "v1alpha1", namespace, "finetunepools", "invoices"
    )
    return body["spec"]


def test_sample_audit_refuses_a_set_holding_an_image_the_pool_trains_on(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    start_pool(kube, cluster, namespace, pool_store)
    folder = labelled_folder(tmp_path / "reviewed", 12)
    added = ballast(
        cluster,
        namespace,
        "samples",
        "add",
        "invoices",
        "--image",
        str(folder / "images" / "p005.png"),
        "--labels",
        str(folder / "labels" / "p005.txt"),
        "--reviewed-by",
        "ana",
        "--id",
        "trained-on",
    )
    assert added.returncode == 0, added.stderr
    anchor = parse_manifest(pool_store.get(TRAIN_MANIFEST).decode())[0]
    (folder / "images" / "anchor.png").write_bytes(pool_store.get(anchor.image))
    (folder / "labels" / "anchor.txt").write_bytes(pool_store.get(anchor.label))

    refused = ballast(cluster, namespace, "samples", "sample-audit", "invoices", "--from", str(folder), "--count", "10")
    assert refused.returncode != 0 and "--reviewed-by is required" in refused.stderr
    refused = ballast(
        cluster,
        namespace,
        "samples",
        "sample-audit",
        "invoices",
        "--from",
        str(folder),
        "--count",
        "10",
        "--reviewed-by",
        "ana",
    )
    assert refused.returncode == 1
    assert "refused images/p005.png: its image is already a sample in pool invoices" in refused.stderr
    assert f"refused images/anchor.png: its image is in the anchor train set ({TRAIN_MANIFEST})" in refused.stderr
    assert "nothing was written" in refused.stderr
    assert audit_keys(pool_store) == []


def test_sample_audit_from_the_inbox_draws_a_labelling_folder_that_becomes_a_set(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    from datetime import UTC, datetime, timedelta

    start_pool(kube, cluster, namespace, pool_store)
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    pages = [render("modern", 300 + index).png() for index in range(6)]
    pages.append(pages[0])  # the same page reported twice counts once
    for index, png in enumerate(pages):
        item = layout.inbox_item("invoices", moment + timedelta(seconds=index), f"doc{index}")
        pool_store.put(f"{item}/image.png", png)
        report = f'{{"documentId": "doc{index}", "reportedBy": "u", "imageFile": "image.png"}}'
        pool_store.put(f"{item}/report.json", report.encode())
    broken = layout.inbox_item("invoices", moment + timedelta(minutes=1), "gone")
    pool_store.put(f"{broken}/report.json", b'{"documentId": "gone", "imageFile": "image.jpg"}')
    out = tmp_path / "to-label"
    drawn = ballast(
        cluster, namespace, "samples", "sample-audit", "invoices", "--from", "inbox", "--out", str(out), "--count", "7"
    )
    assert drawn.returncode == 1 and "only 6 usable documents" in drawn.stderr
    assert "-gone: StoreRefused" in drawn.stderr  # its image never arrived: skipped, saying so
    assert not out.exists()
    drawn = ballast(
        cluster, namespace, "samples", "sample-audit", "invoices", "--from", "inbox", "--out", str(out), "--count", "5"
    )
    assert drawn.returncode == 0, drawn.stderr
    images = sorted((out / "images").iterdir())
    assert len(images) == 5 and len({digest_bytes(p.read_bytes()) for p in images}) == 5
    assert list((out / "labels").iterdir()) == []  # a person labels them; nothing is guessed
    assert (out / "classes.txt").read_text().split() == list(CLASSES)
    readme = (out / "README.md").read_text()
    assert "failures, not random production traffic" in readme and "stay out of the pool" in readme

    unlabelled = ballast(
        cluster,
        namespace,
        "samples",
        "sample-audit",
        "invoices",
        "--from",
        str(out),
        "--count",
        "5",
        "--reviewed-by",
        "ana",
    )
    assert unlabelled.returncode == 1 and "no document qualifies" in unlabelled.stderr
    for image in images[:4]:
        (out / "labels" / (image.stem + ".txt")).write_text("0 0.5 0.5 0.2 0.1\n")
    built = ballast(
        cluster,
        namespace,
        "samples",
        "sample-audit",
        "invoices",
        "--from",
        str(out),
        "--count",
        "5",
        "--allow-fewer",
        "--reviewed-by",
        "ana",
    )
    assert built.returncode == 0, built.stderr
    assert "only 4 documents, fewer than --count 5" in built.stdout
    refs = parse_manifest(pool_store.get(line_after(built.stdout, "manifest: ")).decode())
    assert {ref.image_digest for ref in refs} == {digest_bytes(p.read_bytes()) for p in images[:4]}
