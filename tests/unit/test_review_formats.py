"""Review tasks out to Label Studio / CVAT and reviewed exports back, as YOLO labels.

The export fixtures follow the formats as documented (no tool runs here): Label Studio's JSON export
(https://labelstud.io/guide/task_format: tasks with `annotations`, each with `result` rectanglelabels,
`was_cancelled` and `completed_by`, and `predictions`) and "CVAT for images 1.1"
(https://docs.cvat.ai/docs/other/xml_format: `<image name width height>` with `<box label xtl ytl xbr
ybr source>` and `<tag label>`).
"""

from __future__ import annotations

import pytest

from ballast.api.inbox import FeedbackReport, InboxPredictions, PredictedBox
from ballast.api.samples import parse_labels
from ballast.policy import reviewtasks as rt

CLASSES = ["title", "date", "total"]
REPORT = FeedbackReport(
    document_id="DOC-1", reported_by="ana", reported_at="20261126T120000000000Z", model="v1.3", image_file="image.png"
)
PREDICTIONS = InboxPredictions(
    model="v1.3",
    image_width=200,
    image_height=100,
    boxes=[PredictedBox(cls=1, name="date", confidence=0.8, box=(20.0, 10.0, 60.0, 30.0))],
)


@pytest.mark.parametrize(
    ("case", "pixels", "size", "yolo"),
    [
        (
            "a box inside the image is its centre and size over the image's",
            (20, 10, 60, 30),
            (200, 100),
            (0.2, 0.2, 0.2, 0.2),
        ),
        ("a box over the edge is clipped to the image", (-20, 90, 40, 130), (200, 100), (0.1, 0.95, 0.2, 0.1)),
        ("swapped corners give the same box", (60, 30, 20, 10), (200, 100), (0.2, 0.2, 0.2, 0.2)),
    ],
)
def test_pixel_boxes_become_yolo_boxes(case, pixels, size, yolo):
    assert rt.yolo_from_pixels(*pixels, *size) == pytest.approx(yolo), case
    if case.startswith("a box inside"):
        assert rt.pixels_from_yolo(yolo, *size) == pytest.approx(pixels)


@pytest.mark.parametrize(
    ("case", "percent", "yolo"),
    [
        ("Label Studio's top-left corner and size become a centre and size", (10, 20, 30, 40), (0.25, 0.4, 0.3, 0.4)),
        ("a rectangle past the right edge is clipped", (90, 0, 20, 10), (0.95, 0.05, 0.1, 0.1)),
        ("the whole image is the whole image", (0, 0, 100, 100), (0.5, 0.5, 1.0, 1.0)),
    ],
)
def test_percent_rectangles_become_yolo_boxes(case, percent, yolo):
    assert rt.yolo_from_percent(*percent) == pytest.approx(yolo), case


def test_pixels_to_percent_and_back_to_yolo_is_the_same_box():
    percent = rt.percent_from_pixels(20, 10, 60, 30, 200, 100)
    assert percent == pytest.approx((10, 10, 20, 20))
    assert rt.yolo_from_percent(*percent) == pytest.approx(rt.yolo_from_pixels(20, 10, 60, 30, 200, 100))


def test_a_label_studio_task_carries_the_models_boxes_as_a_prediction_in_percent():
    task = rt.label_studio_task("/data/local-files/?d=images/x.png", "images/x.png", REPORT, PREDICTIONS, CLASSES)
    assert task["data"] == {
        "image": "/data/local-files/?d=images/x.png",
        "ballastImage": "images/x.png",
        "documentId": "DOC-1",
        "reportedBy": "ana",
    }
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "v1.3"
    (region,) = prediction["result"]
    assert region["type"] == "rectanglelabels" and region["from_name"] == rt.FROM_NAME
    assert region["value"]["rectanglelabels"] == ["date"]
    assert [region["value"][k] for k in ("x", "y", "width", "height")] == pytest.approx([10, 10, 20, 20])
    assert (region["original_width"], region["original_height"]) == (200, 100)


def ls_region(label: str, x: float, y: float, w: float, h: float) -> dict:
    return {
        "id": "r1",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": 200,
        "original_height": 100,
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }


def ls_task(annotations: list[dict]) -> dict:
    return {
        "id": 1,
        "data": {"image": "/data/local-files/?d=images/p.png", "ballastImage": "images/p.png"},
        "annotations": annotations,
        "predictions": [{"model_version": "v1.3", "result": [ls_region("date", 10, 10, 20, 20)]}],
    }


@pytest.mark.parametrize(
    ("case", "task", "reviewed", "labels", "reviewer"),
    [
        (
            "a task with only the model's predictions was not reviewed",
            ls_task([]),
            False,
            "",
            None,
        ),
        (
            "a cancelled (skipped) annotation is not a review",
            ls_task([{"was_cancelled": True, "completed_by": 3, "result": [ls_region("date", 10, 10, 20, 20)]}]),
            False,
            "",
            None,
        ),
        (
            "a submitted annotation is the review, and its user id names the reviewer",
            ls_task([{"was_cancelled": False, "completed_by": 3, "result": [ls_region("total", 10, 20, 30, 40)]}]),
            True,
            "2 0.250000 0.400000 0.300000 0.400000\n",
            "label-studio user 3",
        ),
        (
            "a reviewer given as a user object is named by email",
            ls_task([{"completed_by": {"id": 3, "email": "bo@example.com"}, "result": []}]),
            True,
            "",
            "bo@example.com",
        ),
        (
            "the ground-truth annotation wins over a later one",
            ls_task(
                [
                    {"ground_truth": True, "updated_at": "2026-01-01", "completed_by": 1, "result": []},
                    {"updated_at": "2026-02-01", "completed_by": 2, "result": [ls_region("title", 0, 0, 10, 10)]},
                ]
            ),
            True,
            "",
            "label-studio user 1",
        ),
    ],
)
def test_label_studio_exports_become_pages(case, task, reviewed, labels, reviewer):
    (page,) = rt.parse_label_studio_export([task], CLASSES)
    assert (page.image, page.reviewed, page.labels, page.reviewer, page.error) == (
        "images/p.png",
        reviewed,
        labels,
        reviewer,
        None,
    ), case
    parse_labels(page.labels, len(CLASSES))  # what comes out is a valid YOLO label file


