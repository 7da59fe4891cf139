"""The review loop with an annotation tool: the inbox out as review tasks, the reviewed export back in.

    ballast inbox export POOL --format label-studio|cvat --out DIR [--again]
    ballast samples import POOL PATH --format label-studio-json|cvat-xml --reviewed-by NAME

`serve`'s /feedback leaves each failure report in `inbox/<pool>/` with the serving model's boxes.
The export writes review tasks (images, and those boxes as pre-annotations, so a reviewer corrects
instead of drawing) into DIR and marks each report exported, so the next export skips it. The
reviewed export comes back through `ballast samples import`: each page a person reviewed becomes a
sample that records who reviewed it and the report it came from; a page nobody reviewed is skipped.

Label Studio: create a project with DIR/label-config.xml as its labeling interface, import
DIR/tasks.json (images are referenced as `--image-url-prefix` + `images/<name>`: by default Label
Studio's local-files URL, with LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT set to DIR), review, export as
"JSON" into DIR. CVAT: create a task from DIR/images with the labels of DIR/annotations.xml, upload
DIR/annotations.xml as "CVAT 1.1", review (tag a page `ballast-reviewed` when its boxes were right
as they came), export "CVAT for images 1.1" and unpack its annotations.xml over DIR's.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image
from pydantic import ValidationError

from ballast.api import inbox, layout
from ballast.api.samples import SampleError
from ballast.cli.errors import UsageError
from ballast.policy import reviewtasks

if TYPE_CHECKING:
    from ballast.adapters.objectstore import ObjectStore
    from ballast.cli.people import ImportReport

EXPORT_FORMATS = ("label-studio", "cvat")
IMPORT_FORMATS = {"label-studio-json": "label-studio", "cvat-xml": "cvat"}  # --format -> the sample's labelSource
TASKS_FILE = "tasks.json"
CVAT_FILE = "annotations.xml"


def register(commands: argparse._SubParsersAction) -> None:
    verbs = commands.add_parser("inbox", help="failure reports from serving, out for review").add_subparsers(
        dest="verb", required=True
    )
    export = verbs.add_parser("export", help="the inbox's new reports as review tasks with the model's boxes")
    export.add_argument("pool")
    export.add_argument("--format", choices=EXPORT_FORMATS, required=True)
    export.add_argument("--out", type=Path, required=True, help="folder for the tasks and images (new or empty)")
    export.add_argument("--again", action="store_true", help="export reports that were exported before too")
    export.add_argument(
        "--image-url-prefix",
        default="/data/local-files/?d=",
        help="Label Studio: what goes before images/<name> in each task's image URL",
    )
    export.add_argument("-n", "--namespace", default=None)
    export.set_defaults(handler=_inbox_export)


# ---- export --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class InboxItem:
    key: str  # inbox/<pool>/<stamp>-<document id>
    report: inbox.FeedbackReport
    predictions: inbox.InboxPredictions | None

    @property
    def image_name(self) -> str:
        return inbox.item_name(self.key) + "." + self.report.image_file.rsplit(".", 1)[-1]


@dataclass
class ExportReport:
    exported: list[str] = field(default_factory=list)
    already_exported: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)  # item -> why


def read_item(store: ObjectStore, key: str) -> InboxItem:
    report = inbox.FeedbackReport.model_validate_json(store.get(inbox.item_file(key, inbox.REPORT)))
    predictions_key = inbox.item_file(key, inbox.PREDICTIONS)
    predictions = (
        inbox.InboxPredictions.model_validate_json(store.get(predictions_key))
        if store.exists(predictions_key)
        else None
    )
    return InboxItem(key, report, predictions)


def inbox_items(store: ObjectStore, pool: str) -> tuple[list[str], set[str]]:
    """The pool's complete inbox items (their report.json is written last), and those already exported."""
    items, exported = [], set()
    for key in store.list(layout.inbox_prefix(pool), recursive=True):
        item, _, file = key.rpartition("/")
        if file == inbox.REPORT:
            items.append(item)
        elif file == inbox.EXPORTED:
            exported.add(item)
    return sorted(items), exported


def export_inbox(
    store: ObjectStore, pool: str, classes: list[str], out: Path, fmt: str, again: bool, url_prefix: str
) -> ExportReport:
    """Write the review tasks for every report not exported yet (all with `again`), then mark them."""
    keys, exported = inbox_items(store, pool)
    result = ExportReport(already_exported=0 if again else len(set(keys) & exported))
    chosen: list[tuple[InboxItem, tuple[int, int]]] = []
    for key in keys:
        if key in exported and not again:
            continue
        try:
            item = read_item(store, key)
            image = store.get(inbox.item_file(key, item.report.image_file))
            with Image.open(io.BytesIO(image)) as opened:
                size = opened.size
        except (ValidationError, ValueError, OSError) as error:
            result.unreadable[key] = str(error).splitlines()[0]
            continue
        (out / "images").mkdir(parents=True, exist_ok=True)
        (out / "images" / item.image_name).write_bytes(image)
        chosen.append((item, size))
    if not chosen:
        return result
    if fmt == "label-studio":
        tasks = [
            reviewtasks.label_studio_task(
                f"{url_prefix}images/{item.image_name}",
                f"images/{item.image_name}",
                item.report,
                item.predictions,
                classes,
            )
            for item, _ in chosen
        ]
        (out / TASKS_FILE).write_text(json.dumps(tasks, indent=1))
        (out / "label-config.xml").write_text(reviewtasks.label_studio_config(classes))
    else:
        images = [
            reviewtasks.CvatImage(item.image_name, width, height, item.predictions) for item, (width, height) in chosen
        ]
        (out / CVAT_FILE).write_text(reviewtasks.cvat_annotations(images, classes, f"{pool} inbox"))
    # Marked only once the tasks are written: an export that fails part-way marks nothing.
    moment = datetime.now(UTC)
    for item, _ in chosen:
        mark = inbox.ExportMark(format=fmt, at=moment, to=str(out.resolve()))
        store.put(
            inbox.item_file(item.key, inbox.EXPORTED), mark.model_dump_json(by_alias=True).encode(), "application/json"
        )
        result.exported.append(item.key)
    return result


