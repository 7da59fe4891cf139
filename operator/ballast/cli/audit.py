"""`ballast samples sample-audit`: the seed's Gate 3 audit set, from reviewed production documents.

    ballast samples sample-audit POOL --from DIR --reviewed-by WHO [--count 100] [--seed N]
                                      [--format yolo|label-studio|cvat] [--allow-fewer]
    ballast samples sample-audit POOL --from inbox --out FOLDER [--count 100] [--seed N] [--allow-fewer]

`--from DIR` takes a folder of documents a person labelled (the layouts `ballast samples import`
reads), checks each as a sample is checked, draws `--count` of them at random (the seed is written
in the manifest's header), uploads them under `audit/<pool>/<set>/`, writes the manifest last and
prints the line that sets `gates.abComparison.auditManifest`. An image that is already a sample in
the pool, or in its anchor train set, refuses the whole set: a model must not be judged on what it
was trained on.

`--from inbox` is the first half of the path from the documents users reported to `ballast serve`
(unlabelled) to a labelled set: it draws `--count` of them into a labelling folder (images, an empty
`labels/`, `classes.txt`, a README for the reviewer), who labels them and runs `--from` that folder.
Those documents are failures, not random traffic: the README the folder carries says what that means.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from ballast.api import layout
from ballast.api.contracts import digest_bytes
from ballast.api.samples import SampleError, parse_manifest
from ballast.cli import auditset
from ballast.cli.auditset import AuditError, Document
from ballast.cli.errors import CliError, UsageError, from_failure

if TYPE_CHECKING:
    from ballast.adapters.objectstore import ObjectStore

INBOX = "inbox"


def register(samples: argparse._SubParsersAction) -> None:
    parser = samples.add_parser(
        "sample-audit", help="build the Gate 3 audit set: reviewed production documents the pool never trains on"
    )
    parser.add_argument("pool")
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        help="a folder of labelled documents, or `inbox` to draw reported documents into a labelling folder",
    )
    parser.add_argument("--count", type=int, default=auditset.DEFAULT_COUNT, help="documents to draw (default 100)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random draw (default: a fresh one)")
    parser.add_argument("--reviewed-by", default=None, help="the human who labelled the folder (with --from DIR)")
    parser.add_argument("--format", choices=("yolo", "label-studio", "cvat"), default="yolo")
    parser.add_argument("--out", type=Path, default=None, help="the labelling folder to create (with --from inbox)")
    parser.add_argument("--allow-fewer", action="store_true", help="build a smaller set when fewer than --count exist")
    parser.add_argument("-n", "--namespace", default=None)
    parser.set_defaults(handler=sample_audit)


def sample_audit(args: argparse.Namespace) -> int:
    from ballast.cli.people import _kube, _namespace, _pool

    if args.count < 1:
        raise UsageError(f"--count must be at least 1, got {args.count}")
    if args.source == INBOX and args.out is None:
        raise UsageError("--from inbox needs --out FOLDER, the labelling folder to create")
    if args.source != INBOX and not (args.reviewed_by or "").strip():
        raise UsageError("--reviewed-by is required with --from DIR: an audit set is labelled by a person")
    if args.source != INBOX and not Path(args.source).is_dir():
        raise UsageError(f"--from {args.source}: not a folder (nor `inbox`)")
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        raise UsageError(f"--out {args.out} exists and is not empty")
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    namespace = _namespace(args)
    _body, spec, store = _pool(_kube(), namespace, args.pool)
    trained = trained_images(store, args.pool, spec.anchor.train_manifest)
    try:
        if args.source == INBOX:
            return _from_inbox(store, args, spec.classes, seed, trained, namespace)
        return _from_folder(store, args, len(spec.classes), seed, trained, namespace)
    except AuditError as error:
        print(f"refused: {error}; nothing was written", file=sys.stderr)
        return 1


def trained_images(store: ObjectStore, pool: str, anchor_train_manifest: str) -> dict[str, str]:
    """Image digest -> where every run trains on it: the pool's samples and the anchor train set."""
    from ballast.adapters.objectstore import StoreRefused
    from ballast.adapters.pool import list_index

    try:
        anchor = parse_manifest(store.get(anchor_train_manifest).decode(), anchor_train_manifest)
    except StoreRefused as error:
        raise from_failure(error, "the pool's anchor.trainManifest cannot be read") from None
    except SampleError as error:
        raise CliError(f"the pool's anchor.trainManifest cannot be read: {error}") from None
    trained = {ref.image_digest: f"in the anchor train set ({anchor_train_manifest})" for ref in anchor}
    for key in list_index(store, pool):
        trained[layout.parse_index_key(key).image_digest] = f"already a sample in pool {pool}"
    return trained


