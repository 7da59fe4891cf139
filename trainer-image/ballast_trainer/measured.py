"""What a training actually ran, measured inside Ultralytics' trainer by its callbacks.

The lineage records these figures as the trainer saw them, not re-derived from the arguments:
gradient accumulation (`trainer.accumulate`, from nbs / batch), the warm-up iterations the loop
uses, the batches run and the optimizer steps taken (counted by a hook on the optimizer, so a
step the fp16 grad scaler skips is not counted), the AMP mode after Ultralytics' own check, the
devices, and the validation passes. With `val=False` Ultralytics still validates the last epoch
and then best.pt (`final_eval`), on the data file's val split; Ballast records those passes and
their time rather than patching them out of the pinned trainer: the gates judge the model.

Under DDP (`gpus` > 1) the callbacks travel to each worker process (Ultralytics pickles them), and
rank 0 writes the figures to `measured.json` in the run folder; the launching process reads them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ballast.api.contracts import TrainingRan
from ballast.api.params import AmpMode

FILE = "measured.json"


class Recorder:
    """Ultralytics callbacks that count what the training ran; add with `attach(model)`."""

    def __init__(self) -> None:
        self.iterations = 0
        self.optimizer_steps = 0
        self.validation_passes = 0
        self.validation_seconds = 0.0
        self._validation_started = 0.0

    def attach(self, model: Any) -> None:
        """Register on an Ultralytics `YOLO` model before `train()`."""
        model.add_callback("on_train_start", self.on_train_start)
        model.add_callback("on_train_batch_end", self.on_train_batch_end)
        model.add_callback("on_val_start", self.on_val_start)
        model.add_callback("on_val_end", self.on_val_end)
        model.add_callback("on_train_end", self.on_train_end)

    def on_train_start(self, trainer: Any) -> None:
        trainer.optimizer.register_step_post_hook(self._stepped)

    def _stepped(self, *_: Any) -> None:
        self.optimizer_steps += 1

    def on_train_batch_end(self, trainer: Any) -> None:
        self.iterations += 1

    def on_val_start(self, validator: Any) -> None:
        self._validation_started = time.monotonic()

    def on_val_end(self, validator: Any) -> None:
        self.validation_passes += 1
        self.validation_seconds += time.monotonic() - self._validation_started

    def on_train_end(self, trainer: Any) -> None:
        """Rank 0 (or the only process) writes the figures beside the weights."""
        Path(trainer.save_dir).mkdir(parents=True, exist_ok=True)
        (Path(trainer.save_dir) / FILE).write_text(json.dumps(self.figures(trainer).to_wire()))

    def figures(self, trainer: Any) -> TrainingRan:
        batches_per_epoch = len(trainer.train_loader)
        accumulate = int(trainer.accumulate)  # back at its nominal value once warm-up has ended
        return TrainingRan(
            batch=int(trainer.batch_size),
            nbs=int(trainer.args.nbs),
            accumulate=accumulate,
            effective_batch=int(trainer.batch_size) * accumulate,
            warmup_bias_lr=float(trainer.args.warmup_bias_lr),
            batches_per_epoch=batches_per_epoch,
            # The same call the loop makes to decide how long warm-up lasts.
            warmup_iterations=int(trainer._get_warmup_iterations(batches_per_epoch)),
            iterations=self.iterations,
            optimizer_steps=self.optimizer_steps,
            amp=amp_that_ran(bool(trainer.amp), trainer.args.amp),
            devices=devices_used(trainer),
            validation_passes=self.validation_passes,
            validation_seconds=round(self.validation_seconds, 3),
        )


def amp_that_ran(enabled: bool, requested: str | bool) -> AmpMode:
    """Ultralytics' AMP state after its checks: off, or the autocast dtype it used."""
    if not enabled:
        return "off"
    return "bf16" if requested == "bf16" else "fp16"


def devices_used(trainer: Any) -> list[str]:
    if trainer.world_size == 0:
        return [str(trainer.device)]
    return [f"{trainer.device.type}:{index.strip()}" for index in str(trainer.args.device).split(",")]


def read(save_dir: Path) -> TrainingRan | None:
    """The figures rank 0 wrote, if it wrote them."""
    path = save_dir / FILE
    return TrainingRan.model_validate_json(path.read_text()) if path.exists() else None
