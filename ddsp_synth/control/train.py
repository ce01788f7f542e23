"""Training a controller: ``train_controller`` and its step, validation, audio and
checkpoints, run by the step loop it shares with ``train`` (:mod:`ddsp_synth.train.steps`).

A step draws a batch (:mod:`.data`), predicts the chain's settings, renders the input
through the chain of the training method (twins, real devices with SPSA, proxies, or real
devices forward and proxies backward) and minimises the multi-resolution spectral distance
to the target. The run folder is laid out as ``train``'s (``run.json``, ``log.jsonl``,
``tb/``, ``checkpoints/``; a step's batch and SPSA perturbations come from the seed, the
step and the rank, so ``resume`` continues exactly), and is itself a controller folder: the
weights that validated best (rendered by the real devices, on held-out material) are written
there as they come, so ``control apply RUN_DIR`` works during and after training.

A black box that crashes or hangs stops the run with one line naming the device, after a
checkpoint of the weights before that step.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..dsp.spectral import spectral_distance
from ..errors import UserError, one_line
from ..machine import machine_line
from ..gradients.spsa import SPSAConfig
from ..train import (Schedule, StepHooks, StopFlag, checkpoint_run, close_run, list_checkpoints,
                     log_record, optimise, run_steps)
from ..train.config import TrainConfig, TrainingError
from .config import ControlDataConfig, ControllerConfig
from .data import Examples
from .devices import describe
from .files import CONTROLLER_FILES, save_controller
from .metrics import loudness_errors, spectral_errors
from .run import (ControlRun, RunSettings, build, chain_settings, control_train_config,
                  settle, step_rng, validation_examples)
from ..train.setup import dist_info, init_distributed, keep_changes

AUDIO_EXAMPLES = 2  # validation examples whose audio goes to TensorBoard


def _seed_perturbations(run: ControlRun) -> None:
    """SPSA draws its perturbations from this step's own stream (exact resume)."""
    for stage in run.chain.stages():
        if isinstance(getattr(stage, "rng", None), np.random.Generator):
            stage.rng = step_rng(run, 1)


def loss_of(run: ControlRun, batch: Examples) -> torch.Tensor:
    """Mean multi-resolution spectral distance of the chain's output to the target (with
    ``loss="log"`` its log-magnitude term alone, the distance rel_spec measures)."""
    raw = run.net(batch.input, batch.reference)
    output, _ = run.chain(batch.input, run.controller.natural(raw))
    linear = 0.0 if run.settings.loss == "log" else 1.0
    return spectral_distance(output, batch.target, linear_weight=linear).mean()


def train_step(run: ControlRun, stop: StopFlag) -> tuple[float, float, bool, bool]:
    """One optimiser step: (loss, gradient norm, whether it was taken, stop requested).
    A NaN/inf loss or gradient skips the update (all ranks agree)."""
    batch = run.source.batch(step_rng(run), run.config.batch_size)
    _seed_perturbations(run)
    loss = loss_of(run, batch)
    return optimise(run, loss, run.controller.parameters(), stop)


