"""Where everything lives in a pool's object store: the one statement of the layout.

Keys are relative to the pool's `objectStore.prefix`. The operator, the trainer, the CLI and the
dev tools all build keys here; no other module spells one.

    anchor/...                                     the original data (the pool's spec names its manifests)
    pool/<pool>/samples/<id>/image.<ext>           a human-verified sample: image,
    pool/<pool>/samples/<id>/label.txt               its YOLO labels,
    pool/<pool>/samples/<id>/sample.json             and its record (written after the files)
    pool/<pool>/index/<stamp>~<id>~<file>~<image hex>~<label hex>   one empty key per counted sample
    pool/<pool>/rejected/<stamp>~<id>.json         why a sample was refused
    pool/<pool>/snapshots/<hex>.txt                a run's frozen sample manifest, named by its digest
    inbox/<pool>/<stamp>-<document id>             failure reports from serving, waiting for review
                                                   (image, report.json, predictions.json: ballast.api.inbox)
    audit/<pool>/<set>/<document>/image.<ext>      a Gate 3 audit document (never a sample): image,
    audit/<pool>/<set>/<document>/label.txt          its reviewed labels,
    audit/<pool>/<set>/manifest.txt                the set's manifest (written last); <set> is the
                                                   digest of its documents' image and label digests
    runs/<run>/<run uid>/...                       one run's artifacts (RunArtifacts); the uid keeps a
                                                   re-created run from meeting an older one's files
    models/<pool>/<version>/model.pt               released and adopted models, kept for rollback,
    models/<pool>/<version>/lineage.json             with their lineage
    models/<pool>/<version>/baseline.json            and the gate's figures (per-field test-set rates),
    <model dir>/serving-baseline.json                the alert baseline `ballast serve` learned for it
    cache/gate1/<base hex>/<test hex>-<imgsz>.json  a base's Gate 1 figures on a test set
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

_SEP = "~"
_STAMP = "%Y%m%dT%H%M%S%fZ"

ANCHOR_PREFIX = "anchor/"


def _hex(digest: str) -> str:
    return digest.removeprefix("sha256:")


def s3_uri(bucket: str, prefix: str, key: str) -> str:
    """`s3://bucket/<prefix>/<key>`: how status, plans and Deployments name an object."""
    prefix = prefix.strip("/")
    return f"s3://{bucket}/{prefix}/{key}" if prefix else f"s3://{bucket}/{key}"


# ---- pool samples ------------------------------------------------------------------------------
def pool_prefix(pool: str) -> str:
    return f"pool/{pool}/"


def samples_prefix(pool: str) -> str:
    return f"pool/{pool}/samples/"


def sample_dir(pool: str, sample_id: str) -> str:
    return f"{samples_prefix(pool)}{sample_id}"


def sample_file(pool: str, sample_id: str, file: str) -> str:
    """`file`: `image.<ext>`, `label.txt` or `sample.json`."""
    return f"{sample_dir(pool, sample_id)}/{file}"


def label_beside(image_key: str) -> str:
    """The label file that belongs to an image key (samples and anchor alike)."""
    return image_key.rsplit("/", 1)[0] + "/label.txt"


def rejections_prefix(pool: str) -> str:
    return f"pool/{pool}/rejected/"


def rejection(pool: str, stamp: datetime, sample_id: str) -> str:
    safe_id = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in sample_id)[:100] or "unnamed"
    return f"{rejections_prefix(pool)}{stamp.astimezone(UTC).strftime(_STAMP)}{_SEP}{safe_id}.json"


def snapshot(pool: str, manifest_digest: str) -> str:
    """A frozen sample manifest, addressed by its digest: a forged file cannot take its place."""
    return f"pool/{pool}/snapshots/{_hex(manifest_digest)}.txt"


def inbox_prefix(pool: str) -> str:
    return f"inbox/{pool}/"


def inbox_item(pool: str, stamp: datetime, document_id: str) -> str:
    return f"{inbox_prefix(pool)}{stamp.astimezone(UTC).strftime(_STAMP)}-{document_id}"


# ---- Gate 3 audit sets ------------------------------------------------------------------------
# Reviewed production documents kept apart from the pool: a model is measured on them, never
# trained on them. A set is named by what it holds, so building the same set twice writes nothing new.
def audit_prefix(pool: str) -> str:
    return f"audit/{pool}/"


def audit_set(pool: str, set_digest: str) -> str:
    return f"{audit_prefix(pool)}{_hex(set_digest)}/"


def audit_file(pool: str, set_digest: str, document: str, file: str) -> str:
    """`file`: `image.<ext>` or `label.txt` (the label beside the image, as a manifest expects)."""
    return f"{audit_set(pool, set_digest)}{document}/{file}"


def audit_manifest(pool: str, set_digest: str) -> str:
    """What `gates.abComparison.auditManifest` names."""
    return f"{audit_set(pool, set_digest)}manifest.txt"


# ---- the sample index --------------------------------------------------------------------------
# One empty object per verified sample; its key carries everything a run's manifest needs, so
# counting is a listing (1000 keys per call) and no sample is read.
def index_prefix(pool: str) -> str:
    return f"pool/{pool}/index/"


@dataclass(frozen=True)
class IndexEntry:
    written_at: datetime
    sample_id: str
    image_file: str
    image_digest: str
    label_digest: str


def index_key(pool: str, entry: IndexEntry) -> str:
    stamp = entry.written_at.astimezone(UTC).strftime(_STAMP)
    parts = (stamp, entry.sample_id, entry.image_file, _hex(entry.image_digest), _hex(entry.label_digest))
    return index_prefix(pool) + _SEP.join(parts)


def parse_index_key(key: str) -> IndexEntry:
    stamp, sample_id, image_file, image_hex, label_hex = key.rsplit("/", 1)[-1].split(_SEP)
    return IndexEntry(
        written_at=datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC),
        sample_id=sample_id,
        image_file=image_file,
        image_digest=f"sha256:{image_hex}",
        label_digest=f"sha256:{label_hex}",
    )


# ---- runs --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunArtifacts:
    """Every key of one run. Keyed by the run's uid: a pool or run re-created under the same name
    never reads an older attempt's files."""

    run: str
    uid: str

    @property
    def prefix(self) -> str:
        return f"runs/{self.run}/{self.uid}/"

    @property
    def plan(self) -> str:
        return self.prefix + "plan.json"

    @property
    def model(self) -> str:
        return self.prefix + "model.pt"

    @property
    def lineage(self) -> str:
        return self.prefix + "lineage.json"

    @property
    def metrics(self) -> str:
        return self.prefix + "metrics.json"

    @property
    def baseline(self) -> str:
        return self.prefix + "baseline.json"

    @property
    def train_result(self) -> str:
        return self.prefix + "train-result.json"

    @property
    def gate_report(self) -> str:
        return self.prefix + "gate-report.json"

    def error(self, stage: str) -> str:
        """Why a stage (`train`, `rebase`, `gate`) failed, written by the trainer."""
        return self.prefix + f"{stage}-error.json"


# ---- models ------------------------------------------------------------------------------------
MODEL_FILE = "model.pt"
# Files that travel with a model's weights, beside them under the same folder.
SIDECARS = ("lineage.json", "baseline.json")
SERVING_BASELINE = "serving-baseline.json"  # beside whatever model serve was given, base or released


def model_dir(pool: str, version: str) -> str:
    return f"models/{pool}/{version}/"


def released_model(pool: str, version: str) -> str:
    return model_dir(pool, version) + MODEL_FILE


def beside(model_key: str, file: str) -> str:
    """A sidecar of a weights file: `<dir>/model.pt` -> `<dir>/<file>`."""
    return model_key.rsplit("/", 1)[0] + "/" + file


def gate1_cache(base_digest: str, test_digest: str, imgsz: int) -> str:
    return f"cache/gate1/{_hex(base_digest)}/{_hex(test_digest)}-{imgsz}.json"
