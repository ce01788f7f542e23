"""Starting a run: its settings (new, resumed, or from another model), the model, optimiser,
schedule and data of one process."""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..audio_io import atomic_write_bytes, atomic_write_text
from ..config import from_dict
from ..data import DDSPDataset, collate, load_manifest, load_stats
from ..model import DDSPModel, ModelConfig, check_stats, copy_weights, with_stats
from . import checkpoints
from .config import TrainConfig, TrainingError, lr_factor


def dist_info() -> tuple[int, int, int]:
    """(world size, rank, local rank) from ``torchrun``'s environment; (1, 0, 0) alone."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return world, rank, local


def init_distributed(world: int) -> None:
    """Join the process group under ``torchrun`` (nccl with CUDA, gloo otherwise)."""
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")


def restore(run_dir: Path, module: torch.nn.Module, optimizer, config: TrainConfig,
            resume: bool) -> tuple[dict, torch.optim.lr_scheduler.LambdaLR, list[int]]:
    """A run's state, its learning-rate schedule and warm-up.

    Resuming, the newest complete checkpoint is loaded into ``module`` and ``optimizer``
    and its state returned (``step``, ``wall_s``, ``history``, ``warmup_steps``,
    ``first_val``, ``best``); a fresh run's state is ``{}``. The warm-up is a one-item list
    that the schedule reads, so a time budget can still shorten it.
    """
    state = {}
    if resume:
        done = checkpoints.list_checkpoints(run_dir)
        if not done:
            raise TrainingError(f"{run_dir}: no complete checkpoint to resume from")
        state = checkpoints.load_checkpoint(done[-1], module, optimizer)
    warmup = [int(state.get("warmup_steps", config.warmup_steps))]
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, config, warmup[0]),
        last_epoch=state["step"] - 1 if resume else -1)
    return state, scheduler, warmup


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
    warmup: list = field(default_factory=lambda: [0])  # [steps]: read by the schedule
    first_val: dict | None = None  # the validation before any step (the starting model's)
    best: dict | None = None  # {"step", "val"} of the best validated checkpoint
    last_val: dict | None = None
    last_val_step: int = -1
    last_audio_step: int = -1

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler) // self.config.batch_size


#: the training settings a resumed run may change: its limits and intervals. The others make
#: the run what it is (its batches, learning rates and random streams: an exact resume).
RESUMABLE = ("steps", "max_minutes", "num_threads", "max_bad_steps", "log_every", "val_every",
             "checkpoint_every", "audio_every", "keep_checkpoints")


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _differences(given: dict, own: dict, where: str = "") -> list[str]:
    """``name value (the run's: value)`` for every setting of ``given`` (nested dicts: by
    their leaves) whose value is not the run's ``own``."""
    out = []
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(own.get(key), dict):
            out += _differences(value, own[key], f"{where}{key}.")
        elif value != own.get(key):
            out.append(f"{where}{key} {_shown(value)} (the run's: {_shown(own.get(key))})")
    return out


def _init_from_differs(given, own: str | None, recorded: bool = True) -> list[str]:
    """A model to start from given on resume: refused unless it is the run's own (a resumed
    run continues from its checkpoint, whatever it started from), or the run did not record
    its own (``recorded`` False: a run made before run.json kept it)."""
    if given is None or not recorded or str(given) == own or (
            own is not None and Path(str(given)).resolve() == Path(own).resolve()):
        return []
    return [f"init_from {given} (the run's: {own or 'none, it started from scratch'})"]


def resume_settings(run_dir: Path, run_meta: dict, given: TrainConfig | dict | None,
                    differ: list[str] = ()) -> tuple[TrainConfig, dict]:
    """The training settings a resumed run goes on with: its own (``run_meta["train"]``,
    from its run.json), with the limits and intervals (:data:`RESUMABLE`) that ``given``
    changes. Any other setting of ``given`` must be the run's: one that is not (or any in
    ``differ``, the caller's own checks) is a TrainingError naming it and the run's value.

    Args:
        given: the settings given for this resume, or only some of them (a dict); None
            keeps the run's.

    Returns:
        (the settings, {name: new value} of those that changed: :func:`keep_changes` says
        so and keeps them once the checkpoint has loaded).
    """
    own = asdict(from_dict(TrainConfig, run_meta["train"], "train."))
    given = asdict(given) if isinstance(given, TrainConfig) else {} if given is None else given
    if not isinstance(given, dict):
        from_dict(TrainConfig, given, "train.")  # says what it should be
    config = from_dict(TrainConfig, {**own, **given}, "train.")  # checks what was given
    differ = list(differ) + _differences(
        {k: v for k, v in asdict(config).items() if k in given and k not in RESUMABLE}, own)
    if differ:
        raise TrainingError(f"{run_dir}: --resume continues the run with its own settings, "
                            f"and these differ from them: {'; '.join(differ)}; drop them, or "
                            "start a new run (another folder, or --force)")
    return config, {k: v for k, v in asdict(config).items() if k in given and v != own[k]}


def keep_changes(run_dir: Path, config: TrainConfig, changed: dict) -> None:
    """A resumed run's new limits (``changed``, from :func:`resume_settings`): said in one
    line and kept in its run.json for the next resume (rank 0's work)."""
    if not changed:
        return
    run_file = run_dir / "run.json"
    run_meta = json.loads(run_file.read_text())
    own = run_meta["train"]
    atomic_write_text(run_file, json.dumps({**run_meta, "train": asdict(config)}, indent=2)
                      + "\n")
    print(f"{run_dir}: resuming with {'; '.join(_differences(changed, own))} (kept for the "
          f"next --resume); its limits now: {_limits(config)}", file=sys.stderr)


