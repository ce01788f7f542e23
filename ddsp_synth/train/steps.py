"""The step loop that every training shares: a model's (``train``) and a controller's
(``control train``).

It holds the optimiser update with its NaN guard, the progress and validation schedule, the
step log, the checkpoint and the loop that ties them together. What differs between the two
trainings comes in as :class:`StepHooks`: the step itself (batch, loss), validation and audio.

A *run* here is any object with these attributes:
- ``config`` (:class:`~ddsp_synth.train.config.TrainConfig`), ``step``, ``wall_s``,
  ``history``, ``warmup`` (a one-item list: the warm-up steps);
- ``main_proc``, ``distributed``, ``run_dir``, ``writer`` (TensorBoard or None);
- ``optimizer``, ``scheduler``, ``first_val``, ``last_val``, ``best``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch
import torch.distributed as dist

from ..signals import catch_stop_signals, restore_handlers
from . import checkpoints
from .config import TrainingError

#: with a time budget, at least this many validations along the way (besides the first)
VALIDATIONS_PER_BUDGET = 5
#: with a time budget, the warm-up takes at most this share of it
WARMUP_SHARE = 0.05
#: logged steps of the loss history a checkpoint keeps
HISTORY_KEPT = 2000


class StopFlag:
    """Set by a stop signal (SIGINT, SIGTERM, SIGHUP: Ctrl-C, ``kill``, a closed terminal);
    the loop checkpoints and returns at the next step."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        self._old = catch_stop_signals(self._handle)  # (an ignored one stays ignored)
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        restore_handlers(self._old)


def optimise(run, loss: torch.Tensor, parameters: Iterable[torch.nn.Parameter],
             stop: StopFlag) -> tuple[float, float, bool, bool]:
    """Backward, gradient clipping and the update for one step's ``loss``.

    A NaN/inf loss or gradient skips the update; under DDP all ranks agree to skip or to
    stop. Returns (loss, gradient norm, whether the step was taken, whether a stop was
    requested on any rank).
    """
    run.optimizer.zero_grad(set_to_none=True)
    finite, grad_norm = bool(torch.isfinite(loss)), float("nan")
    if finite:
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(parameters, run.config.grad_clip))
        finite = math.isfinite(grad_norm)
    stop_now = stop.signum != 0
    if run.distributed:
        flags = torch.tensor([float(not finite), float(stop_now)], device=loss.device)
        dist.all_reduce(flags)
        finite, stop_now = flags[0].item() == 0, flags[1].item() > 0
    if finite:
        run.optimizer.step()
        run.scheduler.step()
    else:
        run.optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), grad_norm, finite, stop_now


