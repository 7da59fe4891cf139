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


def add(cluster, namespace: str, image: Path, labels: Path, *extra: str) -> subprocess.CompletedProcess:
    return ballast(
        cluster,
        namespace,
        "samples",
        "add",
        "invoices",
        "--image",
        str(image),
        "--labels",
        str(labels),
        "--reviewed-by",
        "ana",
        *extra,
    )


def test_samples_add_refuses_a_missing_empty_or_unreadable_label_file_unless_the_page_has_no_objects(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    start_pool(kube, cluster, namespace, pool_store)
    page = render("modern", 2)
    image = tmp_path / "page.png"
    image.write_bytes(page.png())
    (tmp_path / "page.txt").write_text(page.label_text())
    (tmp_path / "empty.txt").write_text("\n")
    (tmp_path / "latin1.txt").write_bytes(b"0 0.5 0.5 0.1 0.1 \xe9\n")

    refusals = {
        "missing": add(cluster, namespace, image, tmp_path / "typo.txt", "--id", "missing"),
        "a folder": add(cluster, namespace, image, tmp_path, "--id", "folder"),
        "not utf-8": add(cluster, namespace, image, tmp_path / "latin1.txt", "--id", "latin1"),
        "empty": add(cluster, namespace, image, tmp_path / "empty.txt", "--id", "empty"),
        "boxes and --no-objects": add(cluster, namespace, image, tmp_path / "page.txt", "--id", "both", "--no-objects"),
    }
    for case, result in refusals.items():
        assert result.returncode != 0, case
        assert "--labels" in result.stderr or "--no-objects" in result.stderr, (case, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, (case, result.stderr)  # one line, no traceback
    assert "typo.txt" in refusals["missing"].stderr
    assert "--no-objects" in refusals["empty"].stderr
    assert list(list_sample_ids(pool_store, "invoices")) == []  # nothing of any of them was written
    assert list(pool_store.list(layout.samples_prefix("invoices"))) == []

    blank = add(cluster, namespace, image, tmp_path / "empty.txt", "--id", "blank", "--no-objects")
    assert blank.returncode == 0, blank.stderr
    assert "0 boxes" in blank.stdout
    assert list(list_sample_ids(pool_store, "invoices")) == ["blank"]


# A child process running the real CLI, killed (SIGKILL, no cleanup) right after it wrote sample.json
# and before the index key that makes the sample count.
KILLED_AFTER_SAMPLE_JSON = """
import os, signal, sys
from ballast.adapters.objectstore import ObjectStore
from ballast.cli.main import main

put = ObjectStore.put

def put_then_die(self, relative, data, content_type="application/octet-stream"):
    key = put(self, relative, data, content_type)
    if relative.endswith("/sample.json"):
        os.kill(os.getpid(), signal.SIGKILL)
    return key

ObjectStore.put = put_then_die
sys.exit(main(sys.argv[1:]))
"""


def test_a_retried_intake_completes_a_sample_killed_before_its_index_key_and_counts_it_once(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    from datetime import UTC, datetime

    from ballast.policy.finetunepool import count_index

    start_pool(kube, cluster, namespace, pool_store)
    page = render("modern", 3)
    image, labels = tmp_path / "p.png", tmp_path / "p.txt"
    image.write_bytes(page.png())
    labels.write_text(page.label_text())
    args = ["samples", "add", "invoices", "--image", str(image), "--labels", str(labels), "--reviewed-by", "ana"]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_AFTER_SAMPLE_JSON, *args, "-n", namespace],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "KUBECONFIG": cluster.kubeconfig},
    )
    assert killed.returncode == -9, killed.stderr
    assert pool_store.exists(layout.sample_file("invoices", "p", "sample.json"))
    assert list_index(pool_store, "invoices") == []  # half-written: it does not count yet
    killed_at = datetime.now(UTC)

    retried = add(cluster, namespace, image, labels)
    assert retried.returncode == 0, retried.stderr
    keys = list_index(pool_store, "invoices")
    assert len(keys) == 1 and layout.parse_index_key(keys[0]).sample_id == "p"
    # Stamped when it was completed, so a counting cursor that passed the first attempt still sees it.
    assert layout.parse_index_key(keys[0]).written_at >= killed_at
    assert count_index(keys, None, 0, datetime.now(UTC)).total == 1

    again = add(cluster, namespace, image, labels)
    assert again.returncode == 1 and "already in pool" in again.stderr
    (tmp_path / "other.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    changed = add(cluster, namespace, image, tmp_path / "other.txt", "--id", "p")
    assert changed.returncode == 1 and "immutable" in changed.stderr
    assert list_index(pool_store, "invoices") == keys  # still one key, the same one
    assert pool_store.get(layout.sample_file("invoices", "p", "label.txt")).decode() == page.label_text()
