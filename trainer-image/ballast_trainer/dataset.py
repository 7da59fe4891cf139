"""Materialize samples from the object store as an Ultralytics dataset folder, digests checked."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from ballast.adapters.objectstore import Download, ObjectStore
from ballast.api.samples import SampleRef


@dataclass(frozen=True)
class Staged:
    images: int
    bytes: int
    seconds: float

    @property
    def mb_per_second(self) -> float:
        return self.bytes / 1e6 / self.seconds if self.seconds else 0.0


def local_name(ref: SampleRef) -> str:
    # The image digest names the file: unique across pool and anchor, and stable between runs.
    extension = ref.image.rsplit(".", 1)[-1]
    return f"{ref.image_digest.removeprefix('sha256:')[:24]}.{extension}"


def stage(store: ObjectStore, refs: list[SampleRef], root: Path, split: str, workers: int = 16) -> Staged:
    """Download images to `root/images/<split>/` and labels to `root/labels/<split>/`."""
    started = time.monotonic()
    downloads = []
    for ref in refs:
        name = local_name(ref)
        downloads.append(Download(ref.image, root / "images" / split / name, ref.image_digest))
        downloads.append(
            Download(ref.label, root / "labels" / split / (name.rsplit(".", 1)[0] + ".txt"), ref.label_digest)
        )
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    total = store.download_many(downloads, workers)
    return Staged(len(refs), total, time.monotonic() - started)


def write_data_yaml(root: Path, classes: list[str], splits: dict[str, str]) -> Path:
    """An Ultralytics data.yaml. Never a `download:` key: that value may be executed as code."""
    document = {"path": str(root), **splits, "names": dict(enumerate(classes))}
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
