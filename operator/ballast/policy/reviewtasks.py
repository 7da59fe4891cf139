"""Review tasks for the annotation tools, and their reviewed exports back as YOLO labels. Pure.

Label Studio: tasks carrying the serving model's boxes as `predictions` go out; its "JSON" export
(tasks with `annotations`) comes back. A rectangle is `x, y, width, height` of its top-left corner in
percent of the image. Formats as documented at https://labelstud.io/guide/task_format (the export,
`completed_by`, `was_cancelled`), https://labelstud.io/guide/predictions (pre-annotations) and
https://labelstud.io/tags/rectanglelabels (the result's `value`).

CVAT: "CVAT for images 1.1" XML both ways, as documented at https://docs.cvat.ai/docs/other/xml_format
(a `<box>` is `xtl ytl xbr ybr` in pixels with a `source`; `<tag>` marks a whole image). The model's
boxes go out with `source="auto"`; CVAT records a box a person drew as `manual` and one a person
corrected as `semi-auto`.

What counts as reviewed: in Label Studio, a submitted (not cancelled) annotation; predictions alone
are not. In CVAT, an image carrying the `ballast-reviewed` tag or any box a person drew or corrected.
An unreviewed page never becomes a sample: it would teach the model its own mistakes.
"""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from typing import Any

from ballast.api.inbox import FeedbackReport, InboxPredictions

FROM_NAME = "label"  # the RectangleLabels control in label_studio_config()
TO_NAME = "image"  # the Image object it labels
REVIEWED_TAG = "ballast-reviewed"
HUMAN_SOURCES = ("manual", "semi-auto")


class ReviewFormatError(ValueError):
    """An export that is not the format it claims to be; the message says where."""


@dataclass(frozen=True)
class ReviewedPage:
    """One page of a reviewed export. `labels` is YOLO text; `error` says why the page cannot be used."""

    image: str  # the image's path as the export names it (relative to the export's folder)
    reviewed: bool
    labels: str = ""
    reviewer: str | None = None
    error: str | None = None


# ---- coordinates ---------------------------------------------------------------------------------
YoloBox = tuple[float, float, float, float]  # x_center y_center width height, in [0, 1]


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)


