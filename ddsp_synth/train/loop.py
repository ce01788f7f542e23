"""The training loop in small functions: one step, logging, validation, audio, checkpoints,
and the loop itself."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from ..config import from_dict
from ..data import collate, load_manifest
from ..evaluate import evaluate_batches
from ..losses import training_loss
from ..errors import one_line
from ..model import ModelConfig
from ..stages.params import DeviceError
from . import checkpoints
from .config import TrainConfig, TrainingError
from .setup import _auto_init, _build, _dist_info, _Run, _start, _StopFlag


def train_step(run: _Run, batch: dict, stop: _StopFlag) -> tuple[float, float, bool, bool]:
    """One optimiser step on a batch: forward, loss, backward, clipping, update.

    A NaN/inf loss or gradient skips the update (all ranks agree). Returns (loss, gradient
    norm, whether the step was taken, whether a stop was requested on any rank).
    """
    audio = batch["audio"].to(run.device)
    out = run.net(batch["f0_hz"][..., None].to(run.device),
                  batch["loudness_db"][..., None].to(run.device), audio=audio)
    loss = training_loss(out, audio, run.model_config.loss, run.model_config.features)
    run.optimizer.zero_grad(set_to_none=True)
    finite = bool(torch.isfinite(loss))
    grad_norm = float("nan")
    if finite:
        loss.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(run.model.parameters(),
                                                         run.config.grad_clip))
        finite = math.isfinite(grad_norm)
    if run.distributed:  # all ranks must agree to skip, stop or go on
        flags = torch.tensor([float(not finite), float(stop.signum != 0)], device=run.device)
        dist.all_reduce(flags)
        finite = flags[0].item() == 0
        stop_now = flags[1].item() > 0
    else:
        stop_now = stop.signum != 0
    if finite:
        run.optimizer.step()
        run.scheduler.step()
    else:
        run.optimizer.zero_grad(set_to_none=True)
    return float(loss.detach()), grad_norm, finite, stop_now


def _log(run: _Run, record: dict) -> None:
    if run.main_proc:
        with open(run.run_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")


def _log_step(run: _Run, loss: float, grad_norm: float, step_s: float) -> None:
    rec = {"step": run.step, "loss": loss, "lr": run.scheduler.get_last_lr()[0],
           "grad_norm": grad_norm, "step_s": step_s, "wall_s": run.wall_s}
    run.history.append([run.step, round(run.wall_s, 2), loss])
    _log(run, rec)
    if run.writer:
        run.writer.add_scalar("train/loss", loss, run.step)
        run.writer.add_scalar("train/lr", rec["lr"], run.step)
        run.writer.add_scalar("train/grad_norm", grad_norm, run.step)
        run.writer.add_scalar("train/steps_per_s", 1.0 / step_s, run.step)


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
    _log(run, {"step": run.step, "val": metrics})
    if run.writer:
        for k, v in metrics.items():
            run.writer.add_scalar(f"val/{k}", v, run.step)
    score = metrics["spectral_loss"]
    if math.isfinite(score) and (run.best is None or score < run.best["val"]["spectral_loss"]):
        run.best = {"step": run.step, "val": metrics}
        checkpoints.save_best(run.run_dir, run.model, {"step": run.step, "wall_s": run.wall_s,
                                                       "val": metrics})
    return metrics


# validation examples whose target and resynthesis go to TensorBoard
AUDIO_EXAMPLES = 2
# with a time budget, at least this many validations along the way (besides the first)
VALIDATIONS_PER_BUDGET = 5
# with a time budget, the warm-up takes at most this share of it
WARMUP_SHARE = 0.05


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
    if not run.main_proc:
        return None
    extra = {"wall_s": run.wall_s, "history": run.history[-2000:],
             "warmup_steps": run.warmup[0], "first_val": run.first_val, "best": run.best}
    return checkpoints.save_checkpoint(run.run_dir, run.model, run.optimizer, run.step, extra,
                                       run.config.keep_checkpoints)


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


class _Schedule:
    """When a run validates, logs audio, checkpoints and stops. With a time budget: a bar
    over the budget's seconds (its ETA is the budget's end), a warm-up scaled to the steps
    the budget holds, and validations spread over it; else a bar over the steps."""

    def __init__(self, run: _Run, show: bool):
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


def _run_steps(run: _Run, stop: _StopFlag, schedule: _Schedule) -> None:
    """Steps until the step count, the budget or a signal ends the run."""
    cfg, bad_steps = run.config, 0
    batches = _batches(run)
    while run.step < cfg.steps:
        t0 = time.perf_counter()
        loss, grad_norm, taken, stop_now = train_step(run, next(batches), stop)
        if not taken:
            bad_steps += 1
            _log(run, {"step": run.step, "event": "non-finite loss or gradient, step skipped",
                       "loss": loss})
            if bad_steps >= cfg.max_bad_steps:
                path = _checkpoint(run)
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
            _log_step(run, loss, grad_norm, dt)
        schedule.stepped(dt, loss)
        _periodic(run, schedule)
        if stop_now or schedule.out_of_time():
            return


def _periodic(run: _Run, schedule: _Schedule) -> None:
    cfg = run.config
    if not run.main_proc:
        return
    if schedule.validate_now():
        validate(run)
    if cfg.audio_every and run.step % cfg.audio_every == 0:
        _log_audio(run)
    if run.step % cfg.checkpoint_every == 0:
        _checkpoint(run)


def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
          model_config: ModelConfig | None = None, config: TrainConfig = TrainConfig(),
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
    """
    from torch.utils.tensorboard import SummaryWriter

    data_dir, run_dir = Path(data_dir), Path(run_dir)
    world, rank, _ = _dist_info()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    model_config, config, init_model = _start(data_dir, run_dir, model_config, config, resume,
                                              force, init_from, rank == 0, world > 1)
    run = _build(data_dir, run_dir, model_config, config, init_model, resume)
    if run.main_proc:
        run.writer = SummaryWriter(str(run_dir / "tb"))
    start_step = run.step
    if run.main_proc and not resume:
        if config.val_every:
            run.first_val = validate(run)
        _log_audio(run)
    schedule = _Schedule(run, show_progress)
    run.model.train()
    try:
        with _StopFlag() as stop:
            try:
                _run_steps(run, stop, schedule)
            except DeviceError as err:
                raise _device_failed(run, err) from None
            finally:
                schedule.bar.close()
        return _finish(run, start_step, stop)
    finally:
        run.model.close()  # real devices' worker pools


