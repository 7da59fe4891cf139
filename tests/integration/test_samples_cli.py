"""`ballast samples` refuses bad or unreviewed samples with the field at fault, and writes nothing for them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ballast.adapters.pool import list_index, list_sample_ids
from ballast.api import layout
from ballast_dev.synth import CLASSES, render

from .test_operator import start_pool

BALLAST = str(Path(sys.executable).parent / "ballast")


def ballast(cluster, namespace: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BALLAST, *args, "-n", namespace],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
    )


def test_samples_add_and_import_validate_every_sample(kube, namespace, store_secret, pool_store, cluster, tmp_path):
    start_pool(kube, cluster, namespace, pool_store)
    page = render("modern", 1)
    (tmp_path / "good.png").write_bytes(page.png())
    (tmp_path / "good.txt").write_text(page.label_text())
    added = ballast(
        cluster,
        namespace,
        "samples",
        "add",
        "invoices",
        "--image",
        str(tmp_path / "good.png"),
        "--labels",
        str(tmp_path / "good.txt"),
        "--reviewed-by",
        "ana",
    )
    assert added.returncode == 0, added.stderr
    assert list(list_sample_ids(pool_store, "invoices")) == ["good"]

    (tmp_path / "bad.txt").write_text(f"{len(CLASSES)} 0.5 0.5 0.1 0.1\n")
    out_of_range = ballast(
        cluster,
        namespace,
        "samples",
        "add",
        "invoices",
        "--image",
        str(tmp_path / "good.png"),
        "--labels",
        str(tmp_path / "bad.txt"),
        "--reviewed-by",
        "ana",
        "--id",
        "bad",
    )
    assert out_of_range.returncode == 1
    assert "line 1: class 8 is out of range 0..7" in out_of_range.stderr
    unreviewed = ballast(
        cluster,
        namespace,
        "samples",
        "add",
        "invoices",
        "--image",
        str(tmp_path / "good.png"),
        "--labels",
        str(tmp_path / "good.txt"),
        "--reviewed-by",
        " ",
        "--id",
        "unreviewed",
    )
    assert unreviewed.returncode == 1 and "reviewedBy and reviewedAt are required" in unreviewed.stderr

    export = tmp_path / "export"
    (export / "images").mkdir(parents=True)
    (export / "labels").mkdir()
    for index in range(3):
        other = render("modern", 10 + index)
        (export / "images" / f"p{index}.png").write_bytes(other.png())
        (export / "labels" / f"p{index}.txt").write_text(other.label_text())
    (export / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (export / "labels" / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (export / "images" / "outside.png").write_bytes(render("modern", 20).png())
    (export / "labels" / "outside.txt").write_text("0 0.5 0.5 1.5 0.1\n")
    imported = ballast(
        cluster,
        namespace,
        "samples",
        "import",
        "invoices",
        str(export),
        "--format",
        "label-studio",
        "--reviewed-by",
        "ana",
    )
    assert imported.returncode == 1  # some were refused
    assert "imported 3 samples" in imported.stdout
    assert "broken.png" in imported.stderr and "not a decodable image" in imported.stderr
    assert "w 1.5 is outside [0, 1]" in imported.stderr
    assert sorted(list_sample_ids(pool_store, "invoices")) == ["good", "p0", "p1", "p2"]
    assert len(list_index(pool_store, "invoices")) == 4
    # Nothing at all was written for the refused ones.
    assert not [
        k
        for k in pool_store.list(layout.samples_prefix("invoices"))
        if "/bad/" in k or "/broken/" in k or "/outside/" in k or "/unreviewed/" in k
    ]
    rejected = list(pool_store.list(layout.rejections_prefix("invoices")))
    assert len(rejected) == 4
