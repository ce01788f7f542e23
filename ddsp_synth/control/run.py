"""Starting a controller's training run: its settings (new or resumed, in ``run.json``), the
chain, the data, the network, optimiser and schedule of one process.

Under ``torchrun`` every rank builds its own chain, so each owns its own pool of worker
processes for the real devices (SPSA's perturbations and the style renderings), and draws
its own examples; rank 0 validates, logs and checkpoints.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..audio_io import atomic_write_text
from ..config import from_dict
from ..gradients.spsa import SPSAConfig
from ..train.setup import dist_info, restore, resume_settings
from ..train.config import TrainConfig, TrainingError
from .config import ControlDataConfig, ControllerConfig, ControlError
from .controller import Controller, neutral_values
from .data import Examples, PairsSource, StyleSource
from .devices import build_chain, chain_entries, declared_params, render_chain

# the training settings a controller starts from (fields of TrainConfig)
CONTROL_TRAIN_DEFAULTS = dict(steps=100_000, batch_size=8, learning_rate=1e-3, lr_decay=0.9,
                              lr_decay_steps=1000, warmup_steps=50, grad_clip=1.0,
                              log_every=10, val_every=250, checkpoint_every=100,
                              audio_every=500, val_examples=32, max_bad_steps=20)
LOSSES = ("mr", "log")  # RunSettings.loss
VAL_STREAM = 7_777_777  # the validation examples' random stream (apart from any step's)


def control_train_config(**overrides) -> TrainConfig:
    """:class:`~ddsp_synth.train.TrainConfig` with the controllers' defaults."""
    return TrainConfig(**{**CONTROL_TRAIN_DEFAULTS, **overrides})


@dataclass(frozen=True)
class RunSettings:
    """Everything a run is made of, as written to ``run.json``.

    Attributes:
        chain: the chain's entries as written.
        method: gradient method of the devices that name none.
        pairs: (input folder, target folder), or None.
        style: folders of recordings, or None.
        controller, data, train, spsa: the settings.
        proxy_dirs: folders searched for proxies first.
        workers: worker processes of each group of real devices.
        loss: ``"mr"`` the multi-resolution spectral distance (linear and log magnitudes),
            ``"log"`` its log term alone (:func:`~ddsp_synth.dsp.spectral.mr_log_distance`,
            the distance behind rel_spec).
    """

    chain: tuple[str, ...]
    method: str
    pairs: tuple[str, ...] | None
    style: tuple[str, ...] | None
    controller: ControllerConfig
    data: ControlDataConfig
    train: TrainConfig
    spsa: SPSAConfig = SPSAConfig()
    proxy_dirs: tuple[str, ...] = ()
    workers: int = 2
    loss: str = "mr"

    def __post_init__(self):
        if self.loss not in LOSSES:
            raise ControlError(f"unknown loss {self.loss!r} (known: {', '.join(LOSSES)})")

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "RunSettings":
        try:
            return RunSettings(
                tuple(d["chain"]), d["method"], tuple(d["pairs"]) if d.get("pairs") else None,
                tuple(d["style"]) if d.get("style") else None,
                from_dict(ControllerConfig, d["controller"], "controller."),
                from_dict(ControlDataConfig, d["data"], "data."),
                from_dict(TrainConfig, d["train"], "train."),
                from_dict(SPSAConfig, d.get("spsa", {}), "spsa."),
                tuple(d.get("proxy_dirs", ())), int(d.get("workers", 2)),
                str(d.get("loss", "mr")))
        except (KeyError, TypeError, ValueError) as err:
            raise TrainingError(f"damaged run.json ({err})") from None


