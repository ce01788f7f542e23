"""Self-describing artefact folders: tensors in safetensors, a description in JSON, no pickle.

Models, neural proxies and controllers are saved the same way: a weights file and a JSON
description that holds a format tag and version, everything needed to rebuild the network,
what it was trained on, the tensor shapes and the SHA-256 of the weights. Loading checks the
description (a regular file of bounded size, valid JSON, the right format and version), then
the shapes in the weights file's header against what the description implies (before any
tensor is read), the checksum, and that every value is finite; every failure is one line of
the artefact's own error class.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .audio_io import atomic_write_bytes, atomic_write_text
from .config import ConfigError, read_json_file
from .errors import UserError, one_line


class ArtifactError(UserError):
    """An artefact folder is missing, damaged or does not match its description."""


@dataclass(frozen=True)
class ArtifactFormat:
    """What kind of artefact a folder holds and how its files are named.

    Attributes:
        kind: for messages ("model", "proxy", "controller").
        weights: file name of the tensors (``model.safetensors``).
        config: file name of the description (``config.json``).
        tag: value of the description's ``format`` field; ``tag_optional`` accepts a
            description without one (files written before the field existed).
        version: the ``format_version`` this code reads and writes.
        max_config_bytes: a larger description is refused before it is read.
        error: the error class raised for this kind of artefact.
    """

    kind: str
    weights: str
    config: str
    tag: str
    version: int
    max_config_bytes: int = 16 << 20
    error: type = ArtifactError
    tag_optional: bool = False


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_not_there(folder: Path, fmt: ArtifactFormat, force: bool) -> None:
    """The artefact's error unless its files can be written (absent, or ``force``)."""
    for name in (fmt.weights, fmt.config):
        if (folder / name).exists() and not force:
            raise fmt.error(f"{folder / name} exists; pass --force to overwrite it")


def save_artifact(folder: str | os.PathLike, fmt: ArtifactFormat, tensors: dict, meta: dict,
                  force: bool = False) -> Path:
    """Write the weights, then the description (which carries their checksum), atomically.

    A crash between the two leaves the old description, whose checksum no longer matches
    the new weights: the folder then refuses to load rather than mixing two versions.

    Args:
        folder: the artefact folder (made if needed).
        tensors: name -> tensor (moved to the CPU, made contiguous).
        meta: the description; ``format``, ``format_version``, ``tensors`` (shapes) and
            ``weights_sha256`` are added.
        force: overwrite an existing artefact.

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    check_not_there(folder, fmt, force)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / fmt.weights, lambda tmp: save_file(tensors, tmp))
    meta = {"format": fmt.tag, "format_version": fmt.version, **meta,
            "tensors": {k: list(v.shape) for k, v in tensors.items()},
            "weights_sha256": file_sha256(folder / fmt.weights)}
    atomic_write_text(folder / fmt.config, json.dumps(meta, indent=2) + "\n")
    return folder


def read_artifact_meta(folder: str | os.PathLike, fmt: ArtifactFormat) -> dict:
    """The description of an artefact folder, checked: a bounded regular JSON file of the
    right format and version. One-line ``fmt.error`` otherwise."""
    folder = Path(folder)
    path = folder / fmt.config
    if not folder.is_dir():
        raise fmt.error(f"{folder}: no such {fmt.kind} folder")
    if not path.exists():
        raise fmt.error(f"{folder}: missing {fmt.config}")
    try:
        meta = read_json_file(path, fmt.max_config_bytes, "JSON")
    except ConfigError as err:
        raise fmt.error(str(err)) from None
    if not isinstance(meta, dict):
        raise fmt.error(f"{path}: not a ddsp_synth {fmt.kind} description")
    tag = meta.get("format")
    if tag != fmt.tag and not (tag is None and fmt.tag_optional):
        raise fmt.error(f"{path}: not a ddsp_synth {fmt.kind} description")
    version = meta.get("format_version")
    if version != fmt.version:
        raise fmt.error(f"{path}: {fmt.kind} format version {version!r} is not supported "
                        f"(this ddsp_synth reads version {fmt.version})")
    return meta


def load_artifact_tensors(folder: str | os.PathLike, fmt: ArtifactFormat, meta: dict,
                          expected: dict[str, tuple[int, ...]], device: str = "cpu") -> dict:
    """The tensors of an artefact, checked against what its description implies.

    Args:
        meta: the checked description (:func:`read_artifact_meta`).
        expected: name -> shape the rebuilt network needs (build it on the ``meta`` device
            to allocate nothing).

    Returns:
        name -> tensor on ``device``.
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    import torch

    weights = Path(folder) / fmt.weights
    if not weights.is_file():
        raise fmt.error(f"{folder}: missing {fmt.weights}")
    try:
        with safe_open(str(weights), "pt") as fh:
            stored = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise fmt.error(f"{weights}: damaged or truncated weights ({one_line(err)})") from None
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise fmt.error(f"{weights}: tensors do not match {fmt.config} (missing {missing[:3]}, "
                        f"unexpected {extra[:3]})")
    for k, shape in expected.items():
        if stored[k] != tuple(shape):
            raise fmt.error(f"{weights}: tensor {k} has shape {stored[k]}, {fmt.config} "
                            f"implies {tuple(shape)}")
    if "weights_sha256" in meta and file_sha256(weights) != meta["weights_sha256"]:
        raise fmt.error(f"{weights}: the weights do not match the checksum in {fmt.config} "
                        "(damaged or replaced file)")
    try:
        tensors = load_file(str(weights), device=device)
    except (SafetensorError, OSError, ValueError) as err:
        raise fmt.error(f"{weights}: damaged or truncated weights ({one_line(err)})") from None
    for k, t in tensors.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise fmt.error(f"{weights}: tensor {k} contains NaN or infinite values")
    return tensors


def finite_number(value, low: float | None = None, high: float | None = None) -> bool:
    """Whether ``value`` is a JSON number (not a bool) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return (low is None or value >= low) and (high is None or value <= high)
