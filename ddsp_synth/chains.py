"""Chains from their text: the registry's names, the synthesizer's settings and the
gradient methods put together.

``make_chain("harmonic,noise,peak:q=0.7,compressor@spsa,reverb", 16000, synth=config)``
gives a :class:`~ddsp_synth.stages.chain.Chain`: the synthesizer's stages from ``synth``
(:class:`~ddsp_synth.stages.synth.SynthConfig`), each effect device as the stage of its
gradient method (its ``@method``, else the chain's ``method``, else ``autodiff``).
Consecutive devices that run the real devices by the same method (``spsa``, ``hybrid``)
form one stage, so that one pool call runs them in series and SPSA perturbs all their
parameters at once (the gradient of an early device then sees the devices after it).

:func:`preset` writes a chain's settings in natural units as ``match``, controllers and the
effects rack share them: ``{"chain": [{"device", "params"}, ...]}``.
"""

from __future__ import annotations

import os

import numpy as np

from .audio_io import check_sample_rate
from .gradients.methods import REAL_METHODS, device_stage, real_stage
from .gradients.spsa import SPSAConfig
from .stages.chain import Chain, unique_labels
from .stages.params import DeviceError, denormalise
from .stages.registry import (SYNTH_NAMES, ChainEntry, Device, entry_file, make_device,
                              parse_chain)
from .stages.synth import SynthConfig
from .stages.twins import default_hop


def _groups(items: list) -> list[list]:
    """Consecutive (entry, device, method) items that share a real-device method, grouped."""
    groups: list[list] = []
    for item in items:
        _, device, method = item
        last = groups[-1][-1] if groups else None
        if (device is not None and method in REAL_METHODS and last is not None
                and last[1] is not None and last[2] == method):
            groups[-1].append(item)
        else:
            groups.append([item])
    return groups


def _resolve(entries: list[ChainEntry], sample_rate: int, method: str | None) -> list:
    items = []
    for entry in entries:
        if entry.name in SYNTH_NAMES:
            if entry.fixed or entry.method not in (None, "autodiff"):
                raise DeviceError(f"'{entry.text}': the synthesizer's stages take no fixed "
                                  "parameters and only autodiff")
            items.append((entry, None, None))
        else:
            device = make_device(entry, sample_rate)
            items.append((entry, device, entry.method or method or "autodiff"))
    return items


def make_chain(chain, sample_rate: int, hop: int | None = None, method: str | None = None,
               synth: SynthConfig | None = None, n_workers: int = 2,
               proxies: dict | None = None, proxy_dirs: list[str | os.PathLike] = (),
               spsa: SPSAConfig = SPSAConfig(), seed: int = 0) -> Chain:
    """A chain from its text (or a list of entries), ready to render.

    Args:
        chain: ``"peak,compressor@spsa"``, ``["harmonic", "noise", "reverb"]``, ...
        sample_rate: Hz.
        hop: samples per parameter frame (default: the synthesizer's, else 10 ms).
        method: gradient method of the effect devices that name none.
        synth: settings of the synthesizer's stages (default: ``SynthConfig`` at this rate).
        n_workers: worker processes of each group of real devices.
        proxies, proxy_dirs: proxies by device name / folders searched for them.
        spsa: SPSA settings; seed: SPSA perturbations.
    """
    sample_rate = check_sample_rate(sample_rate)
    synth = synth or SynthConfig(sample_rate=sample_rate, hop=hop or default_hop(sample_rate))
    hop = hop or synth.hop
    items = _resolve(parse_chain(chain), sample_rate, method)
    stages = []
    for group in _groups(items):
        entry, device, m = group[0]
        if device is None:
            stage = synth.stage(entry.name)
            stage.devices = []
        else:
            stage = device_stage([d for _, d, _ in group], m, hop, n_workers, proxies,
                                 proxy_dirs, spsa, seed)
        stages.append(stage)
    labels = unique_labels(["+".join(d.name for d in s.devices) if s.devices else s.name
                            for s in stages])
    return Chain(stages, labels)


def synth_chain(config: SynthConfig) -> Chain:
    """The synthesizer of a model: its ``processors`` with its settings."""
    return make_chain(list(config.processors), config.sample_rate, config.hop, synth=config)


def chain_devices(chain: Chain) -> list[tuple[int, Device]]:
    """(offset of its first parameter in the chain's, device) for every effect device."""
    out, offset = [], 0
    for stage in chain.stages():
        start = offset
        for device in getattr(stage, "devices", []):
            out.append((start, device))
            start += len(device.params)
        offset += stage.n_params
    return out


def fixed_params(chain: Chain) -> dict[int, float]:
    """{index in the chain's parameters: natural value} of every fixed parameter."""
    return {offset + i: v for offset, d in chain_devices(chain) for i, v in d.fixed.items()}


def real_chain(chain: Chain, n_workers: int = 2):
    """The chain's devices through their real implementations, as one black box (its
    parameters are the chain's)."""
    if any(not getattr(s, "devices", None) for s in chain.stages()):
        raise DeviceError("only a chain of effect devices runs as real devices")
    return real_stage([d for _, d in chain_devices(chain)], chain.hop, n_workers)


def preset(chain: Chain, natural: np.ndarray, method: str | None = None) -> dict:
    """``{"chain": [{"device", "params"[, "source"]}...][, "method"]}`` in natural units.

    Args:
        natural: [P] the chain's parameters.
    """
    natural = np.asarray(natural, np.float64).reshape(-1)
    entries = []
    for offset, device in chain_devices(chain):
        values = natural[offset : offset + len(device.params)]
        entry = {"device": device.name,
                 "params": {p.name: round(float(v), 6) for p, v in zip(device.params, values)}}
        path = entry_file(device.source) if device.source else None
        if path is not None:  # the file only: a preset sets every value, and has no method
            entry["source"] = path
        entries.append(entry)
    out = {"chain": entries}
    if method is not None:
        out["method"] = method
    return out


def preset_from_normalised(chain: Chain, u: np.ndarray, method: str | None = None) -> dict:
    """:func:`preset` of normalised parameters [P]."""
    return preset(chain, denormalise(chain.params, np.asarray(u, np.float64)[None])[0], method)