def _limits(config: TrainConfig) -> str:
    minutes = (f"{_shown(config.max_minutes)} min from this start" if config.max_minutes
               else "no time limit")
    return f"{config.steps} steps, {minutes}"


def _set_threads(config: TrainConfig) -> None:
    if config.num_threads:
        torch.set_num_threads(config.num_threads)


def _start(data_dir: Path, run_dir: Path, model_config: ModelConfig | None,
           given: TrainConfig | dict | None, resume: bool, force: bool, init_from,
           main_proc: bool, distributed: bool
           ) -> tuple[ModelConfig, TrainConfig, DDSPModel | None, dict]:
    """Settle the run's settings: from ``run.json`` when resuming (with the limits and
    intervals ``given`` changes; :func:`resume_settings`), else from the arguments (or the
    model of ``init_from``), checked against the dataset and written to ``run.json``.
    Returns (model settings, training settings, the ``init_from`` model or None, the
    settings a resume changes: for :func:`keep_changes`)."""
    manifest = load_manifest(data_dir)
    stats = load_stats(data_dir)
    run_file = run_dir / "run.json"
    init_model = None
    if resume:
        if not run_file.exists():
            raise TrainingError(f"{run_dir}: nothing to resume (no run.json)")
        run_meta = checkpoints.read_run(run_file)
        given_model, model_config = model_config, ModelConfig.from_dict(run_meta["model"])
        if (asdict(model_config.features) != manifest["config"]["features"]
                or stats != run_meta["dataset_stats"]):
            raise TrainingError(f"{run_dir} was trained on {run_meta['data_dir']}, and "
                                f"{data_dir} is another dataset (its features or statistics "
                                "differ): resume on the run's own, or start a new run")
        differ = [] if given_model is None else _differences(
            given_model.to_dict(), model_config.to_dict(), "model.")
        differ += _init_from_differs(init_from, run_meta.get("init_from"),
                                     "init_from" in run_meta)
        config, changed = resume_settings(run_dir, run_meta, given, differ)
        _set_threads(config)
        return model_config, config, None, changed
    if main_proc and run_file.exists() and not force:
        raise TrainingError(f"{run_dir} already holds a run; use --resume to continue it "
                            "or --force to start over")
    config = given if isinstance(given, TrainConfig) else from_dict(TrainConfig, given or {},
                                                                      "train.")
    _set_threads(config)
    feature_cfg = manifest["config"]["features"]
    given_init = None if init_from is None else str(init_from)
    if init_from == "auto":
        init_from = _auto_init(data_dir, main_proc)
    if init_from is not None:
        from ..model import load_model

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
    _check_batch(DDSPDataset(data_dir, "train"), config.batch_size, dist_info()[0])
    if main_proc:
        if force and (run_dir / "checkpoints").exists():
            shutil.rmtree(run_dir / "checkpoints")
            (run_dir / "log.jsonl").unlink(missing_ok=True)
        run_meta = {"model": model_config.to_dict(), "train": asdict(config),
                    "data_dir": str(data_dir), "dataset_stats": stats,
                    "init_from": given_init}
        run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(run_meta, indent=2)
        atomic_write_bytes(run_file, lambda tmp: Path(tmp).write_text(text))
    if distributed:
        dist.barrier()
    return model_config, config, init_model, {}


def closest_shipped_model(data_dir: str | os.PathLike, n_examples: int = 8) -> Path | None:
    """The shipped model that already resynthesizes a dataset best: lowest multi-resolution
    spectral loss on ``n_examples`` training windows spread over the data, each model
    normalising loudness with this dataset's statistics (as it will when fine-tuned). Only
    models with the dataset's feature settings qualify; None when none does."""
    from ..losses import multi_resolution_stft_loss
    from ..model import available_models, load_model

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


def _param_groups(model: DDSPModel, config: TrainConfig) -> list[dict]:
    """The optimiser's parameter groups: the network's weights, and the effect settings the
    model learns once with their own learning rate (when the model has any)."""
    once = list(model.effects.once.parameters()) if model.effects is not None else []
    if not once:
        return [{"params": list(model.parameters())}]
    ids = {id(p) for p in once}
    return [{"params": [p for p in model.parameters() if id(p) not in ids]},
            {"params": once, "lr": config.effects_learning_rate or config.learning_rate}]


def _build(data_dir: Path, run_dir: Path, model_config: ModelConfig, config: TrainConfig,
           init_model: DDSPModel | None, resume: bool) -> _Run:
    """Model, optimiser, schedule and data for this process; restored from the newest
    checkpoint when resuming."""
    world, rank, local_rank = dist_info()
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    torch.manual_seed(config.seed + rank)
    model = with_stats(model_config, load_stats(data_dir)).to(device)
    if init_model is not None:  # weights only: the loudness normalisation stays this data's
        copy_weights(init_model, model)
    optimizer = torch.optim.Adam(_param_groups(model, config), lr=config.learning_rate)
    state, scheduler, warmup = restore(run_dir, model, optimizer, config, resume)
    step, wall_s = state.get("step", 0), state.get("wall_s", 0.0)
    if resume and world > 1:  # each rank continues its own noise stream
        torch.manual_seed(config.seed + rank + 1_000_003 * step)
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
                history=state.get("history", []), warmup=warmup,
                first_val=state.get("first_val"), best=state.get("best"))
