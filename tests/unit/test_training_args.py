"""What the trainer hands Ultralytics, and the Job it runs in: the seed's recipe with every
Ultralytics default that would change it set, on the GPUs asked for, in a precision they support."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ballast.api.common import ObjectStoreSpec, SecretKeyRef
from ballast.api.params import RebaseParams, TrainingParams
from ballast.policy.manifests import build_job
from ballast_trainer.common import Refused
from ballast_trainer.devices import amp_mode
from ballast_trainer.train import finetune_args, rebase_args

H100, A100, T4, V100 = (9, 0), (8, 0), (7, 5), (7, 0)


def args_for(capabilities: list[tuple[int, int]] | None = None, **training: Any) -> dict[str, Any]:
    """Ultralytics' arguments for `training` on GPUs of these capabilities (default: H100s)."""
    if capabilities is None:
        capabilities = [H100] * training.get("gpus", 1)
    return finetune_args(TrainingParams(**training), seed=7, gpus=capabilities)


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        pytest.param({}, 0.001, id="the bias warm-up starts at the seed's lr0, not Ultralytics' 0.1"),
        pytest.param({"lr0": 0.01}, 0.01, id="the bias warm-up follows a changed lr0"),
        pytest.param({"warmup_bias_lr": 0.05}, 0.05, id="a warmupBiasLr that is set is used as set"),
        pytest.param({"warmup_bias_lr": 0.0}, 0.0, id="a warmupBiasLr of zero is kept, not read as unset"),
    ],
)
def test_warmup_bias_lr(training: dict[str, Any], expected: float) -> None:
    assert args_for(**training)["warmup_bias_lr"] == expected


@pytest.mark.parametrize(
    ("training", "expected"),
    [
        pytest.param({}, 16, id="the nominal batch is the seed's batch 16: one optimizer step per batch"),
        pytest.param({"batch": 8}, 8, id="the nominal batch follows a changed batch"),
        pytest.param({"nbs": 64}, 64, id="an nbs that is set is used as set (batch 16 then accumulates 4)"),
    ],
)
def test_nominal_batch(training: dict[str, Any], expected: int) -> None:
    assert args_for(**training)["nbs"] == expected


@pytest.mark.parametrize(
    ("setting", "capabilities", "expected"),
    [
        pytest.param("auto", [H100], "bf16", id="auto trains an H100 in bf16"),
        pytest.param("auto", [A100, A100], "bf16", id="auto trains two A100s in bf16"),
        pytest.param("auto", [T4], "fp16", id="auto trains a T4 (no bf16) in fp16 instead of being refused"),
        pytest.param("auto", [V100], "fp16", id="auto trains a V100 (no bf16) in fp16"),
        pytest.param("auto", [A100, T4], "fp16", id="auto picks fp16 when any of the GPUs lacks bf16"),
        pytest.param("auto", [], "off", id="auto is off on CPU"),
        pytest.param("fp16", [H100], "fp16", id="fp16 asked for is fp16 on a bf16 GPU"),
        pytest.param("bf16", [H100], "bf16", id="bf16 asked for is bf16 where the GPU has it"),
        pytest.param("off", [H100], "off", id="off is off on a GPU"),
        pytest.param("bf16", [], "off", id="any setting is off on CPU"),
        pytest.param("fp16", [], "off", id="fp16 on CPU is off too"),
    ],
)
def test_amp_mode_per_device(setting: Any, capabilities: list[tuple[int, int]], expected: str) -> None:
    assert amp_mode(setting, capabilities) == expected


def test_bf16_asked_for_on_a_gpu_without_it_is_refused_naming_the_field() -> None:
    with pytest.raises(Refused, match=r"training\.amp: bf16 .* found 7\.5"):
        amp_mode("bf16", [T4])


