"""The `ballast` commands for people: add reviewed samples, approve a Review verdict, roll back, look.

    ballast samples add POOL --image F --labels F --reviewed-by NAME [--id ID] [--no-objects]
    ballast samples import POOL DIR --reviewed-by NAME [--format yolo|label-studio|cvat]
    ballast samples sample-audit POOL --from DIR|inbox ...   (the Gate 3 audit set: ballast.cli.audit)
    ballast samples import POOL PATH --reviewed-by NAME --format label-studio-json|cvat-xml   (see cli/inbox.py)
    ballast runs approve RUN --reason TEXT        (in your own authenticated name)
    ballast release rollback RELEASE [--to VERSION]
    ballast status [-o table|json|yaml]   (ballast.cli.status)

They act on the current kubeconfig context's namespace unless `-n` says otherwise. Samples go
through the same validation as everywhere: a bad or unreviewed sample is refused with the field at
fault, and nothing of it is written.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ballast.api.common import Approval
from ballast.api.samples import SampleError
from ballast.cli.errors import NotFound, Refused, UsageError, from_failure

REVIEWED_FORMATS = ("label-studio-json", "cvat-xml")  # ballast.cli.inbox reads these

if TYPE_CHECKING:
    from ballast.adapters.objectstore import ObjectStore


def register(commands: argparse._SubParsersAction) -> None:
    samples = commands.add_parser("samples", help="add human-verified samples to a pool").add_subparsers(
        dest="verb", required=True
    )
    add = samples.add_parser("add", help="one image and its YOLO label file")
    add.add_argument("pool")
    add.add_argument("--image", type=Path, required=True)
    add.add_argument("--labels", type=Path, required=True, help="YOLO label file: class x y w h per line")
    add.add_argument(
        "--no-objects",
        action="store_true",
        help="the page truly has no objects: the label file is empty on purpose (an empty one is refused otherwise)",
    )
    add.add_argument("--id", default=None, help="sample id (default: the image file's stem)")
    add.add_argument("--document-id", default=None)
    add.add_argument("--reported-by", default="unknown")
    add.add_argument("--reviewed-by", required=True, help="the human who verified the labels")
    add.set_defaults(handler=_samples_add)
    importer = samples.add_parser(
        "import",
        help="a YOLO folder, a Label Studio / CVAT YOLO export, or a reviewed export of `ballast inbox export`",
    )
    importer.add_argument("pool")
    importer.add_argument("directory", type=Path, help="the export's folder (or its JSON / XML file)")
    importer.add_argument("--format", choices=("yolo", "label-studio", "cvat", *REVIEWED_FORMATS), default="yolo")
    importer.add_argument(
        "--reviewed-by", required=True, help="the reviewer, where the export does not name one (JSON / XML formats)"
    )
    importer.add_argument("--reported-by", default="unknown")
    importer.set_defaults(handler=_samples_import)
    from ballast.cli import audit

    audit.register(samples)

    runs = commands.add_parser("runs", help="FineTuneRuns").add_subparsers(dest="verb", required=True)
    approve = runs.add_parser(
        "approve",
        help="approve a run whose verdict is Review, in your own name (needs the `approve` verb on finetuneruns)",
    )
    approve.add_argument("run")
    approve.add_argument("--reason", required=True, help="why the Review verdict is acceptable")
    approve.set_defaults(handler=_runs_approve)
    retry = runs.add_parser(
        "retry", help="try a Failed or rejected run again on the same samples, as a new run (trigger Retry)"
    )
    retry.add_argument("run")
    retry.set_defaults(handler=_runs_retry)

    release = commands.add_parser("release", help="ModelReleases").add_subparsers(dest="verb", required=True)
    rollback = release.add_parser("rollback", help="go back to the previous (or a named) released model")
    rollback.add_argument("release")
    rollback.add_argument("--to", default=None, help="version to go back to (default: the previous one)")
    rollback.add_argument(
        "--despite-git",
        action="store_true",
        help="patch a release that Argo CD or Flux applies (it lasts until Git's next sync)",
    )
    rollback.set_defaults(handler=_release_rollback)

    status = commands.add_parser("status", help="pools, runs and releases at a glance")
    status.add_argument(
        "-o", "--output", choices=("table", "json", "yaml"), default="table", help="table (default), json or yaml"
    )
    from ballast.cli.status import show_status

    status.set_defaults(handler=show_status)
    for parser in (add, importer, approve, retry, rollback, status):
        parser.add_argument("-n", "--namespace", default=None)


def _namespace(args: argparse.Namespace) -> str:
    if getattr(args, "namespace", None):
        return str(args.namespace)
    from ballast.adapters.kube import current_namespace

    return current_namespace()


def _kube():  # type: ignore[no-untyped-def]
    from ballast.adapters.kube import connect

    return connect()


def _pool(kube: Any, namespace: str, pool: str):  # type: ignore[no-untyped-def]
    """The pool's body, spec and object store."""
    from ballast.adapters.kube import get_custom, object_store
    from ballast.api.finetunepool import FineTunePoolSpec

    body = get_custom(kube, namespace, "finetunepools", pool)
    if body is None:
        raise NotFound(f"FineTunePool {pool} not found in namespace {namespace}")
    spec = FineTunePoolSpec.model_validate(body["spec"])
    return body, spec, object_store(kube, namespace, spec.object_store)


