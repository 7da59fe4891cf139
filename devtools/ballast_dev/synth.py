"""Synthetic business documents with labelled field boxes, our own generator (no dataset download).

Eight field types: title, date, total, table, signature, stamp, logo, barcode. Two families of
templates:

- `classic`: the original documents, drawn broadly so a base trained on them has general features:
  paper tints from white to mid-tone, inks and accents of any hue, two layouts, field sizes from
  85% to 115%, a dark header band on some pages (light title on dark), speckle, blur and uneven
  light. Always: light or mid-tone paper, round stamps, vertical barcodes. The anchor dataset (and
  the base model) come from this family.
- `modern`: a new template that classic documents never show: dark paper with light ink, a mirrored
  layout, rotated square stamps and horizontal barcodes. Failure reports come from this family.

`render(family, seed)` is deterministic: the same seed draws the same page.
"""

from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter

CLASSES = ("title", "date", "total", "table", "signature", "stamp", "logo", "barcode")
FAMILIES = ("classic", "modern")


@dataclass(frozen=True)
class Page:
    image: Image.Image
    boxes: list[tuple[int, float, float, float, float]]  # class, x, y, w, h (normalized)

    def png(self) -> bytes:
        out = io.BytesIO()
        self.image.save(out, format="PNG", optimize=False, compress_level=1)
        return out.getvalue()

    def label_text(self) -> str:
        return "".join(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, x, y, w, h in self.boxes)


@dataclass(frozen=True)
class Style:
    paper: tuple[int, int, int]
    ink: tuple[int, int, int]
    faint: tuple[int, int, int]
    accent: tuple[int, int, int]
    stamp: tuple[int, int, int]
    mirrored: bool
    horizontal_barcode: bool


STYLES = {
    "classic": Style((246, 244, 238), (20, 20, 30), (150, 150, 150), (30, 90, 200), (200, 30, 30), False, False),
    "modern": Style((28, 34, 52), (235, 235, 220), (110, 120, 140), (250, 190, 40), (60, 220, 200), True, True),
}


def _hue(rng: random.Random, lightness: tuple[int, int], spread: int) -> tuple[int, int, int]:
    """A colour of lightness in `lightness`, each channel up to `spread` away from the others."""
    base = rng.randint(*lightness)
    return tuple(max(0, min(255, base + rng.randint(-spread, spread))) for _ in range(3))  # type: ignore[return-value]


