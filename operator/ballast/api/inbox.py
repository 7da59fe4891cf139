"""The review inbox's documents: what `serve`'s /feedback writes and `ballast inbox export` reads.

    inbox/<pool>/<stamp>-<document id>/image.<ext>        the failed document's image
    inbox/<pool>/<stamp>-<document id>/report.json        who reported it, when, against which model
    inbox/<pool>/<stamp>-<document id>/predictions.json   what the serving model found on it then
    inbox/<pool>/<stamp>-<document id>/exported.json      set once the item went out for review

The predictions travel with the report so the export can offer them as pre-annotations (a
reviewer corrects boxes instead of drawing them) without the CLI running a model.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from ballast.api.common import Model

REPORT = "report.json"
PREDICTIONS = "predictions.json"
EXPORTED = "exported.json"


def item_file(item: str, file: str) -> str:
    """A file of an inbox item (`item` as `ballast.api.layout.inbox_item` names it)."""
    return f"{item}/{file}"


def item_name(item: str) -> str:
    """`<stamp>-<document id>`: the item's own name, unique within its pool's inbox."""
    return item.rstrip("/").rsplit("/", 1)[-1]


class FeedbackReport(Model):
    """`report.json`: one user's report that the serving model failed on a document."""

    document_id: str = Field(min_length=1, max_length=256)
    reported_by: str = Field(min_length=1, max_length=256)
    reported_at: str = Field(description="UTC, %Y%m%dT%H%M%S%fZ.")
    model: str = Field(description="The serving model's version.")
    image_file: str = Field(pattern=r"^image\.(jpg|jpeg|png|bmp|webp)$")


class PredictedBox(Model):
    cls: int = Field(ge=0, alias="class")
    name: str
    confidence: float = Field(ge=0, le=1)
    box: tuple[float, float, float, float] = Field(description="x1 y1 x2 y2 in pixels.")


class InboxPredictions(Model):
    """`predictions.json`: the serving model's boxes on the reported image, in pixels."""

    model: str
    image_width: int = Field(gt=0)
    image_height: int = Field(gt=0)
    boxes: list[PredictedBox] = Field(default_factory=list)


class ExportMark(Model):
    """`exported.json`: this item went out for review; a second export skips it unless told again."""

    format: str
    at: datetime
    to: str = Field(description="The folder the export was written to.")
