"""`ballast-trainer train` and `ballast-trainer rebase`: produce a model from a RunPlan.

train:  fine-tune FROM THE BASE (never from a fine-tune) on the pool samples plus the anchor draw,
        with the seed's recipe (epochs 10, lr0 0.001 with a named optimizer, freeze 10, warmup 1,
        cosine LR, one optimizer step per batch), on `gpus` devices, then upload weights, lineage
        (with what the trainer measured it ran) and per-epoch metrics and write a TrainResult.
rebase: train a new base from scratch on the whole anchor set plus every pool sample.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ballast.api import layout
from ballast.api.common import ModelRef
from ballast.api.contracts import EpochMetrics, Lineage, TrainResult
from ballast.api.params import RebaseParams, TrainingParams
from ballast.policy.versions import start_model_refusal
from ballast_trainer import dataset, devices, yolo
from ballast_trainer.common import Context, Refused, artifacts, library_versions, log


def verified_base(context: Context) -> Path:
    """Download the base weights, check their digest, and refuse anything that is not a base."""
    plan, store = context.plan, context.store
    if plan.base_model is None:
        raise Refused("a fine-tune needs a base model: the plan names none")
    base_key = store.relative(plan.base_model.uri)
    lineage_raw = None
    if store.exists(layout.beside(base_key, "lineage.json")):
        lineage_raw = store.get(layout.beside(base_key, "lineage.json"))
    if lineage_raw is None:
        raise Refused(
            f"{plan.base_model.version} has no lineage.json beside {plan.base_model.uri}: "
            "cannot prove it is a base model"
        )
    lineage = Lineage.model_validate(json.loads(lineage_raw))
    refusal = start_model_refusal(lineage.model_version, lineage.base_digest)
    if refusal is None and lineage.model_version != plan.base_model.version:
        refusal = f"lineage names {lineage.model_version}, the plan names {plan.base_model.version}"
    if refusal:
        raise Refused(refusal)
    path = context.workdir / "base" / "model.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(store.get(base_key, plan.base_model.digest))  # DigestMismatch if tampered
    log(f"base {plan.base_model.version} verified ({plan.base_model.digest[:19]}...)")
    return path


def finetune_args(training: TrainingParams, seed: int, gpus: Sequence[devices.Capability]) -> dict[str, Any]:
    """Ultralytics' train() arguments for a fine-tune: the recipe as given, and every default that
    would change it set explicitly (optimizer, nbs, warmup_bias_lr, amp). `gpus`: the compute
    capability of each GPU it trains on."""
    t = training
    amp = devices.amp_mode(t.amp, gpus)
    return {
        "epochs": t.epochs,
        "lr0": t.lr0,
        "lrf": t.lrf,
        "optimizer": t.optimizer,  # never 'auto': it ignores lr0
        "momentum": t.momentum,
        "freeze": t.freeze,
        "warmup_epochs": t.warmup_epochs,
        "warmup_bias_lr": t.bias_warmup_lr(t.lr0),  # Ultralytics' 0.1 would be 100x the seed's lr0
        "cos_lr": t.cos_lr,
        "imgsz": t.imgsz,
        "batch": t.batch,
        "nbs": t.nominal_batch(),  # Ultralytics' 64 would accumulate batches of 16 four at a time
        "device": devices.training_device(t.gpus),
        "workers": 8 if t.gpus else 0,
        "amp": devices.ULTRALYTICS_AMP[amp],
        "seed": seed,
        "deterministic": True,
        "val": False,  # the gates judge the model; skip per-epoch validation (the last epoch still runs one)
    }


def rebase_args(
    training: TrainingParams, rebase: RebaseParams, seed: int, gpus: Sequence[devices.Capability]
) -> dict[str, Any]:
    """A base from scratch: the training settings with the rebase's epochs and lr0, no freeze, a
    3-epoch warm-up whose bias learning rate starts at the rebase's own lr0."""
    args = finetune_args(training, seed, gpus)
    args.update(
        {
            "epochs": rebase.epochs,
            "lr0": rebase.lr0,
            "warmup_bias_lr": rebase.lr0,
            "freeze": None,
            "warmup_epochs": 3,
            "pretrained": False,
        }
    )
    return args


