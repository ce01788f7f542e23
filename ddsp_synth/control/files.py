"""Controller folders: ``controller.safetensors`` (weights), ``controller.json`` (what it
is: the network's settings, the chain with each device's parameters, fixed values and
gradient method, the sample rate it listens at, what it was trained on and how it did) and
``MODEL_CARD.md``, written and read as self-describing artefacts
(:mod:`ddsp_synth.artifact`): no pickle, every field checked, one line of
:class:`ControllerFileError` for anything missing, damaged or mismatched.

A training run's folder is a controller folder too (its best validated weights), so
``control apply RUN_DIR`` works during and after training.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from ..artifact import (ArtifactError, ArtifactFormat, load_artifact_tensors, read_artifact_meta,
                        save_artifact)
from ..audio_io import atomic_write_text
from ..config import ConfigError, from_dict
from ..errors import one_line
from ..rack import file_found_from, file_relative_to
from ..stages.params import DeviceError, Param
from .card import controller_card
from .config import ControllerConfig
from .controller import Controller

MAX_CONTROLLER_WEIGHTS = 20_000_000
CARD = "MODEL_CARD.md"
SHIPPED = {"style": "style"}  # shipped controller names -> folders under models/


class ControllerFileError(ArtifactError):
    """A controller folder is missing, damaged or does not match its description."""


CONTROLLER_FILES = ArtifactFormat(kind="controller", weights="controller.safetensors",
                                  config="controller.json", tag="ddsp_synth.controller",
                                  version=1, max_config_bytes=4 << 20, error=ControllerFileError)


def models_dir() -> Path:
    """The shipped models: ``models/`` of the checkout."""
    return Path(__file__).resolve().parents[2] / "models"


def controller_path(name_or_path: str | os.PathLike) -> Path:
    """A controller folder from a path, or a shipped controller's name (``style``)."""
    path = Path(name_or_path)
    if path.is_dir() or str(name_or_path) not in SHIPPED:
        return path
    return models_dir() / SHIPPED[str(name_or_path)]


def save_controller(controller: Controller, folder: str | os.PathLike, chain: list[dict],
                    info: dict, force: bool = False) -> Path:
    """Write the weights, the description and the card into ``folder``.

    Args:
        chain: the devices (:func:`~ddsp_synth.control.devices.describe`).
        info: what it was trained on and how (``training``, ``data``, ``validation``,
            optionally ``evaluation``): stored as given, and summarised in the card.
    """
    # device files relative to the folder, so that the controller runs from any working folder
    chain = [{**e, "source": file_relative_to(e["source"], folder)} for e in chain]
    meta = {"config": asdict(controller.config), "sample_rate": controller.config.sample_rate,
            "hop": controller.hop, "chain": chain,
            "declared": [p.to_dict() for p in controller.declared],
            "fixed": {str(k): v for k, v in sorted(controller.fixed.items())},
            "n_weights": controller.n_weights(), **info}
    folder = save_artifact(folder, CONTROLLER_FILES, controller.state_dict(), meta, force)
    atomic_write_text(Path(folder) / CARD, controller_card(read_controller_meta(folder)))
    return folder


def _run_without_controller(folder, run_file: Path) -> str:
    """Why a training run's folder holds no controller: an instrument's run (``train``'s:
    its run.json names a model and a dataset) is no controller's, and a controller's run
    writes one at its first validation."""
    import json

    try:
        run = json.loads(run_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        run = None
    if isinstance(run, dict) and "model" in run and "data_dir" in run and "chain" not in run:
        return (f"{folder}: an instrument's training run (made by 'ddsp-synth train'), not a "
                "controller: export it with 'ddsp-synth export "
                f"{folder} -o MODEL' and play with 'ddsp-synth transfer INPUT --model MODEL'")
    return (f"{folder}: this training run has no controller yet (it writes one at its first "
            "validation: train it longer with --resume)")


def read_controller_meta(folder: str | os.PathLike) -> dict:
    """``controller.json`` of a folder, checked to be a controller description."""
    path = controller_path(folder)
    if (path / "run.json").is_file() and not (path / CONTROLLER_FILES.config).exists():
        raise ControllerFileError(_run_without_controller(folder, path / "run.json"))
    meta = read_artifact_meta(path, CONTROLLER_FILES)
    for key in ("config", "chain", "declared", "fixed"):
        if key not in meta:
            raise ControllerFileError(f"{folder}: invalid controller description (no {key!r})")
    return meta


def chain_devices(meta: dict) -> list[str]:
    """The device name of each declared parameter of a controller file (its chain's)."""
    return [e["device"] for e in meta["chain"] for _ in e["params"]]


def _rebuild(meta: dict, where: Path) -> Controller:
    """The network a description implies, checked field by field (on the meta device)."""
    import torch

    try:
        config = from_dict(ControllerConfig, meta["config"], "config.")
        declared = tuple(Param.from_dict(p) for p in meta["declared"])
        fixed = {int(k): float(v) for k, v in meta["fixed"].items()}
        if not declared or any(not 0 <= k < len(declared) for k in fixed):
            raise ValueError("no parameters, or a fixed index outside them")
        if not isinstance(meta["chain"], list) or not all(
                isinstance(e, dict) and isinstance(e.get("source"), str) for e in meta["chain"]):
            raise ValueError("the chain is not a list of devices")
        devices = chain_devices(meta)
        if len(devices) != len(declared):
            raise ValueError("the chain's devices do not match the declared parameters")
        rate = meta.get("sample_rate", config.sample_rate)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or rate != config.sample_rate:
            raise ValueError(f"its description says sample_rate {rate!r:.40}, its network "
                             f"{config.sample_rate}")
    except (ConfigError, DeviceError, ValueError, TypeError, AttributeError, KeyError) as err:
        raise ControllerFileError(f"{where}: invalid controller description "
                                  f"({one_line(err)})") from None
    with torch.device("meta"):
        net = Controller(config, declared, fixed, devices=devices)
    if net.n_weights() > MAX_CONTROLLER_WEIGHTS:
        raise ControllerFileError(f"{where}: a network of {net.n_weights()} weights exceeds the "
                                  f"{MAX_CONTROLLER_WEIGHTS} limit")
    return net


def load_controller(folder: str | os.PathLike) -> tuple[Controller, dict]:
    """A controller folder (or a shipped controller's name) as (network in eval mode, its
    description), without pickle."""
    path = controller_path(folder)
    meta = read_controller_meta(path)
    expected = {k: tuple(v.shape) for k, v in _rebuild(meta, path / CONTROLLER_FILES.config)
                .state_dict().items()}
    # (checked by _rebuild) a device file saved beside the controller is found from anywhere
    meta["chain"] = [{**e, "source": file_found_from(e["source"], path)} for e in meta["chain"]]
    tensors = load_artifact_tensors(path, CONTROLLER_FILES, meta, expected)
    config = from_dict(ControllerConfig, meta["config"])
    net = Controller(config, tuple(Param.from_dict(p) for p in meta["declared"]),
                     {int(k): float(v) for k, v in meta["fixed"].items()},
                     devices=chain_devices(meta))
    net.load_state_dict(tensors)
    net.eval()
    return net, meta


def chain_text(meta: dict) -> str:
    """The chain of a controller description as written (``lowshelf,peak,...``)."""
    return ",".join(e["source"] for e in meta["chain"])
