"""Pool samples in the object store: validated intake, and reading what a pool holds.

A sample (`ballast.api.layout`: image, `label.txt`, `sample.json`, then its index key) counts once
its index key exists; that key is written last, so an interrupted intake leaves nothing that counts.
A retry of the same sample completes it (writes the missing index key, stamped then); an existing
sample is never overwritten (samples are immutable and never deleted).
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.contracts import LabelSource, SampleRecord, digest_bytes
from ballast.api.finetunepool import RejectedSample
from ballast.api.finetunerun import SampleSnapshot
from ballast.api.samples import SampleError, SampleRef, parse_labels, parse_manifest, render_manifest

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MIN_IMAGE_SIDE = 10
# Pixels an image may have, checked from its header before anything is decoded: a small file that
# claims to be 50,000 x 50,000 (a pixel bomb) is refused without allocating its bitmap.
MAX_IMAGE_PIXELS = 40_000_000
IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "WEBP": "webp"}


def pillow_open(data: bytes) -> Image.Image:
    """Pillow's own `Image.open`. Importing Ultralytics (as `ballast serve` does) replaces it with a
    wrapper that, on a file Pillow cannot identify, pip-installs a HEIF plugin at run time: offline
    that is an ImportError instead of our refusal, and nothing may install at run time anyway."""
    opener = Image.open
    if opener.__module__ != Image.__name__:  # patched: use the original the patch kept
        opener = getattr(sys.modules.get(opener.__module__), "_image_open", opener)
    return opener(io.BytesIO(data))


def check_image(data: bytes, source: str = "image") -> str:
    """Decode the whole image (once its header says it is not too large); return its file extension
    or raise SampleError saying why not."""
    if not data:
        raise SampleError(f"{source}: empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise SampleError(f"{source}: {len(data)} bytes is over the {MAX_IMAGE_BYTES} byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with pillow_open(data) as image:  # reads the header only
                kind = image.format
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise SampleError(f"{source}: {width}x{height} is over the {MAX_IMAGE_PIXELS} pixel limit")
                image.load()  # a truncated file fails here, not at open()
    except SampleError:
        raise
    except Image.DecompressionBombError:  # Pillow's own, larger limit, met while reading the header
        raise SampleError(f"{source}: over the {MAX_IMAGE_PIXELS} pixel limit") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as error:
        raise SampleError(f"{source}: not a decodable image ({error})") from None
    if kind not in IMAGE_FORMATS:
        raise SampleError(f"{source}: format {kind} is not one of {', '.join(IMAGE_FORMATS)}")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise SampleError(f"{source}: {width}x{height} is smaller than {MIN_IMAGE_SIDE} px")
    return IMAGE_FORMATS[kind]


@dataclass(frozen=True)
class NewSample:
    sample_id: str
    image: bytes
    labels: str
    document_id: str
    reported_by: str
    reported_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    label_source: LabelSource


def validate(sample: NewSample, num_classes: int) -> tuple[SampleRecord, str]:
    """The record to store and the image extension; SampleError names what is wrong."""
    where = f"sample {sample.sample_id!r}"
    if not sample.reviewed_by or sample.reviewed_at is None:
        raise SampleError(f"{where}: reviewedBy and reviewedAt are required: only human-verified samples enter a pool")
    extension = check_image(sample.image, f"{where} image")
    boxes = parse_labels(sample.labels, num_classes, f"{where} label.txt")
    try:
        record = SampleRecord(
            id=sample.sample_id,
            document_id=sample.document_id,
            reported_by=sample.reported_by,
            reported_at=sample.reported_at,
            reviewed_by=sample.reviewed_by,
            reviewed_at=sample.reviewed_at,
            label_source=sample.label_source,
            image_file=f"image.{extension}",
            image_digest=digest_bytes(sample.image),
            label_digest=digest_bytes(sample.labels.encode()),
            boxes=len(boxes),
        )
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise SampleError(f"{where}: {field}: {first['msg']}") from None
    return record, extension


class SampleExists(SampleError):
    """The same sample (same image and labels) is already in the pool and counted."""


class SampleConflict(SampleError):
    """A sample with this id but other content is in the pool; samples are immutable."""


class IndexedIds:
    """The sample ids the pool's index counts, listed once when first asked (an import asks for many)."""

    def __init__(self, store: ObjectStore, pool: str) -> None:
        self.store = store
        self.pool = pool
        self._ids: set[str] | None = None

    def __contains__(self, sample_id: object) -> bool:
        if self._ids is None:
            self._ids = {layout.parse_index_key(key).sample_id for key in list_index(self.store, self.pool)}
        return sample_id in self._ids

    def add(self, sample_id: str) -> None:
        if self._ids is not None:
            self._ids.add(sample_id)


def same_content(stored: SampleRecord, record: SampleRecord) -> bool:
    return (stored.image_file, stored.image_digest, stored.label_digest) == (
        record.image_file,
        record.image_digest,
        record.label_digest,
    )


