"""The review loop without hand work (seed section 6): reports from serve's /feedback go out as review
tasks with the model's boxes, a reviewer corrects them, and the review comes back as samples that
name the reviewer and the report. Against real MinIO and the real CLI; the annotation tools are
stood in for by their documented export formats (Label Studio's JSON export, "CVAT for images 1.1").
Label Studio itself (a 1 GB Django application) is exercised by test_label_studio_live.py when one
is given; CVAT (a multi-container server) is not run.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

from ballast.adapters.metrics import ServingMetrics
from ballast.adapters.pool import list_index, read_record
from ballast.api import inbox, layout
from ballast_dev.synth import CLASSES, render
from ballast_trainer.serve import Detection, ServingState

from .test_operator import start_pool
from .test_samples_cli import ballast


class PageModel:
    """Stands in for the serving model: it finds each page's true boxes, so the tasks carry them."""

    def __init__(self) -> None:
        self.names = dict(enumerate(CLASSES))
        self.boxes: list = []  # the page being reported

    def __call__(self, image) -> list[Detection]:
        w, h = image.size
        return [
            Detection(c, CLASSES[c], 0.9, ((x - bw / 2) * w, (y - bh / 2) * h, (x + bw / 2) * w, (y + bh / 2) * h))
            for c, x, y, bw, bh in self.boxes
        ]


def report_failures(store, seeds: list[int]) -> list[str]:
    """Three users report failures through serve's own /feedback code."""
    pages = [render("modern", seed) for seed in seeds]
    model = PageModel()
    state = ServingState("invoices", "v1.2", model, store, ServingMetrics())  # type: ignore[arg-type]
    items = []
    for number, page in enumerate(pages):
        model.boxes = page.boxes
        items.append(state.feedback(page.png(), f"DOC-{number}", f"user{number}"))
    return items


def test_inbox_reports_go_out_as_label_studio_tasks_and_come_back_as_reviewed_samples(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    start_pool(kube, cluster, namespace, pool_store)
    items = report_failures(pool_store, [31, 32, 33])
    predictions = inbox.InboxPredictions.model_validate_json(
        pool_store.get(inbox.item_file(items[0], inbox.PREDICTIONS))
    )
    assert predictions.model == "v1.2" and predictions.boxes  # serve stored what it found

    out = tmp_path / "review"
    exported = ballast(cluster, namespace, "inbox", "export", "invoices", "--format", "label-studio", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 reports" in exported.stdout
    tasks = json.loads((out / "tasks.json").read_text())
    assert len(tasks) == 3 and all(task["predictions"][0]["result"] for task in tasks)
    assert all((out / task["data"]["ballastImage"]).is_file() for task in tasks)
    assert all(pool_store.exists(inbox.item_file(item, inbox.EXPORTED)) for item in items)

    # The reviewer: moves a box on the first page, adds one on the second, leaves the third alone.
    first, second, third = tasks
    moved = json.loads(json.dumps(first["predictions"][0]["result"]))
    moved[0]["value"]["x"] = max(moved[0]["value"]["x"] - 2, 0)
    added = [*second["predictions"][0]["result"], {**second["predictions"][0]["result"][0], "id": "new"}]
    added[-1] = {**added[-1], "value": {**added[-1]["value"], "x": 1, "y": 1, "width": 5, "height": 5}}
    first["annotations"] = [{"id": 11, "completed_by": 7, "was_cancelled": False, "result": moved}]
    second["annotations"] = [{"id": 12, "completed_by": {"id": 3, "email": "bo@example.com"}, "result": added}]
    third["annotations"] = []
    (out / "project-1-at-2026-11-26.json").write_text(json.dumps(tasks))

    imported = ballast(
        cluster,
        namespace,
        "samples",
        "import",
        "invoices",
        str(out),
        "--format",
        "label-studio-json",
        "--reviewed-by",
        "x",
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 samples" in imported.stdout and "skipped 1 nobody reviewed" in imported.stdout
    names = [inbox.item_name(item) for item in items]
    assert sorted(layout.parse_index_key(k).sample_id for k in list_index(pool_store, "invoices")) == names[:2]
    one, two = read_record(pool_store, "invoices", names[0]), read_record(pool_store, "invoices", names[1])
    assert (one.reviewed_by, one.document_id, one.reported_by, one.label_source) == (
        "label-studio user 7",
        "DOC-0",
        "user0",
        "label-studio",
    )
    assert (two.reviewed_by, two.document_id, two.reported_by) == ("bo@example.com", "DOC-1", "user1")
    assert one.boxes == len(moved) and two.boxes == len(added)
    stored = pool_store.get(layout.sample_file("invoices", names[1], "label.txt")).decode()
    assert "0.035000 0.035000 0.050000 0.050000" in stored  # the box the reviewer drew

    again = ballast(
        cluster, namespace, "inbox", "export", "invoices", "--format", "label-studio", "--out", str(tmp_path / "again")
    )
    assert again.returncode == 0 and "nothing to export" in again.stdout and "3 exported before" in again.stdout
    assert not (tmp_path / "again").exists()


def test_inbox_reports_go_out_as_cvat_annotations_and_only_the_reviewed_images_come_back(
    kube, namespace, store_secret, pool_store, cluster, tmp_path
):
    start_pool(kube, cluster, namespace, pool_store)
    items = report_failures(pool_store, [41, 42])
    out = tmp_path / "review"
    exported = ballast(cluster, namespace, "inbox", "export", "invoices", "--format", "cvat", "--out", str(out))
    assert exported.returncode == 0, exported.stderr

    # The reviewer (assigned the job) corrects one box on the first image and never opens the second.
    tree = ElementTree.parse(out / "annotations.xml")
    first = tree.getroot().findall("image")[0]
    box = first.find("box")
    box.set("xtl", f"{float(box.get('xtl')) + 3:.2f}")
    box.set("source", "semi-auto")
    meta = tree.getroot().find("meta")
    job = ElementTree.SubElement(meta, "job")
    ElementTree.SubElement(ElementTree.SubElement(job, "assignee"), "username").text = "carla"
    tree.write(out / "annotations.xml", encoding="utf-8", xml_declaration=True)

    imported = ballast(
        cluster, namespace, "samples", "import", "invoices", str(out), "--format", "cvat-xml", "--reviewed-by", "x"
    )
    assert imported.returncode == 0, imported.stderr
    assert "imported 1 samples" in imported.stdout and "skipped 1 nobody reviewed" in imported.stdout
    name = inbox.item_name(items[0])
    assert [layout.parse_index_key(k).sample_id for k in list_index(pool_store, "invoices")] == [name]
    record = read_record(pool_store, "invoices", name)
    assert (record.reviewed_by, record.document_id, record.label_source) == ("carla", "DOC-0", "cvat")
    assert record.boxes == len(first.findall("box"))

    again = ballast(cluster, namespace, "inbox", "export", "invoices", "--format", "cvat", "--out", str(tmp_path / "2"))
    assert "nothing to export" in again.stdout
    rerun = ballast(
        cluster, namespace, "inbox", "export", "invoices", "--format", "cvat", "--out", str(tmp_path / "3"), "--again"
    )
    assert "exported 2 reports" in rerun.stdout