def yolo_from_pixels(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> YoloBox:
    """A pixel box (corners), clipped to the image, as YOLO fractions."""
    x1, x2 = sorted((_clamp(x1, 0, width), _clamp(x2, 0, width)))
    y1, y2 = sorted((_clamp(y1, 0, height), _clamp(y2, 0, height)))
    return ((x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width, (y2 - y1) / height)


def pixels_from_yolo(box: YoloBox, width: int, height: int) -> tuple[float, float, float, float]:
    x, y, w, h = box
    return ((x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width, (y + h / 2) * height)


def yolo_from_percent(x: float, y: float, w: float, h: float) -> YoloBox:
    """Label Studio's rectangle (top-left corner and size, percent), clipped to the image, as YOLO."""
    x1, x2 = _clamp(x, 0, 100), _clamp(x + w, 0, 100)
    y1, y2 = _clamp(y, 0, 100), _clamp(y + h, 0, 100)
    return ((x1 + x2) / 200, (y1 + y2) / 200, (x2 - x1) / 100, (y2 - y1) / 100)


def percent_from_pixels(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> YoloBox:
    """A pixel box as Label Studio's x, y, width, height in percent."""
    cx, cy, w, h = yolo_from_pixels(x1, y1, x2, y2, width, height)
    return ((cx - w / 2) * 100, (cy - h / 2) * 100, w * 100, h * 100)


def yolo_line(cls: int, box: YoloBox) -> str:
    return f"{cls} " + " ".join(f"{v:.6f}" for v in box) + "\n"


def _class_index(name: str, classes: list[str], where: str) -> int:
    if name not in classes:
        raise ReviewFormatError(f"{where}: label {name!r} is not one of the pool's classes ({', '.join(classes)})")
    return classes.index(name)


# ---- Label Studio --------------------------------------------------------------------------------
def label_studio_config(classes: list[str]) -> str:
    """The labeling interface the exported tasks are made for (Settings -> Labeling Interface -> Code)."""
    labels = "".join(f'    <Label value="{_xml_attr(name)}"/>\n' for name in classes)
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}">\n{labels}  </RectangleLabels>\n'
        "</View>\n"
    )


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")


def label_studio_task(
    image_url: str,
    image_path: str,
    report: FeedbackReport,
    predictions: InboxPredictions | None,
    classes: list[str],
) -> dict[str, Any]:
    """One review task: the image, the report, and the model's boxes as a pre-annotation."""
    task: dict[str, Any] = {
        "data": {
            "image": image_url,
            "ballastImage": image_path,
            "documentId": report.document_id,
            "reportedBy": report.reported_by,
        }
    }
    if predictions is None:
        return task
    result = []
    for number, box in enumerate(predictions.boxes):
        if box.cls >= len(classes):
            continue
        x, y, w, h = percent_from_pixels(*box.box, predictions.image_width, predictions.image_height)
        result.append(
            {
                "id": f"p{number}",
                "type": "rectanglelabels",
                "from_name": FROM_NAME,
                "to_name": TO_NAME,
                "original_width": predictions.image_width,
                "original_height": predictions.image_height,
                "image_rotation": 0,
                "value": {
                    "x": x,
                    "y": y,
                    "width": w,
                    "height": h,
                    "rotation": 0,
                    "rectanglelabels": [classes[box.cls]],
                },
                "score": box.confidence,
            }
        )
    scores = [box.confidence for box in predictions.boxes if box.cls < len(classes)]
    task["predictions"] = [
        {"model_version": predictions.model, "score": min(scores) if scores else 0.0, "result": result}
    ]
    return task


def label_studio_reviewer(completed_by: Any) -> str | None:
    """Who submitted an annotation: the export gives a user id, or (some versions) the user itself."""
    if isinstance(completed_by, dict):
        for key in ("email", "username"):
            if completed_by.get(key):
                return str(completed_by[key])
        completed_by = completed_by.get("id")
    if isinstance(completed_by, bool) or completed_by is None or completed_by == "":
        return None
    return f"label-studio user {completed_by}"


def _submitted(annotations: Any) -> dict[str, Any] | None:
    """The annotation that stands for the task: a ground-truth one, else the latest; none cancelled."""
    usable = [a for a in annotations or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not usable:
        return None
    truth = [a for a in usable if a.get("ground_truth")]
    return max(truth or usable, key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))


def _task_image(task: dict[str, Any], where: str) -> str:
    data = task.get("data")
    if not isinstance(data, dict) or not (data.get("ballastImage") or data.get("image")):
        raise ReviewFormatError(f"{where}: data.image is missing")
    if data.get("ballastImage"):
        return str(data["ballastImage"])
    url = str(data["image"])
    return url.rsplit("/", 1)[-1].rsplit("=", 1)[-1]  # .../x.png, or /data/local-files/?d=x.png


def parse_label_studio_export(tasks: Any, classes: list[str]) -> list[ReviewedPage]:
    """Label Studio's JSON export as pages; a task without a submitted annotation is unreviewed."""
    if not isinstance(tasks, list):
        raise ReviewFormatError("a Label Studio JSON export is a list of tasks")
    pages = []
    for number, task in enumerate(tasks, start=1):
        where = f"task {task.get('id', number) if isinstance(task, dict) else number}"
        if not isinstance(task, dict):
            raise ReviewFormatError(f"{where}: not an object")
        image = _task_image(task, where)
        annotation = _submitted(task.get("annotations"))
        if annotation is None:
            pages.append(ReviewedPage(image=image, reviewed=False))
            continue
        reviewer = label_studio_reviewer(annotation.get("completed_by"))
        try:
            labels = _label_studio_labels(annotation.get("result") or [], classes, where)
        except ReviewFormatError as error:
            pages.append(ReviewedPage(image=image, reviewed=True, reviewer=reviewer, error=str(error)))
            continue
        pages.append(ReviewedPage(image=image, reviewed=True, labels=labels, reviewer=reviewer))
    return pages


def _label_studio_labels(result: list[Any], classes: list[str], where: str) -> str:
    lines = []
    for region in result:
        if not isinstance(region, dict) or region.get("type") != "rectanglelabels":
            continue  # other controls (a comment, a choice) carry no box
        value = region.get("value") or {}
        names = value.get("rectanglelabels") or []
        if len(names) != 1:
            raise ReviewFormatError(f"{where}: a rectangle has {len(names)} labels, not one")
        if float(value.get("rotation") or 0) != 0:
            raise ReviewFormatError(f"{where}: a rotated rectangle cannot be a YOLO box")
        try:
            box = yolo_from_percent(float(value["x"]), float(value["y"]), float(value["width"]), float(value["height"]))
        except (KeyError, TypeError, ValueError):
            raise ReviewFormatError(f"{where}: a rectangle lacks numeric x, y, width, height") from None
        lines.append(yolo_line(_class_index(str(names[0]), classes, where), box))
    return "".join(lines)


# ---- CVAT ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class CvatImage:
    name: str  # the image's file name, as CVAT names a task's image uploaded from images/
    width: int
    height: int
    predictions: InboxPredictions | None


def cvat_annotations(images: list[CvatImage], classes: list[str], task_name: str) -> str:
    """A "CVAT for images 1.1" document with the model's boxes (source="auto"), to upload as annotations."""
    root = ElementTree.Element("annotations")
    ElementTree.SubElement(root, "version").text = "1.1"
    task = ElementTree.SubElement(ElementTree.SubElement(root, "meta"), "task")
    ElementTree.SubElement(task, "name").text = task_name
    ElementTree.SubElement(task, "size").text = str(len(images))
    ElementTree.SubElement(task, "mode").text = "annotation"
    labels = ElementTree.SubElement(task, "labels")
    for name, kind in [*((c, "rectangle") for c in classes), (REVIEWED_TAG, "tag")]:
        label = ElementTree.SubElement(labels, "label")
        ElementTree.SubElement(label, "name").text = name
        ElementTree.SubElement(label, "type").text = kind
        ElementTree.SubElement(label, "attributes")
    for number, image in enumerate(images):
        node = ElementTree.SubElement(
            root, "image", id=str(number), name=image.name, width=str(image.width), height=str(image.height)
        )
        for box in image.predictions.boxes if image.predictions else []:
            if box.cls >= len(classes):
                continue
            x1, y1, x2, y2 = box.box
            ElementTree.SubElement(
                node,
                "box",
                label=classes[box.cls],
                source="auto",
                occluded="0",
                xtl=f"{max(x1, 0):.2f}",
                ytl=f"{max(y1, 0):.2f}",
                xbr=f"{min(x2, image.width):.2f}",
                ybr=f"{min(y2, image.height):.2f}",
                z_order="0",
            )
    ElementTree.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"


def _cvat_assignee(root: ElementTree.Element) -> str | None:
    for path in ("meta/job/assignee/username", "meta/task/assignee/username", "meta/task/assignee"):
        node = root.find(path)
        if node is not None and (node.text or "").strip():
            return (node.text or "").strip()
    return None


def parse_cvat_export(text: str, classes: list[str]) -> list[ReviewedPage]:
    """A "CVAT for images 1.1" export as pages; an image no person touched or tagged is unreviewed."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise ReviewFormatError(f"annotations.xml: not XML ({error})") from None
    version = (root.findtext("version") or "").strip()
    if root.tag != "annotations" or not version.startswith("1."):
        raise ReviewFormatError("annotations.xml: not a 'CVAT for images 1.1' export (<annotations><version>1.1)")
    reviewer = _cvat_assignee(root)
    pages = []
    for node in root.iter("image"):
        name = node.get("name")
        if not name:
            raise ReviewFormatError(f"annotations.xml: image {node.get('id')} has no name")
        shapes = [child for child in node if child.tag != "tag"]
        reviewed = any(t.get("label") == REVIEWED_TAG for t in node.iter("tag")) or any(
            s.get("source") in HUMAN_SOURCES for s in shapes
        )
        if not reviewed:
            pages.append(ReviewedPage(image=name, reviewed=False))
            continue
        try:
            labels = _cvat_labels(node, shapes, classes, f"image {name}")
        except ReviewFormatError as error:
            pages.append(ReviewedPage(image=name, reviewed=True, reviewer=reviewer, error=str(error)))
            continue
        pages.append(ReviewedPage(image=name, reviewed=True, labels=labels, reviewer=reviewer))
    return pages


def _cvat_labels(node: ElementTree.Element, shapes: list[ElementTree.Element], classes: list[str], where: str) -> str:
    try:
        width, height = int(node.get("width", "")), int(node.get("height", ""))
    except ValueError:
        raise ReviewFormatError(f"{where}: width and height must be integers") from None
    lines = []
    for shape in shapes:
        if shape.tag != "box":
            raise ReviewFormatError(f"{where}: a {shape.tag} is not a box")
        if float(shape.get("rotation") or 0) != 0:
            raise ReviewFormatError(f"{where}: a rotated box cannot be a YOLO box")
        try:
            x1, y1, x2, y2 = (float(shape.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr"))
        except ValueError:
            raise ReviewFormatError(f"{where}: a box lacks numeric xtl, ytl, xbr, ybr") from None
        box = yolo_from_pixels(x1, y1, x2, y2, width, height)
        lines.append(yolo_line(_class_index(shape.get("label", ""), classes, where), box))
    return "".join(lines)
