"""A model's training (``train``): its step, validation, audio and batches, run by the step
loop every training shares (:mod:`.steps`)."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

from ..config import from_dict
from ..data import collate, load_manifest
from ..evaluate import evaluate_batches
from ..losses import training_loss
from ..errors import one_line
from ..model import ModelConfig
from ..stages.params import DeviceError
from . import checkpoints
from .config import TrainConfig, TrainingError
from .setup import (_auto_init, _build, _Run, _start, dist_info, init_distributed,
                    keep_changes)
from .steps import (Schedule, StepHooks, StopFlag, checkpoint_run, close_run, kept_history,
                    log_record, optimise, run_steps)


def train_step(run: _Run, batch: dict, stop: StopFlag) -> tuple[float, float, bool, bool]:
    """One optimiser step on a batch: forward, loss, backward, clipping, update.

    A NaN/inf loss or gradient skips the update (all ranks agree). Returns (loss, gradient
    norm, whether the step was taken, whether a stop was requested on any rank).
    """
    audio = batch["audio"].to(run.device)
    out = run.net(batch["f0_hz"][..., None].to(run.device),
                  batch["loudness_db"][..., None].to(run.device), audio=audio)
    loss = training_loss(out, audio, run.model_config.loss, run.model_config.features)
    return optimise(run, loss, run.model.parameters(), stop)


def validate(run: _Run) -> dict | None:
    """The eval metrics on the first ``val_examples`` validation examples (rank 0), logged;
    the weights are kept as the run's best when their spectral loss is the lowest so far."""
    if not len(run.val_set):
        return None
    cfg = run.config
    n = min(len(run.val_set), cfg.val_examples)
    items = [run.val_set[i] for i in range(n)]
    batches = [collate(items[i : i + cfg.batch_size]) for i in range(0, n, cfg.batch_size)]
    metrics = evaluate_batches(run.model, batches, seed=cfg.seed)
    metrics.pop("rtf", None)
    run.last_val, run.last_val_step = metrics, run.step
    log_record(run, {"step": run.step, "val": metrics})
    if run.writer:
        for k, v in metrics.items():
            run.writer.add_scalar(f"val/{k}", v, run.step)
    score = metrics["spectral_loss"]
    if math.isfinite(score) and (run.best is None or score < run.best["val"]["spectral_loss"]):
        run.best = {"step": run.step, "val": metrics}
        checkpoints.save_best(run.run_dir, run.model, {"step": run.step, "wall_s": run.wall_s,
                                                       "val": metrics,
                                                       "history": kept_history(run)})
    return metrics


# validation examples whose target and resynthesis go to TensorBoard
AUDIO_EXAMPLES = 2


def _log_audio(run: _Run) -> None:
    """The first validation examples and their resynthesis, side by side in TensorBoard."""
    sr = run.model_config.synth.sample_rate
    items = [run.val_set[i] for i in range(min(AUDIO_EXAMPLES, len(run.val_set)))]
    if not items or run.writer is None or run.last_audio_step == run.step:
        return
    run.last_audio_step = run.step
    batch = collate(items)
    with torch.no_grad():
        run.model.eval()
        # its own noise: the training's random stream (saved in checkpoints) is untouched
        y = run.model(batch["f0_hz"][..., None].to(run.device),
                      batch["loudness_db"][..., None].to(run.device),
                      audio=batch["audio"].to(run.device),
                      generator=torch.Generator(run.device).manual_seed(run.config.seed)).cpu()
        run.model.train()
    for i in range(len(items)):
        run.writer.add_audio(f"val/{i}/target", batch["audio"][i], run.step, sample_rate=sr)
        run.writer.add_audio(f"val/{i}/resynthesis", y[i], run.step, sample_rate=sr)


def _checkpoint(run: _Run) -> Path | None:
    return checkpoint_run(run, run.model)


def _batches(run: _Run):
    """Batches in the data order, from the run's position on, epoch after epoch (the order
    depends only on the seed and the epoch, so a resumed run sees what it would have)."""
    bs = run.config.batch_size
    while True:
        epoch, offset = divmod(run.step, run.batches_per_epoch)
        run.sampler.set_epoch(epoch)
        order = list(iter(run.sampler))
        for b in range(offset, run.batches_per_epoch):
            yield collate([run.train_set[i] for i in order[b * bs : (b + 1) * bs]])


def _hooks(run: _Run, stop: StopFlag) -> StepHooks:
    batches = _batches(run)
    return StepHooks(step=lambda: train_step(run, next(batches), stop),
                     checkpoint=lambda: _checkpoint(run), validate=lambda: validate(run),
                     log_audio=lambda: _log_audio(run))