@pytest.mark.parametrize(
    ("training", "capabilities", "expected"),
    [
        pytest.param({}, [H100], "bf16", id="bf16 reaches Ultralytics as 'bf16' (no AMP self-check)"),
        pytest.param({}, [T4], True, id="fp16 reaches Ultralytics as amp=True"),
        pytest.param({"gpus": 0}, [], False, id="off reaches Ultralytics as amp=False"),
    ],
)
def test_ultralytics_amp_argument(training: dict[str, Any], capabilities: list, expected: Any) -> None:
    assert args_for(capabilities, **training)["amp"] == expected


@pytest.mark.parametrize(
    ("gpus", "device", "workers"),
    [
        pytest.param(0, "cpu", 0, id="gpus 0 trains on the CPU with in-process loading"),
        pytest.param(1, "0", 8, id="gpus 1 trains on GPU 0"),
        pytest.param(4, "0,1,2,3", 8, id="gpus 4 trains on four GPUs (DDP), not one"),
    ],
)
def test_gpus_become_devices(gpus: int, device: str, workers: int) -> None:
    args = args_for(gpus=gpus, batch=16)
    assert (args["device"], args["workers"]) == (device, workers)


def test_a_rebase_starts_its_bias_warm_up_at_its_own_lr0_and_keeps_the_nominal_batch() -> None:
    training = TrainingParams(warmup_bias_lr=0.0005, nbs=32)
    args = rebase_args(training, RebaseParams(lr0=0.01), seed=7, gpus=[H100])
    assert (args["lr0"], args["warmup_bias_lr"], args["nbs"], args["freeze"]) == (0.01, 0.01, 32, None)


@pytest.mark.parametrize(
    ("training", "message"),
    [
        pytest.param(
            {"gpus": 4, "batch": 10},
            "batch 10 must be a multiple of training.gpus 4",
            id="a batch of 10 does not split over 4 GPUs",
        ),
        pytest.param({"amp": "fp32"}, "amp", id="an unknown amp setting names the field"),
        pytest.param({"nbs": 0}, "nbs", id="a zero nominal batch names the field"),
    ],
)
def test_bad_training_settings_are_refused_naming_the_field(training: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrainingParams(**training)


STORE = ObjectStoreSpec(endpoint="minio:9000", bucket="ballast", credentials_secret_ref=SecretKeyRef(name="s"))


def job(stage: str, **training: Any) -> dict[str, Any]:
    return build_job(
        run="r",
        run_uid="u",
        pool="p",
        stage=stage,
        training=TrainingParams(**training),
        image="trainer:1",
        store=STORE,
        plan_uri="s3://b/plan.json",
        plan_digest="sha256:" + "0" * 64,
    )


def shm_of(manifest: dict[str, Any]) -> tuple[dict | None, dict | None]:
    pod = manifest["spec"]["template"]["spec"]
    volume = next((v for v in pod["volumes"] if v["name"] == "dshm"), None)
    mount = next((m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == "/dev/shm"), None)
    return volume, mount


@pytest.mark.parametrize(
    ("stage", "gpus", "shared_memory"),
    [
        pytest.param("train", 4, True, id="a 4-GPU training Job gets a memory-backed /dev/shm"),
        pytest.param("train", 1, True, id="a 1-GPU training Job gets one too (8 loader workers share it)"),
        pytest.param("rebase", 2, True, id="a rebase on GPUs gets one"),
        pytest.param("train", 0, False, id="a CPU training loads in-process and needs none"),
        pytest.param("gate", 4, False, id="the gate loads in-process and needs none"),
    ],
)
def test_training_jobs_on_gpus_mount_shared_memory(stage: str, gpus: int, shared_memory: bool) -> None:
    manifest = job(stage, gpus=gpus, batch=16)
    volume, mount = shm_of(manifest)
    assert (volume is not None, mount is not None) == (shared_memory, shared_memory)
    if volume:
        assert volume["emptyDir"] == {"medium": "Memory"}
    limits = manifest["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits.get("nvidia.com/gpu") == (str(gpus) if gpus else None)
