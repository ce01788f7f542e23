"""Proxy folders: ``proxy.safetensors`` (weights) and ``proxy.json`` (format version, device,
sample rate, declared parameters, architecture, training summary, held-out accuracy, tensor
shapes, the weights' SHA-256), written and read as self-describing artefacts
(:mod:`ddsp_synth.artifact`): no pickle, every field checked, a one-line
:class:`ProxyFileError` for anything missing, damaged or mismatched.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

from torch import nn

from ...artifact import (ArtifactError, ArtifactFormat, finite_number, load_artifact_tensors,
                         read_artifact_meta, save_artifact)
from ...errors import one_line
from ...stages.params import Param
from .net import Proxy, ProxyConfig, ProxyTCN

MAX_PROXY_PARAMETERS = 5_000_000


class ProxyFileError(ArtifactError):
    """A proxy file is missing, damaged or does not match its description (one line)."""


PROXY_FILES = ArtifactFormat(kind="proxy", weights="proxy.safetensors", config="proxy.json",
                             tag="ddsp_synth.proxy", version=1, max_config_bytes=1 << 20,
                             error=ProxyFileError)
PROXY_WEIGHTS, PROXY_CONFIG = PROXY_FILES.weights, PROXY_FILES.config


def save_proxy(proxy: Proxy, out_dir: str | os.PathLike, force: bool = False) -> Path:
    """Write ``proxy.safetensors`` then ``proxy.json`` atomically into ``out_dir``."""
    model = proxy.model
    meta = {**proxy.meta, "device": proxy.device_name, "sample_rate": proxy.sample_rate,
            "params": [p.to_dict() for p in proxy.params],
            "architecture": {**asdict(model.config),
                             "receptive_field_samples": model.config.receptive_field},
            "n_parameters": model.n_parameters()}
    return save_artifact(out_dir, PROXY_FILES, model.state_dict(), meta, force)


def read_proxy_config(proxy_dir: str | os.PathLike) -> dict:
    """``proxy.json`` of a proxy directory, checked; ProxyFileError (one line) otherwise."""
    return read_artifact_meta(proxy_dir, PROXY_FILES)


def _describe(meta: dict, path: Path) -> tuple[tuple[Param, ...], ProxyConfig, int, str]:
    """(params, architecture, sample rate, device name) from a description, checked."""
    try:
        params = tuple(Param.from_dict(p) for p in meta["params"])
        arch = {k: v for k, v in meta["architecture"].items() if k != "receptive_field_samples"}
        config = ProxyConfig(**{**arch, "dilations": tuple(arch["dilations"])})
        sample_rate, device_name = meta["sample_rate"], meta["device"]
        if not finite_number(sample_rate, 1000, 384000) or not isinstance(sample_rate, int):
            raise ValueError(f"bad sample_rate {sample_rate!r}")
        if not isinstance(device_name, str) or not params:
            raise ValueError("missing device name or parameters")
    except Exception as err:  # KeyError, TypeError, ValueError, DeviceError
        raise ProxyFileError(f"{path}: invalid proxy description ({one_line(err)})") from None
    c, k, n = config.channels, config.kernel_size, len(config.dilations)
    size = n * (c * c * k + c * c + 2 * c) + config.film_hidden * (len(params) + 2 * c * n)
    if size > MAX_PROXY_PARAMETERS:
        raise ProxyFileError(f"{path}: architecture of about {size} parameters exceeds the "
                             f"{MAX_PROXY_PARAMETERS} limit")
    return params, config, sample_rate, device_name


def load_proxy(proxy_dir: str | os.PathLike, hop: int | None = None) -> Proxy:
    """Load a proxy folder (or a shipped proxy by its name: ``"compressor"``) without pickle;
    every field is checked before allocating.

    Args:
        hop: samples per parameter frame of the stage (default: 10 ms).
    """
    import torch

    proxy_dir = Path(proxy_dir)
    if not proxy_dir.exists() and len(proxy_dir.parts) == 1 \
            and (proxies_dir() / proxy_dir / PROXY_CONFIG).is_file():
        proxy_dir = proxies_dir() / proxy_dir  # a shipped proxy by name, as models load
    meta = read_proxy_config(proxy_dir)
    params, config, sample_rate, device_name = _describe(meta, proxy_dir / PROXY_CONFIG)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in ProxyTCN(len(params), config).state_dict().items()}
    tensors = load_artifact_tensors(proxy_dir, PROXY_FILES, meta, expected)
    model = ProxyTCN(len(params), config)
    model.load_state_dict(tensors)
    model.eval()
    return Proxy(model, device_name, sample_rate, params, meta, hop)


def proxies_dir() -> Path:
    """Shipped proxies: $DDSP_SYNTH_PROXIES, else ``models/proxies/`` of the checkout."""
    env = os.environ.get("DDSP_SYNTH_PROXIES")
    return Path(env) if env else Path(__file__).resolve().parents[3] / "models" / "proxies"


def _candidates(name: str, extra_dirs) -> list[Path]:
    roots = [Path(d) for d in extra_dirs] + [proxies_dir()]
    return [cand for root in roots for cand in (root, root / name)
            if (cand / PROXY_CONFIG).is_file()]


def find_proxy(device_name: str, sample_rate: int,
               extra_dirs: list[str | os.PathLike] = ()) -> Path | None:
    """Folder of a proxy for ``device_name`` at ``sample_rate``: ``DIR/<device_name>/`` in
    ``extra_dirs`` (first), then the shipped ones; a directory that is itself a proxy of that
    device counts too. None when there is none."""
    for cand in _candidates(device_name, extra_dirs):
        try:
            meta = read_proxy_config(cand)
        except ProxyFileError:
            continue
        if meta.get("device") == device_name and meta.get("sample_rate") == sample_rate:
            return cand
    return None


def proxy_rates(device_name: str, extra_dirs) -> list[int]:
    """Sample rates of the proxies of ``device_name`` that exist (at any rate)."""
    rates = set()
    for cand in _candidates(device_name, extra_dirs):
        try:
            meta = read_proxy_config(cand)
        except ProxyFileError:
            continue
        if meta.get("device") == device_name and isinstance(meta.get("sample_rate"), int):
            rates.add(meta["sample_rate"])
    return sorted(rates)


def frozen(module: nn.Module) -> nn.Module:
    """``module`` with every weight excluded from training (a proxy is not fine-tuned by the
    network it serves)."""
    for p in module.parameters():
        p.requires_grad_(False)
    return module
