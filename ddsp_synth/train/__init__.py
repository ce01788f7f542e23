"""Training loop: single process, or DistributedDataParallel under ``torchrun``.

Run directory layout::

    run.json                     model + training settings and dataset statistics
    log.jsonl                    one JSON line per logged step and per validation
    tb/                          TensorBoard scalars and audio
    checkpoints/step-0000200/    model.safetensors, optimizer.safetensors, state.json

Checkpoints hold no pickle: tensors in safetensors, everything else in JSON. Each is written
to ``step-N.tmp`` and renamed into place, so an interruption mid-write leaves the previous
checkpoint as the latest complete one. ``resume`` restores weights, Adam moments, the
learning-rate schedule, the RNG and the position in the data order, so the run continues as
if it had never stopped."""

from .checkpoints import (export_run, list_checkpoints, load_checkpoint, load_run_model,
                          save_checkpoint, summarize_history)
from .config import TrainConfig, TrainingError, lr_factor
from .loop import train, train_from_overrides, train_step, validate
from .setup import closest_shipped_model

# the step loop shared with controllers' training (ddsp_synth.control.train)
from .steps import (Schedule, StepHooks, StopFlag, checkpoint_run, close_run, log_record,
                    optimise, run_steps)

__all__ = ["Schedule", "StepHooks", "StopFlag", "TrainConfig", "TrainingError", "checkpoint_run",
           "close_run", "closest_shipped_model", "export_run", "list_checkpoints",
           "load_checkpoint", "load_run_model", "log_record", "lr_factor", "optimise",
           "run_steps", "save_checkpoint", "summarize_history", "train", "train_from_overrides",
           "train_step", "validate"]
