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
if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .audio_io import atomic_write_bytes
from .config import check_fields, from_dict
from .data import DDSPDataset, collate, load_manifest, load_stats
from .evaluate import evaluate_batches
from .losses import training_loss
from .model import DDSPModel, ModelConfig, check_stats, copy_weights, with_stats

CHECKPOINT_FORMAT_VERSION = 1


class TrainingError(Exception):
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

    def __post_init__(self):
        check_fields(self, ranges={
            "steps": (0, 10**9), "batch_size": (1, 4096), "learning_rate": (0.0, 1.0),
            "lr_decay": (1e-6, 1.0), "lr_decay_steps": (1, None), "warmup_steps": (0, None),
            "grad_clip": (1e-6, None), "seed": (0, 2**63 - 1), "log_every": (1, None),
            "val_every": (0, None), "checkpoint_every": (1, None), "audio_every": (0, None),
            "keep_checkpoints": (1, 1000), "val_examples": (1, 10000), "max_bad_steps": (1, None),
            "max_minutes": (0.0, 10.0**6), "num_threads": (0, 1024)},
            choices={"precision": ("fp32", "bf16")})


def lr_factor(step: int, config: TrainConfig) -> float:
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    return warm * config.lr_decay ** (step / config.lr_decay_steps)


# ----------------------------------------------------------------------------- checkpoints
def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, scalars = {}, {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            key = f"state.{pid}.{name}"
            if isinstance(value, torch.Tensor):
                tensors[key] = value.detach().cpu().contiguous()
            else:
                scalars[key] = value
    return tensors, {"scalars": scalars, "param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    items = list(tensors.items()) + list(meta["scalars"].items())
    for key, value in items:
        _, pid, name = key.split(".", 2)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    ckdir = run_dir / "checkpoints"
    if not ckdir.exists():
        return []
    done = [p for p in ckdir.iterdir() if p.is_dir() and p.name.startswith("step-")
            and not p.name.endswith(".tmp") and (p / "state.json").exists()]
    return sorted(done, key=lambda p: int(p.name.split("-")[1]))


def save_checkpoint(run_dir: Path, model: DDSPModel, optimizer, step: int, extra: dict,
                    keep: int) -> Path:
    from safetensors.torch import save_file

    ckdir = run_dir / "checkpoints"
    final = ckdir / f"step-{step:07d}"
    tmp = ckdir / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(tmp / "model.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    opt_tensors["rng.torch"] = torch.get_rng_state()
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    state = {"format_version": CHECKPOINT_FORMAT_VERSION, "step": step,
             "optimizer": opt_meta, **extra}
    (tmp / "state.json").write_text(json.dumps(state, indent=2))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, model: DDSPModel, optimizer) -> dict:
    """Restore weights (and, given an optimizer, its moments and the RNG) from a checkpoint
    folder; returns its state. A damaged or incomplete checkpoint is a TrainingError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        if not isinstance(state.get("step"), int) or not isinstance(state.get("wall_s"),
                                                                     (int, float)):
            raise ValueError("no step or wall time")
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        if optimizer is not None:
            tensors = load_file(str(path / "optimizer.safetensors"))
            rng = tensors.pop("rng.torch")
            optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
            torch.set_rng_state(rng)
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError,
            AttributeError, RecursionError) as err:
        raise TrainingError(f"{path}: damaged checkpoint ({type(err).__name__}: {err}); "
                            "delete it to resume from the one before") from None
    return state


# ----------------------------------------------------------------------------- the run
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop checkpoints and returns at the next step."""

    def __init__(self):
        self.signum = 0
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


@dataclass
class _Run:
    """Everything one training process holds while it trains."""

    run_dir: Path
    model_config: ModelConfig
    config: TrainConfig
    model: DDSPModel
    net: torch.nn.Module  # the model, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: object
    train_set: DDSPDataset
    val_set: DDSPDataset
    sampler: torch.utils.data.DistributedSampler
    device: torch.device
    world: int
    main_proc: bool
    writer: object = None
    step: int = 0
    wall_s: float = 0.0
    history: list = field(default_factory=list)

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.config.batch_size


def _start(data_dir: Path, run_dir: Path, model_config: ModelConfig | None,
           config: TrainConfig, resume: bool, force: bool, init_from, main_proc: bool,
           distributed: bool) -> tuple[ModelConfig, TrainConfig, DDSPModel | None]:
    """Settle the run's settings: from ``run.json`` when resuming, else from the arguments
    (or the model of ``init_from``), checked against the dataset and written to ``run.json``.
    Returns (model settings, training settings, the ``init_from`` model or None)."""
    manifest = load_manifest(data_dir)
    stats = load_stats(data_dir)
    run_file = run_dir / "run.json"
    init_model = None
    if resume:
        if not run_file.exists():
            raise TrainingError(f"{run_dir}: nothing to resume (no run.json)")
        run_meta = _read_run(run_file)
        model_config = ModelConfig.from_dict(run_meta["model"])
        config = from_dict(TrainConfig, {**run_meta["train"], "steps": config.steps,
                                         "max_minutes": config.max_minutes,
                                         "num_threads": config.num_threads}, "train.")
        return model_config, config, None
    if main_proc and run_file.exists() and not force:
        raise TrainingError(f"{run_dir} already holds a run; use --resume to continue it "
                            "or --force to start over")
    feature_cfg = manifest["config"]["features"]
    if init_from == "auto":
        init_from = _auto_init(data_dir, main_proc)
    if init_from is not None:
        from .model import load_model

        init_model, _ = load_model(init_from)
        if model_config is None:
            model_config = init_model.config
    if model_config is None:
        model_config = ModelConfig.for_sample_rate(feature_cfg["sample_rate"],
                                                   feature_cfg["sample_rate"] / feature_cfg["hop"],
                                                   feature_cfg["crepe_model"])
    if asdict(model_config.features) != feature_cfg:
        raise TrainingError("the model's feature settings differ from the dataset's "
                            f"({asdict(model_config.features)} vs {feature_cfg})")
    # everything about the data is checked before the run folder is touched
    check_stats(stats, ("loudness_db_mean", "loudness_db_std"))
    _check_batch(DDSPDataset(data_dir, "train"), config.batch_size, _dist_info()[0])
    if main_proc:
        if force and (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir / "checkpoints")
            (run_dir / "log.jsonl").unlink(missing_ok=True)
        run_meta = {"model": model_config.to_dict(), "train": asdict(config),
                    "data_dir": str(data_dir), "dataset_stats": stats}
        run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(run_meta, indent=2)
        atomic_write_bytes(run_file, lambda tmp: Path(tmp).write_text(text))
    if distributed:
        dist.barrier()
    return model_config, config, init_model


def closest_shipped_model(data_dir: str | os.PathLike, n_examples: int = 8) -> Path | None:
    """The shipped model that already resynthesizes a dataset best: lowest multi-resolution
    spectral loss on ``n_examples`` training windows spread over the data, each model
    normalising loudness with this dataset's statistics (as it will when fine-tuned). Only
    models with the dataset's feature settings qualify; None when none does."""
    from .losses import multi_resolution_stft_loss
    from .model import available_models, load_model

    features = load_manifest(data_dir)["config"]["features"]
    stats = load_stats(data_dir)
    data = DDSPDataset(data_dir, "train")
    idx = np.linspace(0, len(data) - 1, min(n_examples, len(data))).round().astype(int)
    batch = collate([data[int(i)] for i in idx])
    best, best_loss = None, math.inf
    for path in available_models().values():
        model, _ = load_model(path)
        if asdict(model.config.features) != features or model.encoder is not None:
            continue
        with torch.no_grad():
            model.loudness_mean_db.fill_(stats["loudness_db_mean"])
            model.loudness_std_db.fill_(stats["loudness_db_std"])
            out = model(batch["f0_hz"][..., None], batch["loudness_db"][..., None],
                        generator=torch.Generator().manual_seed(0))
            loss = float(multi_resolution_stft_loss(out, batch["audio"], model.config.loss))
        if loss < best_loss:
            best, best_loss = path, loss
    return best


def _auto_init(data_dir: Path, say: bool) -> Path | None:
    """:func:`closest_shipped_model`, saying what it chose."""
    init_from = closest_shipped_model(data_dir)
    if say:
        print(f"starting from the shipped model {init_from.name!r}, the one that plays this "
              "data best" if init_from else "no shipped model fits this data's feature "
              "settings: starting from scratch", file=sys.stderr)
    return init_from


def _check_batch(train_set: DDSPDataset, batch_size: int, world: int) -> None:
    if len(train_set) < batch_size * world:
        raise TrainingError(f"only {len(train_set)} training examples for a batch of "
                            f"{batch_size} x {world} processes; lower --batch-size")


def _read_run(run_file: Path) -> dict:
    """``run.json`` of a run folder, checked to hold what a run needs."""
    try:
        meta = json.loads(run_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise TrainingError(f"{run_file}: damaged run file ({err})") from None
    missing = [k for k in ("model", "train", "data_dir", "dataset_stats")
               if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise TrainingError(f"{run_file}: damaged run file (no {missing[0]!r})")
    return meta


def _build(data_dir: Path, run_dir: Path, model_config: ModelConfig, config: TrainConfig,
           init_model: DDSPModel | None, resume: bool) -> _Run:
    """Model, optimiser, schedule and data for this process; restored from the newest
    checkpoint when resuming."""
    world, rank, local_rank = _dist_info()
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    torch.manual_seed(config.seed + rank)
    model = with_stats(model_config, load_stats(data_dir)).to(device)
    if init_model is not None:  # weights only: the loudness normalisation stays this data's
        copy_weights(init_model, model)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    step, wall_s, history = 0, 0.0, []
    if resume:
        checkpoints = list_checkpoints(run_dir)
        if not checkpoints:
            raise TrainingError(f"{run_dir}: no complete checkpoint to resume from")
        state = load_checkpoint(checkpoints[-1], model, optimizer)
        step, wall_s = state["step"], state["wall_s"]
        history = state.get("history", [])
        if world > 1:  # each rank continues its own noise stream
            torch.manual_seed(config.seed + rank + 1_000_003 * step)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config),
                                                  last_epoch=step - 1 if resume else -1)
    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {config.precision!r}")
    model.decoder_bf16 = config.precision == "bf16"
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if use_cuda else None)
    train_set, val_set = DDSPDataset(data_dir, "train"), DDSPDataset(data_dir, "val")
    _check_batch(train_set, config.batch_size, world)
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=world, rank=rank,
                                                  shuffle=True, seed=config.seed, drop_last=True)
    return _Run(run_dir, model_config, config, model, net, optimizer, scheduler, train_set,
                val_set, sampler, device, world, rank == 0, step=step, wall_s=wall_s,
                history=history)


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
    """The eval metrics on the first ``val_examples`` validation examples (rank 0)."""
    if not len(run.val_set):
        return None
    cfg = run.config
    n = min(len(run.val_set), cfg.val_examples)
    items = [run.val_set[i] for i in range(n)]
    batches = [collate(items[i : i + cfg.batch_size]) for i in range(0, n, cfg.batch_size)]
    metrics = evaluate_batches(run.model, batches, seed=cfg.seed)
    metrics.pop("rtf", None)
    _log(run, {"step": run.step, "val": metrics})
    if run.writer:
        for k, v in metrics.items():
            run.writer.add_scalar(f"val/{k}", v, run.step)
    return metrics