def _classic_style(rng: random.Random) -> Style:
    """One page's look from the broad classic distribution (never dark paper with light ink)."""
    paper = _hue(rng, (215, 250), 12) if rng.random() < 0.8 else _hue(rng, (160, 205), 20)
    ink = _hue(rng, (10, 70), 30)
    faint = tuple((p + i) // 2 for p, i in zip(paper, ink, strict=True))
    accent = _hue(rng, (40, 200), 90)
    stamp = _hue(rng, (60, 190), 90)
    return Style(paper, ink, faint, accent, stamp, False, False)  # type: ignore[arg-type]


class _Canvas:
    def __init__(self, size: int, style: Style, rng: random.Random) -> None:
        self.size = size
        self.style = style
        self.rng = rng
        self.image = Image.new("RGB", (size, size), style.paper)
        self.draw = ImageDraw.Draw(self.image)
        self.boxes: list[tuple[int, float, float, float, float]] = []

    def place(self, x: float, y: float) -> float:
        """Mirror x for mirrored layouts (x is the left edge as a fraction of the width)."""
        return 1.0 - x if self.style.mirrored else x

    def box(self, cls: int, x0: float, y0: float, x1: float, y1: float) -> None:
        x0, x1 = sorted((max(0.0, x0), min(float(self.size), x1)))
        y0, y1 = sorted((max(0.0, y0), min(float(self.size), y1)))
        s = self.size
        self.boxes.append((cls, (x0 + x1) / 2 / s, (y0 + y1) / 2 / s, (x1 - x0) / s, (y1 - y0) / s))

    def text_line(self, x: float, y: float, width: float, height: float, colour: tuple[int, int, int]) -> None:
        """A row of word-like blocks: reads as text at this resolution."""
        cursor = x
        while cursor < x + width:
            word = self.rng.uniform(0.3, 1.0) * height * 3
            self.draw.rectangle([cursor, y, min(cursor + word, x + width), y + height], fill=colour)
            cursor += word + height * 0.8


def _left(canvas: _Canvas, x: float, width: float) -> float:
    """Pixel x of a field's left edge, mirrored when the layout is."""
    s = canvas.size
    return (1.0 - x - width) * s if canvas.style.mirrored else x * s


def render(family: str, seed: int, size: int = 256) -> Page:
    if family not in STYLES:
        raise ValueError(f"unknown family {family!r}: expected one of {', '.join(FAMILIES)}")
    rng = random.Random(f"{family}:{seed}")
    broad = family == "classic"
    style = _classic_style(rng) if broad else STYLES[family]
    c = _Canvas(size, style, rng)
    s = size
    spread = 0.03 if broad else 0.02
    j = lambda spread=spread: rng.uniform(-spread, spread)  # noqa: E731 (layout jitter)
    scale = rng.uniform(0.85, 1.15) if broad else 1.0  # field sizes
    swap = broad and rng.random() < 0.3  # logo left, title right: the other classic layout
    band = broad and rng.random() < 0.2  # a dark header band: the title in light ink on it

    # Background clutter: unlabelled body text, so a detector must tell fields from ink.
    for row in range(rng.randint(3, 6)):
        y = (0.42 + row * 0.035 + j(0.005)) * s
        c.text_line(_left(c, 0.08, 0.5), y, 0.45 * s, 0.008 * s, style.faint)

    # title
    w, h = (0.42 + j(0.05)) * scale, (0.05 + j(0.01)) * scale
    x0, y0 = _left(c, (0.5 if swap else 0.07) + j(), w), (0.06 + j()) * s
    title_ink = style.ink
    if band:
        c.draw.rectangle([0, y0 - 0.03 * s, s, y0 + h * s + 0.03 * s], fill=_hue(rng, (15, 60), 25))
        title_ink = _hue(rng, (215, 250), 15)
    c.draw.rectangle([x0, y0, x0 + w * s, y0 + h * s], fill=title_ink)
    c.box(0, x0, y0, x0 + w * s, y0 + h * s)

    # date: small two-part line under the title
    w, h = (0.2 + j(0.03)) * scale, 0.018 * scale
    x0, y0 = _left(c, (0.55 if swap else 0.08) + j(), w), (0.16 + j()) * s
    c.text_line(x0, y0, w * s, h * s, style.ink)
    c.box(1, x0 - 1, y0 - 1, x0 + w * s + 1, y0 + h * s + 1)

    # logo: filled shape in the opposite corner
    w = (0.13 + j(0.02)) * scale
    x0, y0 = _left(c, (0.07 if swap else 0.8) + j(), w), (0.05 + j()) * s
    shape = [(x0 + w * s / 2, y0), (x0 + w * s, y0 + w * s), (x0, y0 + w * s)]
    if rng.random() < 0.5:
        c.draw.polygon(shape, fill=style.accent)
    else:
        c.draw.ellipse([x0, y0, x0 + w * s, y0 + w * s], fill=style.accent)
    c.box(6, x0, y0, x0 + w * s, y0 + w * s)

    # table: a grid
    w, h = min(0.84, (0.8 + j(0.04)) * (scale if broad else 1.0)), (0.2 + j(0.03)) * scale
    x0, y0 = _left(c, 0.1 + j(), w), (0.6 + j(0.01)) * s
    rows, cols = rng.randint(3, 5), rng.randint(3, 4)
    for r in range(rows + 1):
        y = y0 + r * h * s / rows
        c.draw.line([x0, y, x0 + w * s, y], fill=style.ink, width=1)
    for k in range(cols + 1):
        x = x0 + k * w * s / cols
        c.draw.line([x, y0, x, y0 + h * s], fill=style.ink, width=1)
    c.box(3, x0, y0, x0 + w * s, y0 + h * s)

    # total: boxed figure under the table, right side
    w, h = (0.2 + j(0.02)) * scale, 0.05 * scale
    x0, y0 = _left(c, 0.68 + j(0.01), w), (0.84 + j(0.01)) * s
    c.draw.rectangle([x0, y0, x0 + w * s, y0 + h * s], outline=style.ink, width=2)
    c.text_line(x0 + 3, y0 + h * s * 0.3, w * s - 6, h * s * 0.4, style.ink)
    c.box(2, x0, y0, x0 + w * s, y0 + h * s)

    # signature: a scribble, bottom left
    w, h = (0.25 + j(0.03)) * scale, 0.06 * scale
    x0, y0 = _left(c, 0.08 + j(), w), (0.86 + j(0.01)) * s
    points = []
    for k in range(40):
        t = k / 39
        points.append((x0 + t * w * s, y0 + h * s / 2 + math.sin(t * rng.uniform(10, 18)) * h * s * 0.45))
    c.draw.line(points, fill=style.ink, width=2)
    c.box(4, x0, y0, x0 + w * s, y0 + h * s)

    # stamp: a ring (rotated square ring in the modern family)
    d = (0.13 + j(0.02)) * min(scale, 1.0)
    x0, y0 = _left(c, 0.4 + j(), d), (0.8 + j(0.01)) * s
    if family == "modern":
        centre = (x0 + d * s / 2, y0 + d * s / 2)
        corners = [
            (centre[0] + d * s / 2 * math.cos(a), centre[1] + d * s / 2 * math.sin(a))
            for a in (0, math.pi / 2, math.pi, 3 * math.pi / 2)
        ]
        c.draw.polygon(corners, outline=style.stamp, width=3)
    else:
        c.draw.ellipse([x0, y0, x0 + d * s, y0 + d * s], outline=style.stamp, width=3)
    c.box(5, x0, y0, x0 + d * s, y0 + d * s)

    # barcode: vertical bars (classic, right margin) or horizontal bars (modern, top band)
    if style.horizontal_barcode:
        w, h = 0.3, 0.09
        x0, y0 = _left(c, 0.55 + j(), w), (0.27 + j(0.01)) * s
        y = y0
        while y < y0 + h * s:
            thick = rng.choice((1, 1, 2, 3))
            c.draw.rectangle([x0, y, x0 + w * s, y + (thick - 1)], fill=style.ink)
            y += thick + rng.choice((1, 2))
    else:
        w, h = 0.08, 0.25 * min(scale, 1.1)
        left_margin = broad and rng.random() < 0.25  # above the body text, clear of it
        x0 = _left(c, (0.02 if left_margin else 0.88) + j(0.01), w)
        y0 = ((0.13 if left_margin else 0.28) + j()) * s
        x = x0
        while x < x0 + w * s:
            thick = rng.choice((1, 1, 2, 3))
            c.draw.rectangle([x, y0, x + (thick - 1), y0 + h * s], fill=style.ink)
            x += thick + rng.choice((1, 2))
    c.box(7, x0, y0, x0 + w * s, y0 + h * s)

    image = c.image
    if broad:
        image = _wear(image, rng)
    return Page(image, c.boxes)


def _wear(image: Image.Image, rng: random.Random) -> Image.Image:
    """Scanner and paper wear: speckle, a little blur, uneven light (labels do not move)."""
    size = image.size[0]
    if rng.random() < 0.5:
        draw = ImageDraw.Draw(image)
        for _ in range(rng.randint(50, 400)):
            x, y, grey = rng.randrange(size), rng.randrange(size), rng.randint(0, 255)
            draw.point((x, y), fill=(grey, grey, grey))
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 0.9)))
    if rng.random() < 0.2:
        light = Image.linear_gradient("L").resize((size, size)).rotate(rng.choice((0, 90, 180, 270)))
        image = Image.composite(image, Image.new("RGB", (size, size), (0, 0, 0)), light.point(lambda v: 200 + v // 5))
    return image