def _device_failed(run: _Run, err: DeviceError) -> TrainingError:
    """A real device of the model crashed, hung or refused: the run stops with the device's
    own line and where its weights are (a checkpoint of the last step taken)."""
    path = _checkpoint(run)
    where = f"; the last step's weights are in {path}" if path else ""
    return TrainingError(f"{one_line(err)}: training stopped at step {run.step}{where}")


def _finish(run: _Run, start_step: int, stop: _StopFlag) -> dict:
    """The last validation, audio and checkpoint; the summary."""
    if run.main_proc and run.config.val_every and run.last_val_step != run.step:
        validate(run)
    if run.main_proc:
        _log_audio(run)
    path = _checkpoint(run)
    if run.writer:
        run.writer.close()
    if run.distributed:
        dist.barrier()
    return {"step": run.step, "steps_this_run": run.step - start_step, "wall_s": run.wall_s,
            "checkpoint": str(path) if path else None, "interrupted": stop.signum != 0,
            "signal": stop.signum, "val": run.last_val, "val_first": run.first_val,
            "best": run.best, "warmup_steps": run.warmup[0],
            "final_loss": run.history[-1][2] if run.history else None}


def train_from_overrides(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                         overrides: dict, **kwargs) -> dict:
    """:func:`train` with settings given as JSON-like overrides of the defaults:
    ``{"model": {...}, "train": {...}}`` (sections and fields left out keep their defaults;
    ``model`` overrides apply to the settings of the ``init_from`` model when there is one,
    else to the defaults for the dataset; they are ignored when resuming)."""
    unknown = set(overrides) - {"model", "train"}
    if unknown:
        raise TrainingError(f"unknown settings section(s) {sorted(unknown)}; expected "
                            "'model' and/or 'train'")
    model_config = None
    if "model" in overrides and not kwargs.get("resume"):
        if kwargs.get("init_from") == "auto":
            kwargs["init_from"] = _auto_init(Path(data_dir), _dist_info()[1] == 0)
        if kwargs.get("init_from") is not None:
            from ..model import load_model

            base = load_model(kwargs["init_from"])[0].config.to_dict()
        else:  # the dataset's feature settings and the defaults for its rate
            fc = load_manifest(data_dir)["config"]["features"]
            base = ModelConfig.for_sample_rate(fc["sample_rate"], fc["sample_rate"] / fc["hop"],
                                               fc["crepe_model"]).to_dict()
            base["features"] = fc
        model_config = ModelConfig.from_dict(_merged(base, overrides["model"], "model."))
    return train(data_dir, run_dir, model_config,
                 from_dict(TrainConfig, overrides.get("train", {}), "train."), **kwargs)


def _merged(base: dict, overrides, where: str) -> dict:
    """``base`` with ``overrides`` applied section by section (nested dicts merged)."""
    if not isinstance(overrides, dict):
        return overrides  # from_dict says what is wrong with it
    out = dict(base)
    for k, v in overrides.items():
        out[k] = _merged(base[k], v, f"{where}{k}.") if isinstance(base.get(k), dict) else v
    return out