# validation examples whose target and resynthesis go to TensorBoard
AUDIO_EXAMPLES = 2


def _log_audio(run: _Run) -> None:
    """The first validation examples and their resynthesis, side by side in TensorBoard."""
    sr = run.model_config.synth.sample_rate
    items = [run.val_set[i] for i in range(min(AUDIO_EXAMPLES, len(run.val_set)))]
    batch = collate(items)
    with torch.no_grad():
        run.model.eval()
        y = run.model(batch["f0_hz"][..., None].to(run.device),
                      batch["loudness_db"][..., None].to(run.device),
                      audio=batch["audio"].to(run.device)).cpu()
        run.model.train()
    for i in range(len(items)):
        run.writer.add_audio(f"val/{i}/target", batch["audio"][i], run.step, sample_rate=sr)
        run.writer.add_audio(f"val/{i}/resynthesis", y[i], run.step, sample_rate=sr)


def _checkpoint(run: _Run) -> Path | None:
    if not run.main_proc:
        return None
    return save_checkpoint(run.run_dir, run.model, run.optimizer, run.step,
                           {"wall_s": run.wall_s, "history": run.history[-2000:]},
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


def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
          model_config: ModelConfig | None = None, config: TrainConfig = TrainConfig(),
          resume: bool = False, show_progress: bool = True, force: bool = False,
          init_from: str | os.PathLike | None = None) -> dict:
    """Train a model on a prepared dataset. Returns a summary dict.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this joins the process group (nccl with CUDA,
    gloo otherwise), wraps the model in DistributedDataParallel and shards the data with a
    DistributedSampler; rank 0 logs, validates and checkpoints.

    ``init_from`` starts a new run from an exported model's weights and settings (fine-tuning
    or continuing a shipped model; the optimiser starts afresh); ``"auto"`` picks the shipped
    model that already plays the data best (:func:`closest_shipped_model`).
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

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

    bad_steps = 0
    summary_val = None
    start_step = run.step
    t_start = time.perf_counter()
    bar = tqdm(total=config.steps, initial=run.step,
               disable=not (show_progress and run.main_proc), desc="train", unit="step")
    run.model.train()
    batches = _batches(run)
    with _StopFlag() as stop:
        while run.step < config.steps:
            t0 = time.perf_counter()
            loss, grad_norm, taken, stop_now = train_step(run, next(batches), stop)
            if not taken:
                bad_steps += 1
                _log(run, {"step": run.step, "event": "non-finite loss or gradient, step skipped",
                           "loss": loss})
                if bad_steps >= config.max_bad_steps:
                    path = _checkpoint(run)
                    raise TrainingError(
                        f"loss or gradients were NaN/inf for {bad_steps} steps in a row at "
                        f"step {run.step}; weights were kept finite and saved to {path}")
                if stop_now:
                    break
                continue
            bad_steps = 0
            run.step += 1
            dt = time.perf_counter() - t0
            run.wall_s += dt
            if run.step % config.log_every == 0 or run.step == 1:
                _log_step(run, loss, grad_norm, dt)
            bar.set_postfix(loss=f"{loss:.3f}", steps_s=f"{1.0 / dt:.2f}")
            bar.update(1)
            if run.main_proc and config.val_every and run.step % config.val_every == 0:
                summary_val = validate(run)
            if (run.main_proc and config.audio_every and run.step % config.audio_every == 0
                    and len(run.val_set)):
                _log_audio(run)
            if run.main_proc and run.step % config.checkpoint_every == 0:
                _checkpoint(run)
            out_of_time = (config.max_minutes and
                           time.perf_counter() - t_start > 60 * config.max_minutes)
            if stop_now or out_of_time:
                break
    bar.close()
    path = _checkpoint(run)
    if run.main_proc and (summary_val is None or run.step % max(1, config.val_every)):
        summary_val = validate(run)
    if run.writer:
        run.writer.close()
    if run.distributed:
        dist.barrier()
    return {"step": run.step, "steps_this_run": run.step - start_step, "wall_s": run.wall_s,
            "checkpoint": str(path) if path else None, "interrupted": stop.signum != 0,
            "signal": stop.signum, "val": summary_val,
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
            from .model import load_model

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


def load_run_model(run_dir: str | os.PathLike) -> tuple[DDSPModel, dict, dict]:
    """The newest checkpoint of a run as a model, with the run's metadata and state."""
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.exists():
        raise TrainingError(f"{run_dir}: not a training run (no run.json)")
    run_meta = _read_run(run_file)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise TrainingError(f"{run_dir}: no complete checkpoint")
    model = with_stats(ModelConfig.from_dict(run_meta["model"]), run_meta["dataset_stats"])
    state = load_checkpoint(checkpoints[-1], model, None)
    model.eval()
    return model, run_meta, state


def export_run(run_dir: str | os.PathLike, model_dir: str | os.PathLike,
               force: bool = False) -> tuple[DDSPModel, dict]:
    """Write the newest checkpoint of a run as a self-describing model folder (weights,
    settings, dataset statistics and a training summary). Returns (model, checkpoint state)."""
    from .model import save_model

    model, run_meta, state = load_run_model(run_dir)
    training = {"steps": state["step"], "wall_s": state["wall_s"],
                "train_config": run_meta["train"], "data_dir": run_meta["data_dir"],
                "loss_history": summarize_history(state.get("history", []))}
    save_model(model, model_dir, run_meta["dataset_stats"], training, force=force)
    return model, state


def summarize_history(history: list) -> list:
    """Loss at a few points in wall time: [[step, wall_s, loss], ...] (at most ~12 rows)."""
    if not history:
        return []
    idx = np.unique(np.linspace(0, len(history) - 1, min(12, len(history))).astype(int))
    return [history[i] for i in idx]
