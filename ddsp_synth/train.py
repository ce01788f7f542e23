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
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from .audio_io import atomic_write_bytes
from .data import DDSPDataset, load_manifest, load_stats
from .evaluate import evaluate_batches
from .losses import loudness_loss, multi_resolution_stft_loss
from .model import DDSPModel, ModelConfig

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
        log_every, val_every, checkpoint_every, audio_every: intervals in steps.
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
    audio_every: int = 1000
    keep_checkpoints: int = 3
    val_examples: int = 8
    max_bad_steps: int = 20
    max_minutes: float = 0.0
    num_threads: int = 0
    precision: str = "fp32"


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
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = json.loads((path / "state.json").read_text())
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        tensors = load_file(str(path / "optimizer.safetensors"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise TrainingError(f"{path}: damaged checkpoint ({err})") from None
    torch.set_rng_state(tensors.pop("rng.torch"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    return state


def training_loss(prediction: torch.Tensor, target: torch.Tensor, config: ModelConfig):
    """Multi-resolution spectral loss plus the weighted loudness term of ``config.loss``."""
    loss = multi_resolution_stft_loss(prediction, target, config.loss)
    if config.loss.loudness_weight:
        f = config.features
        loss = loss + config.loss.loudness_weight * loudness_loss(
            prediction, target, f.sample_rate, f.hop, f.loudness_n_fft, config.loss.loudness_floor_db)
    return loss


# ----------------------------------------------------------------------------- loop
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def _collate(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


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


def train(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
          model_config: ModelConfig | None = None, config: TrainConfig = TrainConfig(),
          resume: bool = False, show_progress: bool = True, force: bool = False,
          init_from: str | os.PathLike | None = None) -> dict:
    """Train a model on a prepared dataset. Returns a summary dict.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) this joins the process group (nccl with CUDA,
    gloo otherwise), wraps the model in DistributedDataParallel and shards the data with a
    DistributedSampler; rank 0 logs, validates and checkpoints.

    ``init_from`` starts a new run from an exported model's weights and settings (fine-tuning
    or continuing a shipped model; the optimiser starts afresh).
    """
    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    data_dir, run_dir = Path(data_dir), Path(run_dir)
    world, rank, local_rank = _dist_info()
    distributed = world > 1
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    main_proc = rank == 0

    manifest = load_manifest(data_dir)
    stats = load_stats(data_dir)
    run_file = run_dir / "run.json"
    if resume:
        if not run_file.exists():
            raise TrainingError(f"{run_dir}: nothing to resume (no run.json)")
        run_meta = json.loads(run_file.read_text())
        model_config = ModelConfig.from_dict(run_meta["model"])
        config = TrainConfig(**{**run_meta["train"], "steps": config.steps,
                                "max_minutes": config.max_minutes,
                                "num_threads": config.num_threads})
    else:
        if main_proc and run_file.exists() and not force:
            raise TrainingError(f"{run_dir} already holds a run; use --resume to continue it "
                                "or --force to start over")
        feature_cfg = manifest["config"]["features"]
        if init_from is not None:
            from .model import load_model

            init_model, _ = load_model(init_from)
            model_config = init_model.config
        if model_config is None:
            model_config = ModelConfig.for_sample_rate(feature_cfg["sample_rate"],
                                                       feature_cfg["sample_rate"] / feature_cfg["hop"],
                                                       feature_cfg["crepe_model"])
        if asdict(model_config.features) != feature_cfg:
            raise TrainingError("the model's feature settings differ from the dataset's "
                                f"({asdict(model_config.features)} vs {feature_cfg})")
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

    torch.manual_seed(config.seed + rank)
    model = DDSPModel(model_config, stats["loudness_db_mean"], stats["loudness_db_std"]).to(device)
    if init_from is not None and not resume:
        # weights only: the loudness normalisation stays this dataset's
        model.load_state_dict({k: v for k, v in init_model.state_dict().items()
                               if not k.startswith("loudness_")}, strict=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))

    step, wall_s, history = 0, 0.0, []
    if resume:
        checkpoints = list_checkpoints(run_dir)
        if not checkpoints:
            raise TrainingError(f"{run_dir}: no complete checkpoint to resume from")
        state = load_checkpoint(checkpoints[-1], model, optimizer)
        step, wall_s = state["step"], state["wall_s"]
        history = state.get("history", [])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config),
                                                      last_epoch=step - 1)
        if distributed:  # each rank continues its own noise stream
            torch.manual_seed(config.seed + rank + 1_000_003 * step)

    if config.precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {config.precision!r}")
    model.decoder_bf16 = config.precision == "bf16"
    net = model
    if distributed:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if use_cuda else None)

    train_set = DDSPDataset(data_dir, "train")
    val_set = DDSPDataset(data_dir, "val")
    if len(train_set) < config.batch_size * world:
        raise TrainingError(f"only {len(train_set)} training examples for a batch of "
                            f"{config.batch_size} x {world} processes; lower --batch-size")
    sampler = torch.utils.data.DistributedSampler(train_set, num_replicas=world, rank=rank,
                                                  shuffle=True, seed=config.seed, drop_last=True)
    batches_per_epoch = len(sampler) // config.batch_size

    writer = SummaryWriter(str(run_dir / "tb")) if main_proc else None
    log_path = run_dir / "log.jsonl"

    def log(record: dict):
        if main_proc:
            with open(log_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")

    def checkpoint():
        if main_proc:
            return save_checkpoint(run_dir, model, optimizer, step,
                                   {"wall_s": wall_s, "history": history[-2000:]},
                                   config.keep_checkpoints)
        return None

    def validate():
        if not len(val_set):
            return None
        n = min(len(val_set), config.val_examples)
        items = [val_set[i] for i in range(n)]
        batches = [_collate(items[i : i + config.batch_size]) for i in range(0, n, config.batch_size)]
        metrics = evaluate_batches(model, batches, seed=config.seed)
        metrics.pop("rtf", None)
        return metrics

    bad_steps = 0
    summary_val = None
    start_step = step
    t_start = time.perf_counter()
    bar = tqdm(total=config.steps, initial=step, disable=not (show_progress and main_proc),
               desc="train", unit="step")
    model.train()
    with _StopFlag() as stop:
        while step < config.steps:
            epoch, offset = divmod(step, batches_per_epoch)
            sampler.set_epoch(epoch)
            order = list(iter(sampler))
            for b in range(offset, batches_per_epoch):
                if step >= config.steps:
                    break
                t0 = time.perf_counter()
                idx = order[b * config.batch_size : (b + 1) * config.batch_size]
                batch = _collate([train_set[i] for i in idx])
                audio = batch["audio"].to(device)
                out = net(batch["f0_hz"][..., None].to(device),
                          batch["loudness_db"][..., None].to(device), audio=audio)
                loss = training_loss(out, audio, model_config)
                optimizer.zero_grad(set_to_none=True)
                finite = bool(torch.isfinite(loss))
                grad_norm = float("nan")
                if finite:
                    loss.backward()
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                                     config.grad_clip))
                    finite = math.isfinite(grad_norm)
                if distributed:  # all ranks must agree to skip, stop or go on
                    flags = torch.tensor([float(not finite), float(stop.signum != 0)],
                                         device=device)
                    dist.all_reduce(flags)
                    finite = flags[0].item() == 0
                    stop_now = flags[1].item() > 0
                else:
                    stop_now = stop.signum != 0
                if finite:
                    optimizer.step()
                    scheduler.step()
                    bad_steps = 0
                else:
                    optimizer.zero_grad(set_to_none=True)
                    bad_steps += 1
                    log({"step": step, "event": "non-finite loss or gradient, step skipped",
                         "loss": float(loss.detach())})
                    if bad_steps >= config.max_bad_steps:
                        path = checkpoint()
                        raise TrainingError(
                            f"loss or gradients were NaN/inf for {bad_steps} steps in a row at "
                            f"step {step}; weights were kept finite and saved to {path}")
                    continue
                step += 1
                dt = time.perf_counter() - t0
                wall_s += dt
                loss_v = float(loss.detach())
                if step % config.log_every == 0 or step == 1:
                    rec = {"step": step, "loss": loss_v, "lr": scheduler.get_last_lr()[0],
                           "grad_norm": grad_norm, "step_s": dt, "wall_s": wall_s}
                    history.append([step, round(wall_s, 2), loss_v])
                    log(rec)
                    if writer:
                        writer.add_scalar("train/loss", loss_v, step)
                        writer.add_scalar("train/lr", rec["lr"], step)
                        writer.add_scalar("train/grad_norm", grad_norm, step)
                        writer.add_scalar("train/steps_per_s", 1.0 / dt, step)
                bar.set_postfix(loss=f"{loss_v:.3f}", steps_s=f"{1.0 / dt:.2f}")
                bar.update(1)
                if main_proc and config.val_every and step % config.val_every == 0:
                    summary_val = validate()
                    if summary_val:
                        log({"step": step, "val": summary_val})
                        for k, v in summary_val.items():
                            writer.add_scalar(f"val/{k}", v, step)
                if main_proc and config.audio_every and step % config.audio_every == 0 and len(val_set):
                    with torch.no_grad():
                        item = val_set[0]
                        model.eval()
                        y = model(item["f0_hz"][None, :, None].to(device),
                                  item["loudness_db"][None, :, None].to(device),
                                  audio=item["audio"][None].to(device))
                        model.train()
                    writer.add_audio("val/resynthesis", y[0].cpu(), step,
                                     sample_rate=model_config.synth.sample_rate)
                    if step == config.audio_every:
                        writer.add_audio("val/target", item["audio"], step,
                                         sample_rate=model_config.synth.sample_rate)
                if main_proc and step % config.checkpoint_every == 0:
                    checkpoint()
                out_of_time = (config.max_minutes and
                               time.perf_counter() - t_start > 60 * config.max_minutes)
                if stop_now or out_of_time:
                    break
            else:
                continue
            break
    bar.close()
    path = checkpoint()
    interrupted = stop.signum != 0
    if main_proc and (summary_val is None or step % max(1, config.val_every)):
        summary_val = validate()
        if summary_val:
            log({"step": step, "val": summary_val})
    if writer:
        writer.close()
    if distributed:
        dist.barrier()
    return {"step": step, "steps_this_run": step - start_step, "wall_s": wall_s,
            "checkpoint": str(path) if path else None, "interrupted": interrupted,
            "signal": stop.signum, "val": summary_val,
            "final_loss": history[-1][2] if history else None}


def load_run_model(run_dir: str | os.PathLike) -> tuple[DDSPModel, dict, dict]:
    """The newest checkpoint of a run as a model, with the run's metadata and state."""
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.exists():
        raise TrainingError(f"{run_dir}: not a training run (no run.json)")
    run_meta = json.loads(run_file.read_text())
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise TrainingError(f"{run_dir}: no complete checkpoint")
    stats = run_meta["dataset_stats"]
    model = DDSPModel(ModelConfig.from_dict(run_meta["model"]), stats["loudness_db_mean"],
                      stats["loudness_db_std"])
    model.load_state_dict(load_file(str(checkpoints[-1] / "model.safetensors")))
    state = json.loads((checkpoints[-1] / "state.json").read_text())
    model.eval()
    return model, run_meta, state


def summarize_history(history: list) -> list:
    """Loss at a few points in wall time: [[step, wall_s, loss], ...] (at most ~12 rows)."""
    if not history:
        return []
    idx = np.unique(np.linspace(0, len(history) - 1, min(12, len(history))).astype(int))
    return [history[i] for i in idx]
