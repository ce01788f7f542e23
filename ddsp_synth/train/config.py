"""Training settings, the learning-rate schedule, and the error that stops a run."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import check_fields
from ..errors import UserError


class TrainingError(UserError):
    """Training cannot go on; the message says why and where the last good checkpoint is."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    Attributes:
        steps: total optimiser steps.
        batch_size: examples per step per process.
        learning_rate: Adam's initial learning rate.
        lr_decay: factor applied to the learning rate every ``lr_decay_steps`` (smoothly).
        warmup_steps: linear warm-up from 0.
        grad_clip: maximum global gradient norm.
        seed: seeds data order, noise and initialisation.
        log_every, val_every, checkpoint_every, audio_every: intervals in steps (audio:
            validation examples and their resynthesis to TensorBoard; 0 = never).
        keep_checkpoints: newest checkpoints kept.
        val_examples: validation examples scored each time (CREPE on the outputs is slow).
        max_bad_steps: consecutive NaN/inf steps tolerated before stopping.
        max_minutes: stop (with a checkpoint) after this much wall time; 0 = no limit.
        num_threads: torch CPU threads (0 = torch's default).
        precision: ``"fp32"``, or ``"bf16"``: the decoder's matrix products under bfloat16
            autocast (weights, synthesis and loss stay float32); ~1.6x faster steps on CPUs
            with AVX512-BF16/AMX at the peer's model size.
        effects_learning_rate: Adam's initial learning rate of the effect settings a model
            learns once (``effects.once``: one raw value per setting, far fewer and slower
            to move than the network's weights); 0 = ``learning_rate``. The schedule scales
            both alike.
    """

    steps: int = 20000
    batch_size: int = 8
    learning_rate: float = 1e-3
    lr_decay: float = 0.98
    lr_decay_steps: int = 1000
    warmup_steps: int = 100
    grad_clip: float = 3.0
    seed: int = 0
    log_every: int = 10
    val_every: int = 500
    checkpoint_every: int = 200
    audio_every: int = 500
    keep_checkpoints: int = 3
    val_examples: int = 8
    max_bad_steps: int = 20
    max_minutes: float = 0.0
    num_threads: int = 0
    precision: str = "fp32"
    effects_learning_rate: float = 0.0

    def __post_init__(self):
        check_fields(self, ranges={
            "steps": (0, 10**9), "batch_size": (1, 4096), "learning_rate": (0.0, 1.0),
            "lr_decay": (1e-6, 1.0), "lr_decay_steps": (1, None), "warmup_steps": (0, None),
            "grad_clip": (1e-6, None), "seed": (0, 2**63 - 1), "log_every": (1, None),
            "val_every": (0, None), "checkpoint_every": (1, None), "audio_every": (0, None),
            "keep_checkpoints": (1, 1000), "val_examples": (1, 10000), "max_bad_steps": (1, None),
            "max_minutes": (0.0, 10.0**6), "num_threads": (0, 1024),
            "effects_learning_rate": (0.0, 1.0)},
            choices={"precision": ("fp32", "bf16")})


def lr_factor(step: int, config: TrainConfig, warmup_steps: int | None = None) -> float:
    """The learning rate's factor at ``step``: a linear warm-up over ``warmup_steps``
    (default: the configured ones; a run with a time budget shortens it to its share of the
    budget), then a smooth exponential decay."""
    warmup_steps = config.warmup_steps if warmup_steps is None else warmup_steps
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    return warm * config.lr_decay ** (step / config.lr_decay_steps)