def log_record(run, record: dict) -> None:
    """One JSON line in the run's ``log.jsonl`` (rank 0 only)."""
    if run.main_proc:
        with open(run.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")


def log_step(run, loss: float, grad_norm: float, step_s: float) -> None:
    """A step's loss, learning rate, gradient norm and speed: the log, the run's history
    and TensorBoard (``train/loss``, ``train/lr``, ``train/grad_norm``,
    ``train/steps_per_s``)."""
    rec = {"step": run.step, "loss": loss, "lr": run.scheduler.get_last_lr()[0],
           "grad_norm": grad_norm, "step_s": step_s, "wall_s": run.wall_s}
    run.history.append([run.step, round(run.wall_s, 2), loss])
    log_record(run, rec)
    if run.writer:
        for k in ("loss", "lr", "grad_norm"):
            run.writer.add_scalar(f"train/{k}", rec[k], run.step)
        run.writer.add_scalar("train/steps_per_s", 1.0 / step_s, run.step)


def kept_history(run) -> list:
    """The newest :data:`HISTORY_KEPT` rows of the run's loss history, [[step, wall_s,
    loss], ...]: what a checkpoint (and the best weights) keep of it."""
    return run.history[-HISTORY_KEPT:]


def checkpoint_run(run, module: torch.nn.Module) -> Path | None:
    """``module``'s weights, the optimiser and the run's state (rank 0; None elsewhere)."""
    if not run.main_proc:
        return None
    extra = {"wall_s": run.wall_s, "history": kept_history(run),
             "warmup_steps": run.warmup[0], "first_val": run.first_val, "best": run.best}
    return checkpoints.save_checkpoint(run.run_dir, module, run.optimizer, run.step, extra,
                                       run.config.keep_checkpoints)


class Schedule:
    """When a run validates, logs audio, checkpoints and stops. With a time budget: a bar
    over the budget's seconds (its ETA is the budget's end), a warm-up scaled to the steps
    the budget holds, and validations spread over it; else a bar over the steps."""

    def __init__(self, run, show: bool):
        from tqdm import tqdm

        cfg = run.config
        self.run, self.t0 = run, time.perf_counter()
        self.budget_s = 60.0 * cfg.max_minutes if cfg.max_minutes else None
        self.last_val_t = self.t0
        self.step_times: list[float] = []
        show = show and run.main_proc
        if self.budget_s:
            self.bar = tqdm(total=round(self.budget_s), disable=not show, desc="train",
                            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<"
                                       "{remaining}{postfix}]")
        else:
            self.bar = tqdm(total=cfg.steps, initial=run.step, disable=not show, desc="train",
                            unit="step")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def stepped(self, dt: float, loss: float) -> None:
        self.step_times.append(dt)
        self.bar.set_postfix(step=self.run.step, loss=f"{loss:.3f}", steps_s=f"{1.0 / dt:.2f}")
        if self.budget_s:
            self.bar.update(min(self.elapsed(), self.budget_s) - self.bar.n)
        else:
            self.bar.update(1)
        if self.budget_s and len(self.step_times) == 3 and self.run.step <= 3:
            # a fresh run's warm-up: at most its share of the steps the budget holds
            expected = self.budget_s / (sum(self.step_times) / 3)
            self.run.warmup[0] = min(self.run.config.warmup_steps,
                                     max(1, int(WARMUP_SHARE * expected)))

    def validate_now(self) -> bool:
        """Every ``val_every`` steps, and with a budget at least every fifth of it
        (``val_every = 0``: never)."""
        cfg, run = self.run.config, self.run
        if not cfg.val_every:
            return False
        by_time = bool(self.budget_s) and (time.perf_counter() - self.last_val_t
                                           >= self.budget_s / VALIDATIONS_PER_BUDGET)
        if run.step % cfg.val_every == 0 or by_time:
            self.last_val_t = time.perf_counter()
            return True
        return False

    def out_of_time(self) -> bool:
        return bool(self.budget_s) and self.elapsed() > self.budget_s


def close_run(run, checkpoint: Callable[[], Path | None], start_step: int,
              stop: StopFlag) -> dict:
    """The run's last checkpoint, TensorBoard closed, the ranks met; the summary: steps
    (in all and this time), wall time, the checkpoint, whether a signal stopped it, the
    first, last and best validations, the warm-up and the last logged loss."""
    path = checkpoint()
    if run.writer:
        run.writer.close()
    if run.distributed:
        dist.barrier()
    return {"step": run.step, "steps_this_run": run.step - start_step, "wall_s": run.wall_s,
            "checkpoint": str(path) if path else None, "interrupted": stop.signum != 0,
            "signal": stop.signum, "val": run.last_val, "val_first": run.first_val,
            "best": run.best, "warmup_steps": run.warmup[0],
            "final_loss": run.history[-1][2] if run.history else None}


@dataclass(frozen=True)
class StepHooks:
    """What one training does in :func:`run_steps`.

    step: one optimiser step: (loss, gradient norm, taken, stop requested).
    checkpoint: save one (the path, or None off rank 0).
    validate: score the validation set (rank 0).
    log_audio: examples to TensorBoard (rank 0).
    """

    step: Callable[[], tuple[float, float, bool, bool]]
    checkpoint: Callable[[], Path | None]
    validate: Callable[[], object]
    log_audio: Callable[[], None]


def run_steps(run, stop: StopFlag, schedule: Schedule, hooks: StepHooks) -> None:
    """Steps until the step count, the budget or a signal ends the run.

    A step whose loss or gradient is NaN/inf is skipped and does not count;
    ``config.max_bad_steps`` of them in a row stop the run with a checkpoint.
    """
    cfg, bad_steps = run.config, 0
    while run.step < cfg.steps:
        t0 = time.perf_counter()
        loss, grad_norm, taken, stop_now = hooks.step()
        if not taken:
            bad_steps += 1
            log_record(run, {"step": run.step, "event": "non-finite loss or gradient, step "
                                                        "skipped", "loss": loss})
            if bad_steps >= cfg.max_bad_steps:
                path = hooks.checkpoint()
                raise TrainingError(
                    f"loss or gradients were NaN/inf for {bad_steps} steps in a row at "
                    f"step {run.step}; weights were kept finite and saved to {path}")
            if stop_now:
                return
            continue
        bad_steps = 0
        run.step += 1
        dt = time.perf_counter() - t0
        run.wall_s += dt
        if run.step % cfg.log_every == 0 or run.step == 1:
            log_step(run, loss, grad_norm, dt)
        schedule.stepped(dt, loss)
        if run.main_proc:
            if schedule.validate_now():
                hooks.validate()
            if cfg.audio_every and run.step % cfg.audio_every == 0:
                hooks.log_audio()
            if run.step % cfg.checkpoint_every == 0:
                hooks.checkpoint()
        if stop_now or schedule.out_of_time():
            return