def _stage_dataset(context: Context) -> Path:
    plan = context.plan
    root = context.workdir / "dataset"
    started = time.monotonic()
    staged = dataset.stage(context.store, plan.new_samples + plan.old_samples, root, "train")
    context.timed("download", started)
    log(
        f"staged {staged.images} samples, {staged.bytes / 1e6:.1f} MB in {staged.seconds:.1f} s "
        f"({staged.mb_per_second:.0f} MB/s)"
    )
    return dataset.write_data_yaml(root, plan.classes, {"train": "images/train", "val": "images/train"})


def produce(context: Context, start_model: str, args: dict[str, Any], base_digest: str | None) -> TrainResult:
    """Train, then upload weights, lineage, metrics and the TrainResult."""
    plan, store = context.plan, context.store
    started_at = datetime.now(UTC)
    data = _stage_dataset(context)
    started = time.monotonic()
    log(f"training {plan.new_version} from {Path(start_model).name}: {json.dumps(args, sort_keys=True)}")
    best, epochs, used, ran = yolo.train(start_model, data, context.workdir / "runs", args)
    context.timed("train", started)
    log(f"trained in {context.timings['train']:.1f} s; uploading")
    if ran:
        log(
            f"ran on {','.join(ran.devices)}, amp {ran.amp}: {ran.iterations} batches of {ran.batch}, "
            f"{ran.optimizer_steps} optimizer steps (accumulate {ran.accumulate}, nbs {ran.nbs}), warm-up "
            f"{ran.warmup_iterations} iterations from bias lr {ran.warmup_bias_lr:g}, "
            f"{ran.validation_passes} validation passes ({ran.validation_seconds:.1f} s)"
        )
    started = time.monotonic()
    files = artifacts(plan)
    model_digest = store.put_file(files.model, best)
    kept = {k: used.get(k) for k in sorted(args) if k in used}
    kept["optimizer"] = used.get("optimizer", args.get("optimizer"))
    lineage = Lineage(
        model_version=plan.new_version,
        base_version=plan.base_model.version if plan.base_model else None,
        base_digest=base_digest,
        plan_digest=context.plan_digest,
        params={k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in kept.items()},
        seed=plan.seed,
        libraries=library_versions(),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        seconds=dict(context.timings),
        ran=ran,
    )
    lineage_digest = context.put_json(files.lineage, lineage)
    metrics = [EpochMetrics(epoch=int(row.get("epoch", i + 1)), metrics=row) for i, row in enumerate(epochs)]
    store.put(files.metrics, json.dumps([m.to_wire() for m in metrics]).encode(), "application/json")
    context.timed("upload", started)
    result = TrainResult(
        run=plan.run,
        model=ModelRef(version=plan.new_version, uri=store.uri(files.model), digest=model_digest),
        lineage_uri=store.uri(files.lineage),
        lineage_digest=lineage_digest,
        epochs=metrics,
        seconds=round((datetime.now(UTC) - started_at).total_seconds(), 3),
    )
    context.report_result(files.train_result, result)
    overhead = result.seconds - context.timings.get("train", 0.0)
    log(
        f"{plan.new_version} written ({model_digest[:19]}...); total {result.seconds:.1f} s, "
        f"trainer overhead {overhead:.1f} s ({overhead / max(result.seconds, 1e-9):.0%})"
    )
    return result


def train(context: Context, unmixed_experiment: bool = False) -> None:
    """Fine-tune. A plan without old samples is refused (seed section 1: never new data only) unless
    `--unmixed-experiment` is given by hand: the Jobs the operator builds never pass it; only the
    demo's lesson and the learning benchmark do, to measure what the anchor prevents."""
    if context.plan.kind != "FineTune":
        raise Refused(f"plan {context.plan.run} is a {context.plan.kind}; use `ballast-trainer rebase`")
    if not context.plan.old_samples and not unmixed_experiment:
        raise Refused(
            f"plan {context.plan.run} mixes no old samples with its {len(context.plan.new_samples)} new ones: a "
            "fine-tune never trains on new data only (seed section 1)"
        )
    base = verified_base(context)
    assert context.plan.base_model is not None  # verified_base refuses otherwise
    t = context.plan.training
    args = finetune_args(t, context.plan.seed, devices.gpu_capabilities(t.gpus))
    produce(context, str(base), args, context.plan.base_model.digest)


def rebase(context: Context) -> None:
    if context.plan.kind != "Rebase":
        raise Refused(f"plan {context.plan.run} is a {context.plan.kind}; use `ballast-trainer train`")
    plan = context.plan
    args = rebase_args(plan.training, plan.rebase, plan.seed, devices.gpu_capabilities(plan.training.gpus))
    produce(context, plan.rebase.architecture, args, None)