def _inbox_export(args: argparse.Namespace) -> int:
    from ballast.cli.people import _kube, _namespace, _pool

    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} must be a new or empty folder")
    _body, spec, store = _pool(_kube(), _namespace(args), args.pool)
    result = export_inbox(store, args.pool, spec.classes, out, args.format, args.again, args.image_url_prefix)
    for key, why in result.unreadable.items():
        print(f"skipped {key}: unreadable ({why})", file=sys.stderr)
    if not result.exported:
        hint = (
            f"; {result.already_exported} exported before (--again exports them again)"
            if result.already_exported
            else ""
        )
        print(f"nothing to export from the inbox of pool {args.pool}{hint}")
        return 0
    print(f"exported {len(result.exported)} reports of pool {args.pool} to {out} as {args.format} review tasks")
    return 0


# ---- import --------------------------------------------------------------------------------------
def export_files(path: Path, fmt: str) -> list[Path]:
    """The reviewed export: PATH itself, or in folder PATH every *.json but our tasks.json (Label
    Studio) or annotations.xml (CVAT)."""
    if path.is_file():
        return [path]
    if fmt == "cvat-xml":
        return [path / CVAT_FILE] if (path / CVAT_FILE).is_file() else []
    return sorted(p for p in path.glob("*.json") if p.name != TASKS_FILE)


def read_pages(file: Path, fmt: str, classes: list[str]) -> list[reviewtasks.ReviewedPage]:
    try:
        text = file.read_text(encoding="utf-8")
        if fmt == "cvat-xml":
            return reviewtasks.parse_cvat_export(text, classes)
        return reviewtasks.parse_label_studio_export(json.loads(text), classes)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SampleError(f"{file}: cannot be read as {fmt} ({error})") from None
    except reviewtasks.ReviewFormatError as error:
        raise SampleError(f"{file}: {error}") from None


def page_image(root: Path, name: str) -> Path:
    """The page's image inside the export's folder (never outside it)."""
    candidate = (root / name).resolve()
    if candidate.is_relative_to(root.resolve()) and candidate.is_file():
        return candidate
    return root / "images" / Path(name).name


def original_report(store: ObjectStore, pool: str, sample_id: str) -> inbox.FeedbackReport | None:
    key = inbox.item_file(layout.inbox_prefix(pool) + sample_id, inbox.REPORT)
    try:
        return inbox.FeedbackReport.model_validate_json(store.get(key)) if store.exists(key) else None
    except (ValidationError, ValueError):
        return None


def import_reviewed(
    store: ObjectStore, pool: str, classes: list[str], path: Path, fmt: str, args: argparse.Namespace
) -> ImportReport:
    """Add each reviewed page of a Label Studio / CVAT export as a sample, recording its reviewer (the
    tool's, else --reviewed-by) and the report it came from; skip the pages nobody reviewed."""
    from ballast.adapters.pool import IndexedIds, NewSample, SampleExists, add_sample
    from ballast.cli.people import ImportReport

    report = ImportReport()
    indexed = IndexedIds(store, pool)
    files = export_files(path, fmt)
    if not files:
        raise SampleError(f"no {fmt} export found at {path}")
    for file in files:
        for page in read_pages(file, fmt, classes):
            image = page_image(file.parent, page.image)
            sample_id = Path(page.image).stem
            if not page.reviewed:
                report.skipped.append(sample_id)
                continue
            if page.error:
                report.refused[image.name] = page.error
                continue
            original = original_report(store, pool, sample_id)
            stamp = datetime.now(UTC)
            try:
                data = image.read_bytes()
            except OSError as error:
                report.refused[image.name] = f"image {image}: cannot be read ({error.strerror or error})"
                continue
            sample = NewSample(
                sample_id=sample_id,
                image=data,
                labels=page.labels,
                document_id=original.document_id if original else sample_id,
                reported_by=original.reported_by if original else args.reported_by,
                reported_at=_reported_at(original) or stamp,
                reviewed_by=page.reviewer or args.reviewed_by.strip() or None,
                reviewed_at=stamp,
                label_source=IMPORT_FORMATS[fmt],  # type: ignore[arg-type]
            )
            try:
                report.added.append(add_sample(store, pool, sample, len(classes), indexed).id)
            except SampleExists:
                report.already_there.append(sample_id)
            except SampleError as error:
                report.refused[image.name] = str(error)
    return report


def _reported_at(report: inbox.FeedbackReport | None) -> datetime | None:
    if report is None:
        return None
    try:
        return datetime.strptime(report.reported_at, "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
    except ValueError:
        return None
