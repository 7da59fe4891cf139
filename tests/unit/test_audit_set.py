"""The Gate 3 audit set: which documents qualify, the seeded draw, the set's names and manifest."""

from __future__ import annotations

import io
import json
import random
import shlex
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from PIL import Image

from ballast.api import layout
from ballast.api.contracts import digest_bytes
from ballast.api.params import GateThresholds
from ballast.api.samples import SampleError, parse_manifest
from ballast.cli.auditset import (
    AuditError,
    Document,
    audit_set,
    check_document,
    document_ids,
    draw,
    gate3_instructions,
    render_audit_manifest,
    trained_on,
)


def a_document(name: str, image: bytes | None = None, labels: str = "0 0.5 0.5 0.1 0.1\n") -> Document:
    image = image if image is not None else name.encode()
    return Document(name, image, labels, "png", digest_bytes(image), digest_bytes(labels.encode()))


def documents(n: int) -> list[Document]:
    return [a_document(f"images/doc{i:03}.png") for i in range(n)]


def names(chosen: tuple[Document, ...]) -> list[str]:
    return [d.name for d in chosen]


def a_png(side: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (200, 200, 200)).save(buffer, "PNG")
    return buffer.getvalue()


# ---- the draw ------------------------------------------------------------------------------------
def test_the_same_documents_and_seed_draw_the_same_set_whatever_the_listing_order() -> None:
    pool = documents(150)
    shuffled = random.Random(99).sample(pool, len(pool))
    assert names(draw(pool, 100, seed=7).chosen) == names(draw(shuffled, 100, seed=7).chosen)


def test_renaming_the_files_draws_the_same_images() -> None:
    pool = documents(150)
    renamed = [replace(d, name=f"renamed/{len(pool) - i}.png") for i, d in enumerate(pool)]
    first = {d.image_digest for d in draw(pool, 20, seed=3).chosen}
    assert {d.image_digest for d in draw(renamed, 20, seed=3).chosen} == first


def test_another_seed_draws_another_set() -> None:
    pool = documents(150)
    assert names(draw(pool, 100, seed=1).chosen) != names(draw(pool, 100, seed=2).chosen)


@pytest.mark.parametrize(
    ("available", "count", "allow_fewer", "drawn"),
    [
        (150, 100, False, 100),
        (100, 100, False, 100),
        (40, 100, True, 40),
        (150, 1, False, 1),
    ],
)
def test_the_draw_holds_count_documents_or_all_when_fewer_are_allowed(
    available: int, count: int, allow_fewer: bool, drawn: int
) -> None:
    result = draw(documents(available), count, seed=5, allow_fewer=allow_fewer)
    assert len(result.chosen) == drawn
    assert len(set(names(result.chosen))) == drawn
    assert result.available == available


@pytest.mark.parametrize(
    ("available", "count", "allow_fewer", "message"),
    [
        (99, 100, False, "only 99 distinct reviewed documents qualify, fewer than --count 100"),
        (99, 100, False, "pass --allow-fewer to build a set of 99"),
        (0, 100, True, "no document qualifies"),
        (10, 0, False, "--count must be at least 1"),
    ],
)
def test_a_draw_that_cannot_be_made_as_asked_is_refused_saying_why(
    available: int, count: int, allow_fewer: bool, message: str
) -> None:
    with pytest.raises(AuditError, match=message):
        draw(documents(available), count, seed=5, allow_fewer=allow_fewer)


def test_files_with_the_same_image_count_once() -> None:
    same = b"one page"
    pool = [*documents(99), a_document("a/copy.png", same), a_document("b/copy.png", same), a_document("c.png", same)]
    with pytest.raises(AuditError, match="only 100 distinct"):
        draw(pool, 101, seed=5)
    result = draw(pool, 100, seed=5)
    assert result.available == 100
    assert result.duplicates == (("b/copy.png", "a/copy.png"), ("c.png", "a/copy.png"))
    assert len({d.image_digest for d in result.chosen}) == 100


def test_a_longer_draw_with_the_same_seed_starts_with_the_shorter_one() -> None:
    pool = documents(150)
    assert set(names(draw(pool, 100, seed=8).chosen)) <= set(names(draw(pool, 120, seed=8).chosen))


