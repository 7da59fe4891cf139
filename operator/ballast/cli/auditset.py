"""What a Gate 3 audit set is, without I/O: which documents qualify, the seeded draw, the manifest.

The seed's Gate 3 runs both models on 100 random production documents and compares them per class.
So every document is checked as a sample is (a decodable image, a strict YOLO label file written by
a person), a document is counted once however many files carry its image, and the draw depends
only on the documents and the seed: the same folder and seed give the same set, whatever the file
names or listing order. A set is named by the digest of what it holds (`layout.audit_set`).
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from ballast.adapters.pool import check_image
from ballast.api import layout
from ballast.api.contracts import digest_bytes
from ballast.api.samples import SampleError, SampleRef, parse_labels, render_manifest

DEFAULT_COUNT = 100  # the seed's Gate 3: "100 random production documents"

T = TypeVar("T")


class AuditError(ValueError):
    """The set cannot be built as asked; the message says why and what to do instead."""


@dataclass(frozen=True)
class Document:
    """One reviewed production document that qualifies for an audit set."""

    name: str  # where the reviewer finds it (its path in the labelled folder)
    image: bytes
    labels: str
    extension: str
    image_digest: str
    label_digest: str


def check_document(name: str, image: bytes, labels: str | None, num_classes: int) -> Document:
    """The document, or SampleError naming the file and the field at fault."""
    if labels is None:
        raise SampleError(f"{name}: no label file; an audit document needs a person's labels (an empty file: none)")
    extension = check_image(image, name)
    parse_labels(labels, num_classes, f"{name} labels")
    return Document(name, image, labels, extension, digest_bytes(image), digest_bytes(labels.encode()))


def seeded_order(items: Sequence[T], seed: int) -> list[T]:
    """`items` in an order fixed by the seed alone; a longer draw starts with the shorter one."""
    return random.Random(seed).sample(list(items), len(items))


@dataclass(frozen=True)
class Draw:
    chosen: tuple[Document, ...]  # sorted by name
    available: int  # distinct qualifying documents the draw was made from
    duplicates: tuple[tuple[str, str], ...]  # (name, the name kept for the same image)


def distinct(documents: Iterable[Document]) -> tuple[list[Document], list[tuple[str, str]]]:
    """One document per image digest (the first by name); the others as (name, name kept)."""
    kept: dict[str, Document] = {}
    duplicates = []
    for document in sorted(documents, key=lambda d: d.name):
        first = kept.setdefault(document.image_digest, document)
        if first is not document:
            duplicates.append((document.name, first.name))
    return list(kept.values()), duplicates


def draw(documents: Iterable[Document], count: int, seed: int, allow_fewer: bool = False) -> Draw:
    """`count` distinct documents at random; AuditError when fewer exist and `allow_fewer` is off."""
    if count < 1:
        raise AuditError(f"--count must be at least 1, got {count}")
    kept, duplicates = distinct(documents)
    if not kept:
        raise AuditError("no document qualifies: nothing to draw from")
    if len(kept) < count and not allow_fewer:
        raise AuditError(
            f"only {len(kept)} distinct reviewed documents qualify, fewer than --count {count}: "
            f"label more, or pass --allow-fewer to build a set of {len(kept)}"
        )
    by_image = sorted(kept, key=lambda d: d.image_digest)  # not by name: renaming files changes nothing
    chosen = sorted(seeded_order(by_image, seed)[:count], key=lambda d: d.name)
    return Draw(tuple(chosen), len(kept), tuple(duplicates))


def trained_on(documents: Iterable[Document], trained: Mapping[str, str]) -> list[tuple[Document, str]]:
    """Documents a model may have been trained on, with where: `trained` maps image digests to
    where they are trained on (a pool sample, the anchor train set)."""
    return [(d, trained[d.image_digest]) for d in documents if d.image_digest in trained]


def safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in text)[:100].strip(".") or "document"


def document_ids(chosen: Sequence[Document]) -> list[str]:
    """A folder name per document: its file stem, made unique with its image digest where two share one."""
    stems = [safe_name(d.name.rsplit("/", 1)[-1].rsplit(".", 1)[0]) for d in chosen]
    return [
        stem if stems.count(stem) == 1 else f"{stem}-{d.image_digest.removeprefix('sha256:')[:12]}"
        for stem, d in zip(stems, chosen, strict=True)
    ]


def set_digest(chosen: Iterable[Document]) -> str:
    """What names the set: its documents' image and label digests, in a fixed order."""
    lines = sorted(f"{d.image_digest} {d.label_digest}\n" for d in chosen)
    return digest_bytes("".join(lines).encode())


@dataclass(frozen=True)
class AuditSet:
    pool: str
    digest: str
    files: tuple[tuple[str, bytes, str], ...]  # (key, bytes, content type): images and labels
    refs: tuple[SampleRef, ...]

    @property
    def manifest_key(self) -> str:
        return layout.audit_manifest(self.pool, self.digest)


def audit_set(pool: str, chosen: Sequence[Document]) -> AuditSet:
    digest = set_digest(chosen)
    files, refs = [], []
    for document, doc_id in zip(chosen, document_ids(chosen), strict=True):
        image_key = layout.audit_file(pool, digest, doc_id, f"image.{document.extension}")
        content_type = f"image/{'jpeg' if document.extension == 'jpg' else document.extension}"
        files.append((image_key, document.image, content_type))
        files.append((layout.label_beside(image_key), document.labels.encode(), "text/plain"))
        refs.append(SampleRef(image=image_key, image_digest=document.image_digest, label_digest=document.label_digest))
    return AuditSet(pool, digest, tuple(files), tuple(sorted(refs, key=lambda r: r.image)))


def render_audit_manifest(
    built: AuditSet, drawn: Draw, count: int, seed: int, source: str, reviewed_by: str, at: datetime
) -> str:
    """The manifest Gate 3 reads (`parse_manifest` skips the `#` header that records how it was drawn)."""
    header = [
        f"# Gate 3 audit set of pool {built.pool}: set gates.abComparison.auditManifest to {built.manifest_key}",
        f"# {len(built.refs)} of {drawn.available} distinct reviewed documents, drawn at random with seed {seed}"
        f" (--count {count})",
        f"# from {source}; labels reviewed by {reviewed_by}; built {at.isoformat(timespec='seconds')}",
        "# audit documents stay out of the pool: a model is never judged on what it was trained on",
    ]
    return "".join(line + "\n" for line in header) + render_manifest(list(built.refs))


def gate3_instructions(namespace: str, pool: str, manifest_key: str) -> str:
    """The exact lines that point the pool's Gate 3 at the set."""
    patch = {"spec": {"gates": {"abComparison": {"enabled": True, "auditManifest": manifest_key}}}}
    body = json.dumps(patch, separators=(",", ":"))
    return (
        "point the pool's Gate 3 at it:\n"
        f"  kubectl -n {namespace} patch finetunepool {pool} --type merge -p '{body}'\n"
        "or in the FineTunePool's YAML:\n"
        "  spec:\n"
        "    gates:\n"
        "      abComparison:\n"
        "        enabled: true\n"
        f"        auditManifest: {manifest_key}\n"
    )