# ---- --from DIR: a labelled folder becomes the set -----------------------------------------------
def read_folder(directory: Path, fmt: str, num_classes: int) -> tuple[list[Document], dict[str, str]]:
    """Every qualifying document of the folder, and why each other one was refused (by file)."""
    from ballast.cli.people import export_pairs

    documents, refused = [], {}
    for image, label in export_pairs(directory, fmt):
        name = str(image.relative_to(directory))
        try:
            labels = label.read_text() if label.exists() else None
            documents.append(auditset.check_document(name, image.read_bytes(), labels, num_classes))
        except SampleError as error:
            refused[name] = str(error)
        except UnicodeDecodeError:
            refused[name] = f"{name} labels: not UTF-8 text"
    return documents, refused


def _from_folder(
    store: ObjectStore, args: argparse.Namespace, num_classes: int, seed: int, trained: dict[str, str], namespace: str
) -> int:
    documents, refused = read_folder(Path(args.source), args.format, num_classes)
    for name, why in refused.items():
        print(f"refused {name}: {why}", file=sys.stderr)
    trained_on = auditset.trained_on(documents, trained)
    if trained_on:
        for document, where in trained_on:
            print(f"refused {document.name}: its image is {where}", file=sys.stderr)
        raise AuditError(
            f"{len(trained_on)} documents are trained on (pool samples or anchor train set), so a model would be "
            "judged on what it learned; remove them from the folder (audit documents stay out of the pool)"
        )
    drawn = auditset.draw(documents, args.count, seed, args.allow_fewer)
    for name, kept in drawn.duplicates:
        print(f"note: {name} has the same image as {kept}; counted once", file=sys.stderr)
    built = auditset.audit_set(args.pool, drawn.chosen)
    if store.exists(built.manifest_key):
        print(f"this set is already built (its header says how it was drawn): {built.manifest_key}")
    else:
        for key, data, content_type in built.files:
            store.put(key, data, content_type)
        manifest = auditset.render_audit_manifest(
            built, drawn, args.count, seed, str(args.source), args.reviewed_by.strip(), datetime.now(UTC)
        )
        store.put(built.manifest_key, manifest.encode(), "text/plain")  # last: the set exists once it does
        print(
            f"audit set of {len(built.refs)} documents, drawn with seed {seed} from {drawn.available} distinct "
            f"reviewed documents ({len(refused)} refused, {len(drawn.duplicates)} duplicates)"
        )
    if len(built.refs) < args.count:
        print(f"note: only {len(built.refs)} documents, fewer than --count {args.count} (--allow-fewer)")
    print(f"manifest: {built.manifest_key}")
    print(auditset.gate3_instructions(namespace, args.pool, built.manifest_key), end="")
    return 0


# ---- --from inbox: reported documents become a labelling folder ----------------------------------
def inbox_items(store: ObjectStore, pool: str) -> list[str]:
    """Keys of the complete inbox items (`serve` writes report.json after the image)."""
    suffix = "/report.json"
    return sorted(k[: -len(suffix)] for k in store.list(layout.inbox_prefix(pool)) if k.endswith(suffix))