@dataclass
class ControlRun:
    """What one training process holds."""

    run_dir: Path
    settings: RunSettings
    config: TrainConfig  # the schedule reads run.config (ddsp_synth.train.Schedule)
    controller: Controller
    net: torch.nn.Module  # the controller, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: object
    chain: object
    renderer: object  # the chain's real devices (or twins) at the controller's rate
    renderer_kind: str
    source: object
    world: int
    rank: int
    val: Examples | None = None
    writer: object = None
    step: int = 0
    wall_s: float = 0.0
    history: list = field(default_factory=list)
    warmup: list = field(default_factory=lambda: [0])
    best: dict | None = None
    first_val: dict | None = None
    last_val: dict | None = None
    last_val_step: int = -1
    last_audio_step: int = -1

    @property
    def main_proc(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def close(self) -> None:
        for stage in (self.chain, self.renderer):
            if stage is not None:
                stage.close()


def settle(run_dir: Path, settings: RunSettings | None, resume: bool, force: bool,
           given: TrainConfig | dict | None, main_proc: bool) -> tuple[RunSettings, dict]:
    """The run's settings: from ``run.json`` when resuming (with the limits and intervals
    that ``given`` changes: :func:`~ddsp_synth.train.setup.resume_settings`), else the given
    ones, written to ``run.json``. Returns (the settings, those a resume changes: for
    :func:`~ddsp_synth.train.setup.keep_changes`)."""
    run_file = run_dir / "run.json"
    if resume:
        if not run_file.exists():
            raise TrainingError(f"{run_dir}: nothing to resume (no run.json)")
        try:
            saved = RunSettings.from_dict(json.loads(run_file.read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise TrainingError(f"{run_file}: damaged run file ({err})") from None
        train, changed = resume_settings(run_dir, saved.to_dict(), given)
        return RunSettings(**{**saved.__dict__, "train": train}), changed
    if settings is None:
        raise TrainingError("give the run's settings, or resume a run")
    if main_proc:
        if run_file.exists() and not force:
            raise TrainingError(f"{run_dir} already holds a run; use --resume to continue it "
                                "or --force to start over")
        if force:
            for name in ("checkpoints", "tb"):
                shutil.rmtree(run_dir / name, ignore_errors=True)
            (run_dir / "log.jsonl").unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_file, json.dumps(settings.to_dict(), indent=2) + "\n")
    return settings, {}


def _source(settings: RunSettings, chain, renderer):
    cfg, sr = settings.data, settings.controller.sample_rate
    if settings.pairs:
        return PairsSource(settings.pairs[0], settings.pairs[1], sr, cfg,
                           reference=settings.controller.reference)
    declared, fixed, devices = declared_params(chain)
    return StyleSource(settings.style, sr, renderer, declared, devices, cfg, fixed)


def build(run_dir: Path, settings: RunSettings, resume: bool) -> ControlRun:
    """Chain, renderer, data, network, optimiser and schedule of this process (restored from
    the newest checkpoint when resuming)."""
    world, rank, _ = dist_info()
    cfg, sr = settings.train, settings.controller.sample_rate
    if not settings.pairs and not settings.style:
        raise ControlError("give training data: --pairs INPUT_DIR TARGET_DIR or --style DIR")
    torch.manual_seed(cfg.seed + rank)
    chain = build_chain(list(settings.chain), sr, settings.method, settings.workers,
                        settings.proxy_dirs, settings.spsa, cfg.seed + rank)
    renderer, kind = render_chain(list(settings.chain), sr, settings.data.workers)
    try:
        source = _source(settings, chain, renderer)
        declared, fixed, devices = declared_params(chain)
        controller = Controller(settings.controller, declared, fixed,
                                neutral_values(declared, devices), devices)
    except BaseException:
        chain.close()
        renderer.close()
        raise
    optimizer = torch.optim.Adam(controller.parameters(), lr=cfg.learning_rate)
    state, scheduler, warmup = restore(run_dir, controller, optimizer, cfg, resume)
    net = controller
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(controller)
    return ControlRun(run_dir, settings, cfg, controller, net, optimizer, scheduler, chain,
                      renderer, kind, source, world, rank, step=state.get("step", 0),
                      wall_s=state.get("wall_s", 0.0),
                      history=state.get("history", []), warmup=warmup, best=state.get("best"),
                      first_val=state.get("first_val"))




def step_rng(run: ControlRun, stream: int = 0) -> np.random.Generator:
    """The random stream of this step on this rank (a resumed run draws the same)."""
    return np.random.default_rng([run.config.seed, run.step, run.rank, stream])


def validation_examples(run: ControlRun) -> Examples:
    return run.source.batch(np.random.default_rng([run.config.seed, VAL_STREAM]),
                            run.config.val_examples, held_out=True)


def chain_settings(entries) -> tuple[str, ...]:
    return tuple(chain_entries(entries))
