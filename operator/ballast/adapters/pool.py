"""Pool samples in the object store: validated intake, and reading what a pool holds.

Layout: `pool/<pool>/samples/<id>/image.<ext>`, `label.txt`, `sample.json`. A sample exists once
its `sample.json` exists; it is written last, so an interrupted intake leaves nothing that counts,
and an existing sample is never overwritten (samples are immutable and never deleted).
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from ballast.adapters.objectstore import ObjectStore
from ballast.api.contracts import LabelSource, SampleRecord, digest_bytes
from ballast.api.samples import SampleError, SampleRef, parse_labels

MAX_IMAGE_BYTES = 20 * 1024 * 1024
MIN_IMAGE_SIDE = 10
IMAGE_FORMATS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "WEBP": "webp"}


def sample_prefix(pool: str, sample_id: str) -> str:
    return f"pool/{pool}/samples/{sample_id}"


def check_image(data: bytes, source: str = "image") -> str:
    """Decode the whole image; return its file extension or raise SampleError saying why not."""
    if not data:
        raise SampleError(f"{source}: empty file")
    if len(data) > MAX_IMAGE_BYTES:
        raise SampleError(f"{source}: {len(data)} bytes is over the {MAX_IMAGE_BYTES} byte limit")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                kind = image.format
                image.load()  # a truncated file fails here, not at open()
                width, height = image.size
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
    pass


def add_sample(store: ObjectStore, pool: str, sample: NewSample, num_classes: int) -> SampleRecord:
    """Validate, then write image, labels, record, and last the index entry that makes it count.

    Nothing is written for a bad sample; its refusal is recorded (reason only) for the pool's status.
    """
    try:
        record, extension = validate(sample, num_classes)
    except SampleError as error:
        record_rejection(store, pool, sample.sample_id, str(error))
        raise
    base = sample_prefix(pool, record.id)
    if store.exists(f"{base}/sample.json"):
        raise SampleExists(f"sample {record.id!r} is already in pool {pool}; samples are immutable")
    store.put(f"{base}/image.{extension}", sample.image, f"image/{'jpeg' if extension == 'jpg' else extension}")
    store.put(f"{base}/label.txt", sample.labels.encode(), "text/plain")
    store.put(f"{base}/sample.json", record.model_dump_json(by_alias=True).encode(), "application/json")
    store.put(index_key(pool, record, now()), b"", "text/plain")
    return record


# ---- the pool index ------------------------------------------------------------------------------
# One empty object per verified sample, whose key carries everything a run's manifest needs:
#   pool/<pool>/index/<written-at, sortable>~<id>~<image file>~<image hex>~<label hex>
# Counting is a listing (1000 keys per call), incremental with start-after; no sample is read.
#
# Writers run concurrently (several importers, several threads), so a key stamped earlier can
# appear after a later one was listed. The counting cursor therefore only passes keys older than
# SETTLE_SECONDS (by the writer's clock, stamped just before its PUT); younger keys are listed and
# counted again on every reconcile until they settle. A key is missed only if it became visible
# more than SETTLE_SECONDS after its stamp (a writer clock that far behind, or a stalled PUT).

_SEP = "~"
_STAMP = "%Y%m%dT%H%M%S%fZ"
SETTLE_SECONDS = 300.0


def index_prefix(pool: str) -> str:
    return f"pool/{pool}/index/"


def index_key(pool: str, record: SampleRecord, written_at: datetime) -> str:
    stamp = written_at.astimezone(UTC).strftime(_STAMP)
    return index_prefix(pool) + _SEP.join(
        (stamp, record.id, record.image_file, record.image_digest[7:], record.label_digest[7:])
    )


def index_stamp(key: str) -> datetime:
    return datetime.strptime(key.rsplit("/", 1)[-1].split(_SEP, 1)[0], _STAMP).replace(tzinfo=UTC)


@dataclass(frozen=True)
class IndexCount:
    total: int  # every index key listed: settled ones plus the young tail
    cursor: str | None  # the last settled key; listing resumes after it
    settled: int  # keys up to and including the cursor


def count_index(
    keys_after_cursor: list[str], cursor: str | None, settled: int, now: datetime, settle: float = SETTLE_SECONDS
) -> IndexCount:
    """Advance the count over the keys listed after `cursor` (sorted, as the store lists them)."""
    horizon = now - timedelta(seconds=settle)
    newly_settled = 0
    for key in keys_after_cursor:
        if index_stamp(key) >= horizon:
            break
        newly_settled += 1
    if newly_settled:
        cursor = keys_after_cursor[newly_settled - 1]
    return IndexCount(total=settled + len(keys_after_cursor), cursor=cursor, settled=settled + newly_settled)


def ref_from_index_key(pool: str, key: str) -> SampleRef:
    _stamp, sample_id, image_file, image_hex, label_hex = key.rsplit("/", 1)[-1].split(_SEP)
    return SampleRef(
        image=f"{sample_prefix(pool, sample_id)}/{image_file}",
        image_digest=f"sha256:{image_hex}",
        label_digest=f"sha256:{label_hex}",
    )


def list_index(store: ObjectStore, pool: str, start_after: str | None = None) -> list[str]:
    """Index keys after `start_after` (relative to the store prefix), in order."""
    return list(store.list_after(index_prefix(pool), start_after))


def record_rejection(store: ObjectStore, pool: str, sample_id: str, reason: str) -> None:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    safe_id = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in sample_id)[:100] or "unnamed"
    document = json.dumps({"id": sample_id, "reason": reason, "at": stamp}).encode()
    store.put(f"pool/{pool}/rejected/{stamp}{_SEP}{safe_id}.json", document, "application/json")


def sample_ref(pool: str, record: SampleRecord) -> SampleRef:
    return SampleRef(
        image=f"{sample_prefix(pool, record.id)}/{record.image_file}",
        image_digest=record.image_digest,
        label_digest=record.label_digest,
    )


def list_sample_ids(store: ObjectStore, pool: str) -> Iterator[str]:
    """Ids of the samples whose record exists (a sample without sample.json is not in the pool)."""
    prefix = f"pool/{pool}/samples/"
    for key in store.list(prefix, recursive=True):
        if key.endswith("/sample.json"):
            yield key[len(prefix) : -len("/sample.json")]


def read_record(store: ObjectStore, pool: str, sample_id: str) -> SampleRecord:
    raw = store.get(f"{sample_prefix(pool, sample_id)}/sample.json")
    return SampleRecord.model_validate(json.loads(raw))


def now() -> datetime:
    return datetime.now(UTC)