def render_examples(controller, examples: Examples, renderer, batch_size: int = 8
                    ) -> torch.Tensor:
    """[N, n_samples] the examples' inputs through ``renderer`` with the predicted
    settings (no gradients; in batches)."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            x = examples.input[i : i + batch_size]
            ref = None if examples.reference is None else examples.reference[i : i + batch_size]
            y, _ = renderer(x, controller.predict(x, ref))
            outs.append(y)
    return torch.cat(outs)


def scores(output: torch.Tensor, examples: Examples, sample_rate: int) -> dict:
    """rel_spec (ratio of the mean distances to the target: output / input), its median
    per example, and the loudness errors (LU) of the output and of the input."""
    d, d0 = spectral_errors(output, examples.target, examples.input)
    target = examples.target.numpy()
    lu = loudness_errors(output.numpy(), target, sample_rate)
    lu0 = loudness_errors(examples.input.numpy(), target, sample_rate)
    return {"rel_spec": float(d.mean() / max(d0.mean(), 1e-12)),
            "rel_spec_median": float(np.median(d / np.maximum(d0, 1e-12))),
            "spectral_distance": float(d.mean()), "spectral_distance_dry": float(d0.mean()),
            "loudness_lu": float(lu.mean()), "loudness_lu_dry": float(lu0.mean()),
            "examples": len(examples)}


def _info(run: ControlRun, val: dict | None) -> dict:
    s = run.settings
    return {"name": run.run_dir.name, "data": run.source.describe(),
            "validation": None if val is None else {**val, "step": run.step},
            "training": {"method": s.method, "steps": run.step, "minutes": run.wall_s / 60,
                         "batch_size": s.train.batch_size, "seed": s.train.seed,
                         "segment_seconds": s.data.segment_seconds,
                         "machine": machine_line(torch.get_num_threads()),
                         "renderer": run.renderer_kind, "settings": s.to_dict()}}


def validate(run: ControlRun) -> dict | None:
    """Scores on the held-out validation examples, rendered by the real devices (rank 0);
    the controller files in the run folder take the weights when they score best."""
    if run.val is None or not len(run.val):
        return None
    run.controller.eval()
    out = render_examples(run.controller, run.val, run.renderer, run.config.batch_size)
    run.controller.train()
    metrics = scores(out, run.val, run.settings.controller.sample_rate)
    run.last_val, run.last_val_step = metrics, run.step
    log_record(run, {"step": run.step, "val": metrics})
    if run.writer:
        for k, v in metrics.items():
            run.writer.add_scalar(f"val/{k}", v, run.step)
    score = metrics["rel_spec"]
    if math.isfinite(score) and (run.best is None or score < run.best["val"]["rel_spec"]):
        run.best = {"step": run.step, "val": metrics}
        save_controller(run.controller, run.run_dir, describe(run.chain), _info(run, metrics),
                        force=True)
    return metrics


def _log_audio(run: ControlRun) -> None:
    """Input, reference, target and output of the first validation examples."""
    if run.writer is None or run.val is None or run.last_audio_step == run.step:
        return
    run.last_audio_step = run.step
    n = min(AUDIO_EXAMPLES, len(run.val))
    part = Examples(run.val.input[:n], run.val.target[:n],
                    None if run.val.reference is None else run.val.reference[:n], [])
    run.controller.eval()
    out = render_examples(run.controller, part, run.renderer)
    run.controller.train()
    sr = run.settings.controller.sample_rate
    for i in range(n):
        clips = {"input": part.input[i], "target": part.target[i], "output": out[i]}
        if part.reference is not None:
            clips["reference"] = part.reference[i]
        for name, clip in clips.items():
            peak = float(clip.abs().max()) if clip.numel() else 0.0
            run.writer.add_audio(f"val/{i}/{name}", clip / max(1.0, peak), run.step,
                                 sample_rate=sr)


def _checkpoint(run: ControlRun) -> Path | None:
    return checkpoint_run(run, run.controller)


def _guarded_step(run: ControlRun, stop: StopFlag):
    """:func:`train_step`; a device that fails stops the run with a checkpoint."""
    try:
        return train_step(run, stop)
    except UserError as err:
        path = _checkpoint(run)
        where = f"; the last checkpoint ({path}) is kept: --resume continues from it" \
            if path else ""
        raise TrainingError(f"training stopped at step {run.step}: {one_line(err)}{where}") \
            from None


def _finish(run: ControlRun, start_step: int, stop: StopFlag) -> dict:
    if run.main_proc:
        # (a resumed run that made no step was validated there by the run before it)
        if run.config.val_every and run.last_val_step != run.step and run.step > start_step:
            validate(run)
        if run.best is None:  # never validated: the last weights are the controller
            save_controller(run.controller, run.run_dir, describe(run.chain),
                            _info(run, None), force=True)
        _log_audio(run)
    return {**close_run(run, lambda: _checkpoint(run), start_step, stop),
            "renderer": run.renderer_kind}


def train_controller(run_dir: str | os.PathLike, chain=None, method: str = "autodiff",
                     pairs=None, style=None, controller: ControllerConfig = ControllerConfig(),
                     data: ControlDataConfig = ControlDataConfig(),
                     config: TrainConfig | dict | None = None, spsa: SPSAConfig = SPSAConfig(),
                     proxy_dirs=(), workers: int = 2, loss: str = "mr", resume: bool = False,
                     force: bool = False, show_progress: bool = True) -> dict:
    """Train a controller of ``chain`` (or continue the run in ``run_dir``).

    Args:
        run_dir: the run folder (a controller folder as soon as it has validated).
        chain: ``"lowshelf,peak,peak,highshelf,compressor,gain"``; entries may name their own
            method (``compressor@spsa``) and fix parameters (``peak:q=0.7``).
        method: gradient method of the devices that name none.
        pairs: (input folder, target folder) with files of matching names, or
        style: folders of recordings for self-supervised style transfer.
        controller, data: the network's and the examples' settings.
        config: optimisation settings (a dict: some of them; default
            :func:`control_train_config`). Resuming, the run's own settings stay; ``config``
            may change its limits and intervals (step count, time budget, threads, ...: said
            in one line and kept for the next resume), and its other settings must be the
            run's (:func:`~ddsp_synth.train.setup.resume_settings`).
        spsa: SPSA's settings; proxy_dirs: folders searched for proxies first.
        workers: worker processes of each group of real devices.
        loss: ``"mr"`` (linear and log magnitudes) or ``"log"`` (log magnitudes alone).

    Returns:
        A summary: steps, wall time, the last and best validation, the checkpoint.
    """
    from torch.utils.tensorboard import SummaryWriter

    run_dir = Path(run_dir)
    world, rank, _ = dist_info()
    init_distributed(world)
    if not resume and not isinstance(config, TrainConfig):
        config = control_train_config(**(config or {}))
    if not resume and rank == 0 and not force and (run_dir / CONTROLLER_FILES.config).exists() \
            and not (run_dir / "run.json").exists():
        raise TrainingError(f"{run_dir} holds a controller; give another folder or --force")
    settings = None if resume else RunSettings(
        chain_settings(chain), method, tuple(map(str, pairs)) if pairs else None,
        tuple(map(str, style)) if style else None, controller, data, config, spsa,
        tuple(map(str, proxy_dirs)), workers, loss)
    existed = run_dir.exists()
    had = {name for name in RUN_FILES if (run_dir / name).exists()}
    # settle refuses a folder holding a run before writing anything: nothing of ours to undo
    settings, changed = settle(run_dir, settings, resume, force, config, rank == 0)
    if settings.train.num_threads:
        torch.set_num_threads(settings.train.num_threads)
    try:
        if world > 1:
            dist.barrier()
        run = build(run_dir, settings, resume)
        try:
            if rank == 0:
                keep_changes(run_dir, settings.train, changed)
            return _train(run, resume, show_progress, SummaryWriter)
        finally:
            run.close()
    except BaseException:
        if not resume and rank == 0:
            _remove_if_untrained(run_dir, existed, had)
        raise


RUN_FILES = ("run.json", "log.jsonl", "tb", "checkpoints")  # what a run makes in its folder


def _remove_if_untrained(run_dir: Path, existed: bool, had: set) -> None:
    """A new run that stopped before its first checkpoint (bad data, a device that fails at
    once, Ctrl-C while loading) leaves nothing that blocks the corrected command: the files
    it made go (the folder too, if it made it); what the folder ``had`` before stays."""
    if list_checkpoints(run_dir) or (run_dir / CONTROLLER_FILES.config).exists():
        return
    if not existed:
        shutil.rmtree(run_dir, ignore_errors=True)
        return
    for name in set(RUN_FILES) - had:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _train(run: ControlRun, resume: bool, show_progress: bool, writer_cls) -> dict:
    if run.main_proc:
        run.writer = writer_cls(str(run.run_dir / "tb"))
        if run.config.val_every or run.config.audio_every:
            run.val = validation_examples(run)
        if not resume:
            log_record(run, {"settings": run.settings.to_dict(), "data": run.source.describe(),
                       "renderer": run.renderer_kind, "start": asdict(run.config)})
            if run.config.val_every:
                run.first_val = validate(run)
            _log_audio(run)
    start_step = run.step
    schedule = Schedule(run, show_progress)
    run.controller.train()
    with StopFlag() as stop:
        run_steps(run, stop, schedule, StepHooks(
            step=lambda: _guarded_step(run, stop), checkpoint=lambda: _checkpoint(run),
            validate=lambda: validate(run), log_audio=lambda: _log_audio(run)))
    schedule.bar.close()
    return _finish(run, start_step, stop)