def _from_inbox(
    store: ObjectStore, args: argparse.Namespace, classes: list[str], seed: int, trained: dict[str, str], namespace: str
) -> int:
    from ballast.adapters.objectstore import StoreRefused
    from ballast.adapters.pool import check_image

    items = inbox_items(store, args.pool)
    picked: list[tuple[str, str, bytes, str]] = []  # (item key, file name, image, digest)
    seen: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for item in auditset.seeded_order(items, seed):
        if len(picked) == args.count:
            break
        try:
            image_file = str(json.loads(store.get(f"{item}/report.json"))["imageFile"])
            if "/" in image_file:
                raise SampleError(f"imageFile {image_file!r} is not a file name")
            data = store.get(f"{item}/{image_file}")
            extension = check_image(data, item)
        except (SampleError, StoreRefused, ValueError, KeyError) as error:  # a broken report or a missing image
            skipped[item] = f"{type(error).__name__}: {error}"
            continue
        digest = digest_bytes(data)
        if digest in trained:
            skipped[item] = f"{trained[digest]}: trained on, not for auditing"
        elif digest in seen:
            skipped[item] = f"same image as {seen[digest]}"
        else:
            seen[digest] = item
            picked.append((item, f"{auditset.safe_name(item.rsplit('/', 1)[-1])}.{extension}", data, digest))
    for item, why in skipped.items():
        print(f"skipped {item}: {why}", file=sys.stderr)
    if not picked:
        raise AuditError(f"no usable document in {layout.inbox_prefix(args.pool)} ({len(items)} items)")
    if len(picked) < args.count and not args.allow_fewer:
        raise AuditError(
            f"only {len(picked)} usable documents in {layout.inbox_prefix(args.pool)}, fewer than --count "
            f"{args.count}: pass --allow-fewer to draw {len(picked)}"
        )
    out: Path = args.out
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(exist_ok=True)
    for _item, name, data, _digest in picked:
        (out / "images" / name).write_bytes(data)
    (out / "classes.txt").write_text("".join(f"{name}\n" for name in classes))
    (out / "sources.txt").write_text("".join(f"images/{n} {item} {d}\n" for item, n, _data, d in picked))
    (out / "README.md").write_text(reviewer_readme(args.pool, namespace, len(picked), len(items), seed, out))
    print(f"drew {len(picked)} of {len(items)} inbox documents (seed {seed}) into {out} for labelling")
    print(f"next: label them as {out / 'README.md'} says, then run")
    print(f"  ballast samples sample-audit {args.pool} --from {out} --reviewed-by YOU -n {namespace}")
    return 0


def reviewer_readme(pool: str, namespace: str, drawn: int, total: int, seed: int, out: Path) -> str:
    return f"""# Gate 3 audit documents for pool {pool}: label them

{drawn} documents drawn at random (seed {seed}) from the {total} that users reported to
`ballast serve` (`inbox/{pool}/`). `sources.txt` says where each came from.

1. For every image in `images/`, write `labels/<same name>.txt`: one object per line,
   `class x_center y_center width height`, normalized to [0, 1]; the class is the line number
   (from 0) of its name in `classes.txt`. Label every object of those classes, not only the one
   the user reported. A document with nothing to label gets an empty file; a document without a
   label file is left out of the set. A Label Studio or CVAT YOLO export of this folder works too
   (`--format label-studio|cvat`).
2. Build the set: `ballast samples sample-audit {pool} --from {out} --reviewed-by YOU -n {namespace}`
   (it draws `--count`, default 100, of the labelled documents: label a few extra if some may be
   unusable). It prints the line that sets the pool's `gates.abComparison.auditManifest`.

These documents stay out of the pool: do not add them with `ballast samples import` or the inbox
review. A model judged on documents it trained on passes Gate 3 by memory, not by skill; the
command refuses any image already in the pool, but only when the set is built.

Bias: the inbox holds documents users reported as failures, not random production traffic, which
is what the seed's Gate 3 asks for. On failures both models score lower than on typical documents,
and a candidate fine-tuned on similar failures looks better than it would on everyday traffic;
classes that rarely fail are thin here. Read Gate 3 on this set as "no worse on hard documents";
for the seed's unbiased comparison, label a random draw of production documents and use `--from`.
"""