# ---- which documents qualify ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "labels", "message"),
    [
        (a_png(), None, "doc.png: no label file"),
        (b"not an image", "0 0.5 0.5 0.1 0.1\n", "doc.png: not a decodable image"),
        (a_png(4), "", "smaller than 10 px"),
        (a_png(), "8 0.5 0.5 0.1 0.1\n", "doc.png labels line 1: class 8 is out of range 0..7"),
        (a_png(), "0 0.5 0.5 0.1\n", "doc.png labels line 1: expected 5 fields"),
    ],
)
def test_a_document_that_is_not_a_valid_reviewed_sample_is_refused_naming_the_file(
    image: bytes, labels: str | None, message: str
) -> None:
    with pytest.raises(SampleError, match=message):
        check_document("doc.png", image, labels, 8)


@pytest.mark.parametrize("labels", ["0 0.5 0.5 0.1 0.1\n", ""], ids=["with objects", "empty: nothing to find"])
def test_a_labelled_document_qualifies_with_the_digests_of_its_bytes(labels: str) -> None:
    image = a_png()
    document = check_document("doc.png", image, labels, 8)
    assert (document.extension, document.image_digest, document.label_digest) == (
        "png",
        digest_bytes(image),
        digest_bytes(labels.encode()),
    )


def test_documents_whose_image_is_trained_on_are_found_with_where() -> None:
    pool = documents(5)
    trained = {pool[1].image_digest: "already a sample in pool p", digest_bytes(b"elsewhere"): "in the anchor"}
    assert trained_on(pool, trained) == [(pool[1], "already a sample in pool p")]


# ---- the set's keys and manifest -----------------------------------------------------------------
def test_documents_sharing_a_file_stem_get_distinct_folders() -> None:
    chosen = [a_document("train/a.png"), a_document("val/a.png"), a_document("b c.jpg")]
    ids = document_ids(chosen)
    assert ids[2] == "b_c"
    assert ids[0].startswith("a-") and ids[1].startswith("a-") and ids[0] != ids[1]


def test_the_set_is_named_by_its_documents_so_the_same_draw_has_the_same_keys() -> None:
    chosen = documents(3)
    built = audit_set("invoices", chosen)
    assert built.manifest_key == layout.audit_manifest("invoices", built.digest)
    assert audit_set("invoices", list(reversed(chosen))).digest == built.digest
    assert audit_set("invoices", chosen[:2]).digest != built.digest


def test_the_manifest_is_what_gate_3_parses_and_records_how_it_was_drawn() -> None:
    pool = documents(10)
    drawn = draw(pool, 4, seed=42)
    built = audit_set("invoices", drawn.chosen)
    text = render_audit_manifest(built, drawn, 4, 42, "/data/audit", "ana", datetime(2026, 1, 2, tzinfo=UTC))
    refs = parse_manifest(text)
    assert refs == list(built.refs) and len(refs) == 4
    assert "seed 42" in text and "reviewed by ana" in text
    stored = {key: data for key, data, _ in built.files}
    for ref, document in zip(refs, sorted(drawn.chosen, key=lambda d: d.name), strict=True):
        assert ref.image.startswith(layout.audit_set("invoices", built.digest))
        assert digest_bytes(stored[ref.image]) == ref.image_digest == document.image_digest
        assert digest_bytes(stored[ref.label]) == ref.label_digest


def test_the_printed_patch_sets_the_pools_gate_3_audit_manifest() -> None:
    text = gate3_instructions("ml", "invoices", "audit/invoices/abc/manifest.txt")
    command = shlex.split(next(line for line in text.splitlines() if "kubectl" in line))
    assert command[:6] == ["kubectl", "-n", "ml", "patch", "finetunepool", "invoices"]
    gates = GateThresholds.model_validate(json.loads(command[command.index("-p") + 1])["spec"]["gates"])
    assert gates.ab_comparison.enabled
    assert gates.ab_comparison.audit_manifest == "audit/invoices/abc/manifest.txt"
    assert "auditManifest: audit/invoices/abc/manifest.txt" in text
