"""Which devices a training runs on, and in what precision.

`training.gpus: N` trains on N GPUs in one pod: Ultralytics runs DDP over `device="0,...,N-1"`.
`training.amp` (auto|bf16|fp16|off) becomes the `amp` Ultralytics is given. `auto` picks per
device: bf16 where every GPU supports it natively (compute capability 8.0+: A100, H100, L4...),
fp16 on older GPUs (T4, V100: the pinned Ultralytics raises on bf16 there), off on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from ballast.api.params import AmpMode, AmpSetting
from ballast_trainer.common import Refused

# What Ultralytics' `amp` argument is for each mode. fp16 (amp=True) runs Ultralytics' AMP self-check,
# which offline only logs "checks skipped" and keeps AMP on; bf16 and False skip it.
ULTRALYTICS_AMP: dict[AmpMode, str | bool] = {"bf16": "bf16", "fp16": True, "off": False}


def training_device(gpus: int) -> str:
    """Ultralytics' `device` for a training on `gpus` GPUs: "cpu", "0", or "0,1,...,N-1" (DDP)."""
    return ",".join(str(index) for index in range(gpus)) if gpus > 0 else "cpu"


Capability = tuple[int, int]  # a CUDA device's compute capability, (major, minor)


def supports_bf16(capability: Capability) -> bool:
    """Native bfloat16: compute capability 8.0+ (the test the pinned Ultralytics applies before it
    autocasts in bf16, through torch.cuda.is_bf16_supported(including_emulation=False))."""
    return capability[0] >= 8


def amp_mode(setting: AmpSetting, capabilities: Sequence[Capability]) -> AmpMode:
    """The precision a training runs in, from the setting and the GPUs it trains on (their
    compute capabilities; none: CPU).

    AMP is off on CPU whatever the setting (Ultralytics never autocasts there). bf16 asked for on
    a GPU without it is refused here, naming the field, rather than by Ultralytics mid-run.
    """
    if not capabilities or setting == "off":
        return "off"
    bf16 = all(supports_bf16(c) for c in capabilities)
    if setting == "auto":
        return "bf16" if bf16 else "fp16"
    if setting == "bf16" and not bf16:
        found = ", ".join(f"{major}.{minor}" for major, minor in capabilities)
        raise Refused(
            f"training.amp: bf16 needs GPUs with native bfloat16 (compute capability 8.0+, found {found}); "
            "use auto or fp16"
        )
    return setting


def gpu_capabilities(gpus: int) -> list[Capability]:
    """The compute capability of each of the first `gpus` CUDA devices (none on CPU)."""
    if gpus == 0:
        return []
    import torch

    if not torch.cuda.is_available():
        return []
    return [torch.cuda.get_device_capability(index) for index in range(min(gpus, torch.cuda.device_count()))]