def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
          model_config: ModelConfig | None = None, config: TrainConfig | dict | None = None,
          resume: bool = False, show_progress: bool = True, force: bool = False,
          init_from: str | os.PathLike | None = None) -> dict:
    """Train a model on a prepared dataset. Returns a summary dict.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this joins the process group (nccl with CUDA,
    gloo otherwise), wraps the model in DistributedDataParallel and shards the data with a
    DistributedSampler; rank 0 logs, validates and checkpoints.

    A fresh run validates its starting point first (for ``init_from``: the model it starts
    from), then along the way and at the end, and keeps the weights that validated best
    (``checkpoints/best``; ``export`` writes those). Audio goes to TensorBoard at the start,
    every ``audio_every`` steps and at the end.

    ``init_from`` starts a new run from an exported model's weights and settings (fine-tuning
    or continuing a shipped model; the optimiser starts afresh); ``"auto"`` picks the shipped
    model that already plays the data best (:func:`closest_shipped_model`).

    ``config`` holds the training settings (a dict: some of them, the others at their
    defaults; None: all). Resuming, the run goes on with its own settings (``run.json``):
    ``config`` may change its limits and intervals (:data:`~.setup.RESUMABLE`: the step
    count, the time budget, the threads, ...), which is said in one line and kept for the
    next resume; any other setting it holds, and ``model_config`` and ``init_from`` when
    given, must be the run's (a TrainingError names what differs).
    """
    from torch.utils.tensorboard import SummaryWriter

    data_dir, run_dir = Path(data_dir), Path(run_dir)
    world, rank, _ = dist_info()
    init_distributed(world)
    model_config, config, init_model, changed = _start(
        data_dir, run_dir, model_config, config, resume, force, init_from, rank == 0, world > 1)
    run = _build(data_dir, run_dir, model_config, config, init_model, resume)
    if run.main_proc:
        keep_changes(run_dir, config, changed)
        run.writer = SummaryWriter(str(run_dir / "tb"))
        if not len(run.val_set):
            print(no_validation_line(data_dir), file=sys.stderr)
    start_step = run.step
    if run.main_proc and not resume:
        if config.val_every:
            run.first_val = validate(run)
        _log_audio(run)
    schedule = Schedule(run, show_progress)
    run.model.train()
    try:
        with StopFlag() as stop:
            try:
                run_steps(run, stop, schedule, _hooks(run, stop))
            except DeviceError as err:
                raise _device_failed(run, err) from None
            finally:
                schedule.bar.close()
        return _finish(run, start_step, stop)
    finally:
        run.model.close()  # real devices' worker pools


def no_validation_line(data_dir: Path) -> str:
    """What a run on a dataset without validation examples lacks, and how to get them."""
    example_s = load_manifest(data_dir)["config"]["example_seconds"]
    return (f"{data_dir} has no validation examples, so this run validates nothing "
            "(--val-every is ignored): no validation metrics or audio in TensorBoard and no "
            "best weights (export writes the last ones). A file holds out its last "
            "--val-seconds (prepare's option; at most 20 % of the file) only when that fits a "
            f"whole {example_s:g} s example: give files of {5 * example_s:g} s or more, or "
            "prepare again with a shorter --example-seconds")


def _device_failed(run: _Run, err: DeviceError) -> TrainingError:
    """A real device of the model crashed, hung or refused: the run stops with the device's
    own line and where its weights are (a checkpoint of the last step taken)."""
    path = _checkpoint(run)
    where = f"; the last step's weights are in {path}" if path else ""
    return TrainingError(f"{one_line(err)}: training stopped at step {run.step}{where}")


def _finish(run: _Run, start_step: int, stop: StopFlag) -> dict:
    """The last validation, audio and checkpoint; the summary."""
    if run.main_proc and run.config.val_every and run.last_val_step != run.step:
        validate(run)
    if run.main_proc:
        _log_audio(run)
    return close_run(run, lambda: _checkpoint(run), start_step, stop)


def train_from_overrides(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                         overrides: dict, **kwargs) -> dict:
    """:func:`train` with settings given as JSON-like overrides of the defaults:
    ``{"model": {...}, "train": {...}}`` (sections and fields left out keep their defaults;
    ``model`` overrides apply to the settings of the ``init_from`` model when there is one,
    else to the defaults for the dataset). Resuming, they apply to the run's own settings:
    only the limits and intervals may change (:func:`train`)."""
    unknown = set(overrides) - {"model", "train"}
    if unknown:
        raise TrainingError(f"unknown settings section(s) {sorted(unknown)}; expected "
                            "'model' and/or 'train'")
    model_config = None
    if "model" in overrides:
        base = _model_base(Path(data_dir), Path(run_dir), kwargs)
        if base is not None:
            model_config = ModelConfig.from_dict(_merged(base, overrides["model"], "model."))
    train_settings = overrides.get("train", {})
    if not kwargs.get("resume"):  # resuming, the run's own settings are the defaults
        train_settings = from_dict(TrainConfig, train_settings, "train.")
    return train(data_dir, run_dir, model_config, train_settings, **kwargs)


def _model_base(data_dir: Path, run_dir: Path, kwargs: dict) -> dict | None:
    """The model settings that ``model`` overrides apply to: a resumed run's own (None when
    it has none: :func:`train` says so), the ``init_from`` model's, or the defaults for the
    dataset (``init_from="auto"`` is settled here, in ``kwargs``)."""
    if kwargs.get("resume"):
        run_file = run_dir / "run.json"
        return checkpoints.read_run(run_file)["model"] if run_file.exists() else None
    if kwargs.get("init_from") == "auto":
        kwargs["init_from"] = _auto_init(data_dir, dist_info()[1] == 0)
    if kwargs.get("init_from") is not None:
        from ..model import load_model

        return load_model(kwargs["init_from"])[0].config.to_dict()
    fc = load_manifest(data_dir)["config"]["features"]  # its feature settings, its rate's defaults
    base = ModelConfig.for_sample_rate(fc["sample_rate"], fc["sample_rate"] / fc["hop"],
                                       fc["crepe_model"]).to_dict()
    base["features"] = fc
    return base


def _merged(base: dict, overrides, where: str) -> dict:
    """``base`` with ``overrides`` applied section by section (nested dicts merged)."""
    if not isinstance(overrides, dict):
        return overrides  # from_dict says what is wrong with it
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _merged(base[k], v, f"{where}{k}.") if isinstance(base.get(k), dict) else v
    return out