def notify_pool(kube: Any, pool_body: dict[str, Any], added: int, reviewer: str) -> None:
    """Tell the operator the pool grew (a labelled Event it watches), so it counts at once.

    Without the right to post Events the samples are still stored; the operator then counts them
    at its next resync of the pool (`--pool-resync-seconds`, default 5 minutes).
    """
    from ballast.adapters.kube import ApiException, post_event
    from ballast.api.conditions import Reason
    from ballast.policy.conditions import Event
    from ballast.policy.manifests import LABEL_POOL

    name = pool_body["metadata"]["name"]
    event = Event(Reason.SAMPLES_ADDED, f"{added} reviewed samples added by {reviewer}")
    try:
        post_event(kube, pool_body, event, labels={LABEL_POOL: name})
    except ApiException as error:
        print(
            f"note: samples stored, but the operator was not notified ({error.status} {error.reason}); "
            "it counts them at its next resync of the pool",
            file=sys.stderr,
        )


def read_labels(path: Path, name: str) -> str:
    """A label file's text; SampleError naming `name` (the flag, or "label file") and the file when it
    cannot be read. A missing file is never taken as "no objects": that would teach the model to miss
    what the user reported."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SampleError(f"{name} {path}: no such file") from None
    except IsADirectoryError:
        raise SampleError(f"{name} {path}: is a folder, not a label file") from None
    except UnicodeDecodeError as error:
        raise SampleError(f"{name} {path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise SampleError(f"{name} {path}: cannot be read ({error.strerror or error})") from None


def has_boxes(labels: str) -> bool:
    return any(line.strip() for line in labels.splitlines())


def checked_labels(args: argparse.Namespace) -> str:
    """`--labels` read, and agreeing with `--no-objects`: an empty page must be said to be empty."""
    labels = read_labels(args.labels, "--labels")
    if not has_boxes(labels) and not args.no_objects:
        raise SampleError(
            f"--labels {args.labels} is empty; if the page truly has no objects, say so with --no-objects"
        )
    if has_boxes(labels) and args.no_objects:
        raise SampleError(f"--no-objects, but --labels {args.labels} has boxes; drop one or the other")
    return labels


def _sample(image: Path, labels: str, sample_id: str, args: argparse.Namespace, source: str):  # type: ignore[no-untyped-def]
    from ballast.adapters.pool import NewSample

    stamp = datetime.now(UTC)
    return NewSample(
        sample_id=sample_id,
        image=image.read_bytes(),
        labels=labels,
        document_id=getattr(args, "document_id", None) or sample_id,
        reported_by=args.reported_by,
        reported_at=stamp,
        reviewed_by=args.reviewed_by.strip() or None,
        reviewed_at=stamp,
        label_source=source,  # type: ignore[arg-type]
    )


def _samples_add(args: argparse.Namespace) -> int:
    from ballast.adapters.pool import add_sample

    try:
        labels = checked_labels(args)
    except SampleError as error:
        raise UsageError(str(error)) from None
    if not args.image.is_file():
        raise UsageError(f"--image {args.image}: no such file")
    kube = _kube()
    body, spec, store = _pool(kube, _namespace(args), args.pool)
    sample = _sample(args.image, labels, args.id or args.image.stem, args, "ballast-cli")
    try:
        record = add_sample(store, args.pool, sample, len(spec.classes))
    except SampleError as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1
    notify_pool(kube, body, 1, record.reviewed_by)
    print(f"added {record.id} to pool {args.pool} ({record.boxes} boxes, reviewed by {record.reviewed_by})")
    return 0


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def export_pairs(directory: Path, fmt: str) -> list[tuple[Path, Path]]:
    """(image, label) pairs of a YOLO folder or a Label Studio / CVAT YOLO export.

    All three put images under `images/` and labels under `labels/` with the same stem (CVAT nests
    them under `obj_train_data/`); a flat folder of image + .txt pairs works too.
    """
    roots = [directory / "obj_train_data"] if fmt == "cvat" and (directory / "obj_train_data").exists() else [directory]
    pairs = []
    for root in roots:
        for image in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            candidates = [image.with_suffix(".txt")]
            if "images" in image.parts:
                index = len(image.parts) - 1 - image.parts[::-1].index("images")
                candidates.append(Path(*image.parts[:index], "labels", *image.parts[index + 1 :]).with_suffix(".txt"))
            label = next((c for c in candidates if c.exists()), candidates[-1])
            pairs.append((image, label))
    return pairs


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    already_there: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # image file name -> why
    skipped: list[str] = field(default_factory=list)  # pages nobody reviewed (annotation-tool exports)


def import_export(
    store: ObjectStore, pool: str, num_classes: int, directory: Path, fmt: str, args: argparse.Namespace
) -> ImportReport:
    """Add every (image, label) pair of an export; a bad pair is refused (with why) and writes no
    sample; a sample already in the pool is left as it is (samples are immutable). An image without
    its label file is refused; an empty label file is a page without objects (the YOLO convention)."""
    from ballast.adapters.pool import IndexedIds, SampleExists, add_sample

    source = {"yolo": "yolo-folder", "label-studio": "label-studio", "cvat": "cvat"}[fmt]
    report = ImportReport()
    indexed = IndexedIds(store, pool)
    for image, label in export_pairs(directory, fmt):
        try:
            labels = read_labels(label, "label file")
            sample = _sample(image, labels, image.stem, args, source)
            record = add_sample(store, pool, sample, num_classes, indexed)
            report.added.append(record.id)
        except SampleExists:
            report.already_there.append(image.stem)
        except SampleError as error:
            report.refused[image.name] = str(error)
    return report


def _samples_import(args: argparse.Namespace) -> int:
    kube = _kube()
    body, spec, store = _pool(kube, _namespace(args), args.pool)
    if args.format in REVIEWED_FORMATS:
        from ballast.cli.inbox import import_reviewed

        try:
            report = import_reviewed(store, args.pool, spec.classes, args.directory, args.format, args)
        except SampleError as error:
            print(f"refused: {error}", file=sys.stderr)
            return 1
    elif not export_pairs(args.directory, args.format):
        print(f"refused: no images found under {args.directory}", file=sys.stderr)
        return 1
    else:
        report = import_export(store, args.pool, len(spec.classes), args.directory, args.format, args)
    if report.added:
        notify_pool(kube, body, len(report.added), args.reviewed_by)
    for name, why in report.refused.items():
        print(f"refused {name}: {why}", file=sys.stderr)
    print(
        f"imported {len(report.added)} samples into pool {args.pool}; "
        f"{len(report.already_there)} already there; refused {len(report.refused)}"
        + (f"; skipped {len(report.skipped)} nobody reviewed" if report.skipped else "")
    )
    return 1 if report.refused else 0


def _runs_approve(args: argparse.Namespace) -> int:
    """Approve in the caller's own name: who they are comes from the apiserver (a
    SelfSubjectReview), and the admission policy refuses any other name, any user without the
    `approve` verb, and any run whose verdict is not Review."""
    from ballast.adapters.kube import ApiException, get_custom, patch_custom, whoami

    kube = _kube()
    namespace = _namespace(args)
    run = get_custom(kube, namespace, "finetuneruns", args.run)
    if run is None:
        raise NotFound(f"FineTuneRun {args.run} not found in namespace {namespace}")
    status = run.get("status", {})
    verdict = status.get("verdict") or "none yet"
    if verdict != "Review" or not status.get("model"):
        raise Refused(f"run {args.run} has verdict {verdict}; only a Review verdict is approved")
    me = whoami(kube)
    approval = Approval(
        by=me.username,
        groups=me.groups,
        at=datetime.now(UTC).replace(microsecond=0),
        reason=args.reason,
        model_digest=status["model"]["digest"],
    )
    try:
        patch_custom(kube, namespace, "finetuneruns", args.run, {"spec": {"approval": approval.to_wire()}})
    except ApiException as error:
        raise from_failure(error, "the apiserver did not accept the approval") from None
    print(f"approved {args.run} ({status['model'].get('version')}) as {me.username}")
    return 0


def _runs_retry(args: argparse.Namespace) -> int:
    from ballast.cli.retry import runs_retry

    return runs_retry(args, _kube(), _namespace(args))


def _release_rollback(args: argparse.Namespace) -> int:
    from ballast.adapters.kube import get_custom, patch_custom
    from ballast.policy.gitops import git_change, git_owner

    kube = _kube()
    namespace = _namespace(args)
    release = get_custom(kube, namespace, "modelreleases", args.release)
    if release is None:
        raise NotFound(f"ModelRelease {args.release} not found in namespace {namespace}")
    history = [h["model"]["version"] for h in release.get("status", {}).get("history", [])]
    current = release.get("status", {}).get("currentModel")
    target = args.to or next((v for v in history if v != current), None)
    if target is None:
        raise NotFound(f"{args.release} has no earlier release to roll back to")
    owner = git_owner(release["metadata"])
    if owner is not None and not args.despite_git:
        # Patching what Git owns lasts until the next self-heal, which rolls forward again.
        print(git_change("ModelRelease", namespace, args.release, "spec.model", current, target), end="")
        raise Refused(
            f"ModelRelease {args.release} is applied by {owner.tool} ({owner.source}): roll back in Git, "
            "with the change above (--despite-git patches it anyway, until Git puts it back)"
        )
    if target not in history:
        print(f"note: {target} was never released by {args.release}; it must still pass its gates", file=sys.stderr)
    patch_custom(kube, namespace, "modelreleases", args.release, {"spec": {"model": target}})
    print(f"{args.release}: {current} -> {target}")
    return 0
