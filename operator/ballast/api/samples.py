"""Samples on the wire: YOLO label files and manifest lines, parsed strictly.

A label file has one object per line, `class x_center y_center width height`, coordinates
normalized to [0, 1]. A manifest has one sample per line, `<image key> <image digest> <label digest>`.
Every error names the line and the field, so a reviewer can fix the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pydantic import Field

from ballast.api.common import Digest, Model


class SampleError(ValueError):
    """A sample (image, labels or record) that may not enter a pool; the message names the field."""


@dataclass(frozen=True)
class Box:
    cls: int
    x: float
    y: float
    w: float
    h: float


def parse_labels(text: str, num_classes: int, source: str = "label.txt") -> list[Box]:
    """Parse a YOLO detection label file; raise SampleError naming the line and field at fault."""
    boxes = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        where = f"{source} line {number}"
        if len(parts) != 5:
            raise SampleError(f"{where}: expected 5 fields 'class x y w h', got {len(parts)}")
        try:
            cls = int(parts[0])
        except ValueError:
            raise SampleError(f"{where}: class {parts[0]!r} is not an integer") from None
        if not 0 <= cls < num_classes:
            raise SampleError(f"{where}: class {cls} is out of range 0..{num_classes - 1}")
        values = []
        for name, token in zip(("x", "y", "w", "h"), parts[1:], strict=True):
            try:
                value = float(token)
            except ValueError:
                raise SampleError(f"{where}: {name} {token!r} is not a number") from None
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise SampleError(f"{where}: {name} {token} is outside [0, 1]")
            values.append(value)
        x, y, w, h = values
        if w == 0 or h == 0:
            raise SampleError(f"{where}: box has zero width or height")
        if x - w / 2 < -1e-6 or x + w / 2 > 1 + 1e-6 or y - h / 2 < -1e-6 or y + h / 2 > 1 + 1e-6:
            raise SampleError(f"{where}: box extends outside the image")
        boxes.append(Box(cls, x, y, w, h))
    return boxes


class SampleRef(Model):
    """One sample as a training run sees it: where its image is and what its files hash to."""

    image: str = Field(description="Object key of the image, relative to the store prefix.")
    image_digest: Digest
    label_digest: Digest

    @property
    def label(self) -> str:
        return self.image.rsplit("/", 1)[0] + "/label.txt"

    def manifest_line(self) -> str:
        return f"{self.image} {self.image_digest} {self.label_digest}"


def parse_manifest(text: str, source: str = "manifest") -> list[SampleRef]:
    refs = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise SampleError(f"{source} line {number}: expected '<image key> <image digest> <label digest>'")
        if ".." in parts[0].split("/") or parts[0].startswith("/"):
            raise SampleError(f"{source} line {number}: image key {parts[0]!r} escapes the store prefix")
        try:
            refs.append(SampleRef(image=parts[0], image_digest=parts[1], label_digest=parts[2]))
        except ValueError as error:
            raise SampleError(f"{source} line {number}: {error}") from None
    return refs


def render_manifest(refs: list[SampleRef]) -> str:
    return "".join(ref.manifest_line() + "\n" for ref in refs)
