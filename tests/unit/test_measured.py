"""How the lineage names what Ultralytics ran on GPUs (the CPU path runs for real in test_trainer)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from ballast_trainer.measured import amp_that_ran, devices_used


@pytest.mark.parametrize(
    ("enabled", "requested", "expected"),
    [
        pytest.param(True, "bf16", "bf16", id="bf16 that stayed on is recorded as bf16"),
        pytest.param(True, True, "fp16", id="amp=True that passed Ultralytics' check is recorded as fp16"),
        pytest.param(False, True, "off", id="amp=True that Ultralytics' check turned off is recorded as off"),
        pytest.param(False, False, "off", id="amp=False is recorded as off"),
    ],
)
def test_amp_that_ran(enabled: bool, requested: Any, expected: str) -> None:
    assert amp_that_ran(enabled, requested) == expected


@pytest.mark.parametrize(
    ("world_size", "device", "argument", "expected"),
    [
        pytest.param(0, "cpu", "cpu", ["cpu"], id="a CPU training records the cpu"),
        pytest.param(1, "cuda:0", "0", ["cuda:0"], id="a one-GPU training records GPU 0"),
        pytest.param(
            4,
            "cuda:0",
            "0,1,2,3",
            ["cuda:0", "cuda:1", "cuda:2", "cuda:3"],
            id="rank 0 of a 4-GPU DDP records all four",
        ),
    ],
)
def test_devices_used(world_size: int, device: str, argument: str, expected: list[str]) -> None:
    kind = device.split(":")[0]
    torch_device = type("Device", (), {"type": kind, "__str__": lambda self: device})()  # as torch.device reads
    trainer = SimpleNamespace(world_size=world_size, device=torch_device, args=SimpleNamespace(device=argument))
    assert devices_used(trainer) == expected
