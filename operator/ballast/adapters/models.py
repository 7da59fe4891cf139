"""Publishing a model: the one way weights reach `models/<pool>/<version>/` (released and adopted
models, kept for rollback), digests checked on the way in and on the copy that stays."""

from __future__ import annotations

from ballast.adapters.objectstore import ObjectStore
from ballast.api import layout
from ballast.api.common import ModelRef


def publish_model(store: ObjectStore, pool: str, model: ModelRef) -> ModelRef:
    """Copy a run's weights and their sidecars (lineage, serving baseline) under the pool's models,
    once; verify both the source and the copy against the model's digest. Returns the published ref.

    Raises DigestMismatch when either differs: a tampered artifact is never published or served.
    """
    source = store.relative(model.uri)
    target = layout.released_model(pool, model.version)
    if source != target and not store.exists(target):
        store.get(source, model.digest)
        for sidecar in layout.SIDECARS:
            if store.exists(layout.beside(source, sidecar)):
                store.copy(layout.beside(source, sidecar), layout.beside(target, sidecar))
        store.copy(source, target)  # last: the weights' presence means the folder is complete
    store.get(target, model.digest)
    return model.evolve(uri=store.uri(target))