@pytest.mark.parametrize(
    ("case", "region", "error"),
    [
        ("a label the pool does not have", ls_region("stamp", 10, 10, 20, 20), "label 'stamp' is not one of"),
        (
            "a rotated rectangle",
            {**ls_region("date", 10, 10, 20, 20), "value": {**ls_region("date", 1, 1, 2, 2)["value"], "rotation": 30}},
            "rotated",
        ),
    ],
)
def test_a_reviewed_label_studio_page_that_cannot_be_a_yolo_label_is_refused_with_why(case, region, error):
    (page,) = rt.parse_label_studio_export([ls_task([{"completed_by": 1, "result": [region]}])], CLASSES)
    assert page.reviewed and page.error and error in page.error, case


def test_a_label_studio_export_that_is_not_a_list_of_tasks_is_refused():
    with pytest.raises(rt.ReviewFormatError, match="list of tasks"):
        rt.parse_label_studio_export({"tasks": []}, CLASSES)


def cvat(images: str, meta: str = "") -> str:
    header = '<?xml version="1.0" encoding="utf-8"?>'
    return f"{header}<annotations><version>1.1</version><meta>{meta}</meta>{images}</annotations>"


BOX = '<box label="date" source="{source}" occluded="0" xtl="20" ytl="10" xbr="60" ybr="30" z_order="0"/>'


@pytest.mark.parametrize(
    ("case", "xml", "reviewed", "labels", "reviewer"),
    [
        (
            "an image with only the model's boxes was not reviewed",
            cvat(
                '<image id="0" name="images/p.png" width="200" height="100">' + BOX.format(source="auto") + "</image>"
            ),
            False,
            "",
            None,
        ),
        (
            "a box a person corrected makes the image reviewed",
            cvat(
                '<image id="0" name="images/p.png" width="200" height="100">'
                + BOX.format(source="semi-auto")
                + "</image>"
            ),
            True,
            "1 0.200000 0.200000 0.200000 0.200000\n",
            None,
        ),
        (
            "the reviewed tag confirms the model's boxes as they came, and the assignee is the reviewer",
            cvat(
                '<image id="0" name="images/p.png" width="200" height="100">'
                + BOX.format(source="auto")
                + '<tag label="ballast-reviewed" source="manual"/></image>',
                "<job><assignee><username>carla</username></assignee></job>",
            ),
            True,
            "1 0.200000 0.200000 0.200000 0.200000\n",
            "carla",
        ),
        (
            "a tagged image without boxes is a reviewed page with no objects",
            cvat('<image id="0" name="images/p.png" width="200" height="100"><tag label="ballast-reviewed"/></image>'),
            True,
            "",
            None,
        ),
    ],
)
def test_cvat_exports_become_pages(case, xml, reviewed, labels, reviewer):
    (page,) = rt.parse_cvat_export(xml, CLASSES)
    assert (page.image, page.reviewed, page.labels, page.reviewer, page.error) == (
        "images/p.png",
        reviewed,
        labels,
        reviewer,
        None,
    ), case


@pytest.mark.parametrize(
    ("case", "shape", "error"),
    [
        (
            "a polygon is not a box",
            '<polygon label="date" source="manual" points="1,1;5,5;1,5"/>',
            "polygon is not a box",
        ),
        ("a label the pool does not have", BOX.format(source="manual").replace("date", "stamp"), "'stamp'"),
    ],
)
def test_a_reviewed_cvat_image_that_cannot_be_a_yolo_label_is_refused_with_why(case, shape, error):
    xml = cvat(f'<image id="0" name="p.png" width="200" height="100">{shape}</image>')
    (page,) = rt.parse_cvat_export(xml, CLASSES)
    assert page.reviewed and page.error and error in page.error, case


def test_what_is_not_a_cvat_for_images_export_is_refused():
    with pytest.raises(rt.ReviewFormatError, match="not XML"):
        rt.parse_cvat_export("{}", CLASSES)
    with pytest.raises(rt.ReviewFormatError, match="CVAT for images 1.1"):
        rt.parse_cvat_export("<dataset/>", CLASSES)


def test_the_cvat_pre_annotation_round_trips_as_an_unreviewed_page_with_the_same_box():
    xml = rt.cvat_annotations([rt.CvatImage("images/p.png", 200, 100, PREDICTIONS)], CLASSES, "inbox")
    (page,) = rt.parse_cvat_export(xml, CLASSES)
    assert page.image == "images/p.png" and not page.reviewed
    reviewed = xml.replace('source="auto"', 'source="semi-auto"')
    (page,) = rt.parse_cvat_export(reviewed, CLASSES)
    assert page.labels == "1 0.200000 0.200000 0.200000 0.200000\n"
    assert "<type>tag</type>" in xml and rt.REVIEWED_TAG in xml