def add_sample(
    store: ObjectStore, pool: str, sample: NewSample, num_classes: int, indexed: IndexedIds | None = None
) -> SampleRecord:
    """Validate, then write image, labels, record, and last the index entry that makes it count.

    Nothing is written for a bad sample; its refusal is recorded (reason only) for the pool's status.
    A sample whose record exists with the same content is finished, not rewritten: its index entry is
    written if an interrupted intake left it out (SampleExists if it is there); other content under
    the same id is a SampleConflict. `indexed` caches the index listing across one import.
    """
    try:
        record, extension = validate(sample, num_classes)
    except SampleError as error:
        record_rejection(store, pool, sample.sample_id, str(error))
        raise
    record_key = layout.sample_file(pool, record.id, "sample.json")
    if store.exists(record_key):
        return complete_sample(store, pool, record, indexed or IndexedIds(store, pool))
    content_type = f"image/{'jpeg' if extension == 'jpg' else extension}"
    store.put(layout.sample_file(pool, record.id, record.image_file), sample.image, content_type)
    store.put(layout.sample_file(pool, record.id, "label.txt"), sample.labels.encode(), "text/plain")
    store.put(
        layout.sample_file(pool, record.id, "sample.json"),
        record.model_dump_json(by_alias=True).encode(),
        "application/json",
    )
    store.put(index_key(pool, record, now()), b"", "text/plain")
    if indexed is not None:
        indexed.add(record.id)
    return record


def complete_sample(store: ObjectStore, pool: str, record: SampleRecord, indexed: IndexedIds) -> SampleRecord:
    """The intake of a sample whose record is already stored: finish it, or say why not."""
    try:
        stored = read_record(store, pool, record.id)
    except (ValueError, ValidationError):
        stored = None
    if stored is None or not same_content(stored, record):
        raise SampleConflict(
            f"sample {record.id!r} is already in pool {pool} with other content; samples are immutable"
        )
    if record.id in indexed:
        raise SampleExists(f"sample {record.id!r} is already in pool {pool}; samples are immutable")
    # An earlier intake stopped between its record and its index entry. The entry is stamped now, not
    # with the record's time, so a counting cursor that already passed that time still counts it.
    store.put(index_key(pool, stored, now()), b"", "text/plain")
    indexed.add(record.id)
    return stored


# ---- the pool index ------------------------------------------------------------------------------
# Writers run concurrently (several importers, several threads), so a key stamped earlier can
# appear after a later one was listed: counting (ballast.policy.finetunepool.count_index) lets its
# cursor pass only keys older than a settle window.


def index_key(pool: str, record: SampleRecord, written_at: datetime) -> str:
    entry = layout.IndexEntry(written_at, record.id, record.image_file, record.image_digest, record.label_digest)
    return layout.index_key(pool, entry)


def ref_from_index_key(pool: str, key: str) -> SampleRef:
    entry = layout.parse_index_key(key)
    return SampleRef(
        image=layout.sample_file(pool, entry.sample_id, entry.image_file),
        image_digest=entry.image_digest,
        label_digest=entry.label_digest,
    )


def list_index(store: ObjectStore, pool: str, start_after: str | None = None) -> list[str]:
    """Index keys after `start_after` (relative to the store prefix), in order."""
    return list(store.list_after(layout.index_prefix(pool), start_after))


def record_rejection(store: ObjectStore, pool: str, sample_id: str, reason: str) -> None:
    stamp = now()
    document = json.dumps({"id": sample_id, "reason": reason, "at": stamp.isoformat()}).encode()
    store.put(layout.rejection(pool, stamp, sample_id), document, "application/json")


def read_rejections(store: ObjectStore, pool: str, after: str | None) -> tuple[list[RejectedSample], str | None]:
    """Rejection records written after the cursor `after`, and the new cursor."""
    keys = list(store.list_after(layout.rejections_prefix(pool), after))
    rejected = []
    for key in keys:
        document = json.loads(store.get(key))
        rejected.append(RejectedSample(id=str(document["id"]), reason=str(document["reason"])))
    return rejected, keys[-1] if keys else after


def freeze_snapshot(store: ObjectStore, pool: str) -> SampleSnapshot:
    """Every verified sample now, as a manifest stored under its own digest (written once)."""
    refs = sorted((ref_from_index_key(pool, key) for key in list_index(store, pool)), key=lambda r: r.image)
    text = render_manifest(refs).encode()
    snapshot = SampleSnapshot(sample_count=len(refs), manifest_digest=digest_bytes(text))
    key = layout.snapshot(pool, snapshot.manifest_digest)
    if not store.exists(key):
        store.put(key, text, "text/plain")
    return snapshot


def read_snapshot(store: ObjectStore, pool: str, snapshot: SampleSnapshot) -> list[SampleRef]:
    key = layout.snapshot(pool, snapshot.manifest_digest)
    return parse_manifest(store.get(key, snapshot.manifest_digest).decode(), key)


def sample_ref(pool: str, record: SampleRecord) -> SampleRef:
    return SampleRef(
        image=layout.sample_file(pool, record.id, record.image_file),
        image_digest=record.image_digest,
        label_digest=record.label_digest,
    )


def list_sample_ids(store: ObjectStore, pool: str) -> Iterator[str]:
    """Ids of the samples whose record exists (a sample without sample.json is not in the pool)."""
    prefix = layout.samples_prefix(pool)
    for key in store.list(prefix, recursive=True):
        if key.endswith("/sample.json"):
            yield key[len(prefix) : -len("/sample.json")]


def read_record(store: ObjectStore, pool: str, sample_id: str) -> SampleRecord:
    raw = store.get(layout.sample_file(pool, sample_id, "sample.json"))
    return SampleRecord.model_validate(json.loads(raw))


def now() -> datetime:
    return datetime.now(UTC)
