"""Checkpoints without pickle (tensors in safetensors, the rest in JSON), written to a
temporary folder and renamed into place; a run's newest checkpoint as a model file."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from ..model import DDSPModel, ModelConfig, with_stats
from .config import TrainingError


CHECKPOINT_FORMAT_VERSION = 1


def _weights(model: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


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


def _save_tensors(tensors: dict, path: Path) -> None:
    """Tensors to a safetensors file with the usual permissions (0666 less the umask, as
    every other file written; safetensors itself makes its files 0600)."""
    from safetensors.torch import save_file

    from ..audio_io import FILE_MODE

    save_file(tensors, str(path))
    os.chmod(path, FILE_MODE)


def save_checkpoint(run_dir: Path, model: DDSPModel, optimizer, step: int, extra: dict,
                    keep: int) -> Path:
    ckdir = run_dir / "checkpoints"
    final = ckdir / f"step-{step:07d}"
    tmp = ckdir / f"step-{step:07d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_tensors(_weights(model), tmp / "model.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    opt_tensors["rng.torch"] = torch.get_rng_state()
    _save_tensors(opt_tensors, tmp / "optimizer.safetensors")
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


def read_run(run_file: Path) -> dict:
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


BEST = "best"  # checkpoints/best: the weights that validated best, and when


def save_best(run_dir: Path, model: DDSPModel, state: dict) -> Path:
    """Keep ``model`` as the run's best validated weights (written aside, renamed into
    place: an interruption leaves the previous best)."""
    ckdir = run_dir / "checkpoints"
    final, tmp = ckdir / BEST, ckdir / f"{BEST}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _save_tensors(_weights(model), tmp / "model.safetensors")
    (tmp / "state.json").write_text(json.dumps({"format_version": CHECKPOINT_FORMAT_VERSION,
                                                **state}, indent=2))
    old = ckdir / f"{BEST}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def load_run_model(run_dir: str | os.PathLike, which: str = BEST
                   ) -> tuple[DDSPModel, dict, dict]:
    """A run's best validated weights (``which="best"``, when the run has them) or its newest
    checkpoint (``"last"``) as a model, with the run's metadata and that checkpoint's state."""
    run_dir = Path(run_dir)
    run_file = run_dir / "run.json"
    if not run_file.exists():
        raise TrainingError(f"{run_dir}: not a training run (no run.json)")
    run_meta = read_run(run_file)
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise TrainingError(f"{run_dir}: no complete checkpoint")
    best = run_dir / "checkpoints" / BEST
    path = best if which == BEST and (best / "state.json").exists() else checkpoints[-1]
    model = with_stats(ModelConfig.from_dict(run_meta["model"]), run_meta["dataset_stats"])
    state = load_checkpoint(path, model, None)
    model.eval()
    return model, run_meta, state


def export_run(run_dir: str | os.PathLike, model_dir: str | os.PathLike,
               force: bool = False, which: str = BEST) -> tuple[DDSPModel, dict]:
    """Write a run's best validated weights (or, with ``which="last"``, its newest
    checkpoint) as a self-describing model folder (weights, settings, dataset statistics and
    a training summary). Returns (model, checkpoint state)."""
    from ..model import save_model

    model, run_meta, state = load_run_model(run_dir, which)
    training = {"steps": state["step"], "wall_s": state["wall_s"],
                "train_config": run_meta["train"], "data_dir": run_meta["data_dir"],
                "loss_history": summarize_history(_history_until(Path(run_dir), state))}
    if state.get("val") is not None:  # the best weights: how they validated
        training["validation"] = state["val"]
    save_model(model, model_dir, run_meta["dataset_stats"], training, force=force)
    return model, state


def _history_until(run_dir: Path, state: dict) -> list:
    """The loss history up to a checkpoint's step: its own, or (best weights saved before
    they kept one) the newest checkpoint's rows up to that step."""
    if "history" in state:
        return state["history"]
    saved = list_checkpoints(run_dir)
    if not saved:
        return []
    newest = json.loads((saved[-1] / "state.json").read_text())
    return [row for row in newest.get("history", []) if row[0] <= state["step"]]


def summarize_history(history: list) -> list:
    """Loss at a few points in wall time: [[step, wall_s, loss], ...] (at most ~12 rows)."""
    if not history:
        return []
    idx = np.unique(np.linspace(0, len(history) - 1, min(12, len(history))).astype(int))
    return [history[i] for i in idx]
