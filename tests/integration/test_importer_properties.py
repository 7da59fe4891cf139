"""Property: importing any export (good and bad samples mixed, in any of the three layouts) into a
real MinIO pool adds exactly the good samples, refuses each bad one with its reason and writes
nothing of it, and a second import changes nothing that is stored."""

from __future__ import annotations

import argparse
import io
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from ballast.adapters.pool import list_index, list_sample_ids
from ballast.cli.people import import_export

SAMPLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # the id rule as the docs state it
CLASSES = 8


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 200, 200)).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 150)).save(out, "JPEG")
    return out.getvalue()


# (bytes, suffix, whether the importer must accept it)
images = st.one_of(
    st.tuples(st.integers(10, 48), st.integers(10, 48)).map(lambda s: (png(*s), ".png", True)),
    st.tuples(st.integers(10, 48), st.integers(10, 48)).map(lambda s: (jpeg(*s), ".jpg", True)),
    st.tuples(st.integers(10, 48), st.integers(10, 48)).map(lambda s: (png(*s)[: len(png(*s)) // 2], ".png", False)),
    st.binary(min_size=0, max_size=64).map(lambda b: (b, ".png", False)),
    st.integers(1, 9).map(lambda side: (png(side, side), ".png", False)),  # below the minimum side
)
box = st.tuples(
    st.integers(0, CLASSES - 1), st.floats(0.3, 0.7), st.floats(0.3, 0.7), st.floats(0.05, 0.5), st.floats(0.05, 0.5)
)
good_labels = st.lists(box, max_size=3).map(
    lambda rows: ("".join(f"{c} {x} {y} {w} {h}\n" for c, x, y, w, h in rows), True)
)
bad_labels = st.sampled_from(
    ["9 0.5 0.5 0.1 0.1\n", "0 0.5 0.5 0.1\n", "0 1.5 0.5 0.1 0.1\n", "zero 0.5 0.5 0.1 0.1\n", "0 0.5 0.5 0 0.1\n"]
).map(lambda text: (text, False))
labels = st.one_of(good_labels, bad_labels, st.just((None, False)))  # None: no label file at all
stems = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,11}", fullmatch=True).filter(lambda s: not s.endswith("."))


@dataclass
class Entry:
    stem: str
    image: tuple[bytes, str, bool]
    labels: tuple[str | None, bool]

    @property
    def acceptable(self) -> bool:
        return self.image[2] and self.labels[1] and bool(SAMPLE_ID.match(self.stem))


entries = st.lists(st.builds(Entry, stems, images, labels), min_size=1, max_size=6, unique_by=lambda e: e.stem.lower())


def write_export(root: Path, fmt: str, batch: list[Entry]) -> None:
    """The three layouts: a flat YOLO folder, Label Studio's images/ + labels/, CVAT's obj_train_data/."""
    for entry in batch:
        data, suffix, _ = entry.image
        text, _ = entry.labels
        if fmt == "yolo":
            image, label = root / f"{entry.stem}{suffix}", root / f"{entry.stem}.txt"
        elif fmt == "label-studio":
            image, label = root / "images" / f"{entry.stem}{suffix}", root / "labels" / f"{entry.stem}.txt"
        else:
            image, label = (
                root / "obj_train_data" / f"{entry.stem}{suffix}",
                root / "obj_train_data" / f"{entry.stem}.txt",
            )
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(data)
        if text is not None:
            label.write_text(text)


def stored(store, pool: str) -> dict[str, bytes]:
    return {key: store.get(key) for key in store.list(f"pool/{pool}/samples/")}


REVIEWED = argparse.Namespace(reviewed_by="ana", reported_by="support")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=entries, fmt=st.sampled_from(["yolo", "label-studio", "cvat"]))
def test_an_import_adds_exactly_the_good_samples_and_nothing_of_the_bad(pool_store, batch, fmt):
    pool = f"p{uuid.uuid4().hex[:10]}"  # a fresh pool per example, in the test's real bucket
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        write_export(root, fmt, batch)
        report = import_export(pool_store, pool, CLASSES, root, fmt, REVIEWED)
        good = sorted(e.stem for e in batch if e.acceptable)
        assert sorted(report.added) == good
        assert sorted(report.refused) == sorted(f"{e.stem}{e.image[1]}" for e in batch if not e.acceptable)
        assert all(why for why in report.refused.values())  # every refusal says why
        assert sorted(list_sample_ids(pool_store, pool)) == good  # nothing of a bad sample was written
        assert len(list_index(pool_store, pool)) == len(good)
        before = stored(pool_store, pool)

        again = import_export(pool_store, pool, CLASSES, root, fmt, REVIEWED)
        assert again.added == [] and sorted(again.already_there) == good
        assert stored(pool_store, pool) == before  # a second import changes nothing already stored
        assert len(list_index(pool_store, pool)) == len(good)
