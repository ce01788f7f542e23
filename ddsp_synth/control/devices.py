"""The chain a controller drives: built for training, described in its file, checked against
another chain, and rebuilt at any sample rate to render through the real devices.

A controller predicts settings in natural units (Hz, dB, ms), which mean the same at every
sample rate; only the ranges of the filters' frequencies grow with the rate (up to 0.45 of
it). So a controller that listens at 16 kHz renders a 48 kHz song through devices made at
48 kHz, with its settings clipped into the ranges there (which only matters below the
controller's own rate).
"""

from __future__ import annotations

import numpy as np

from ..chains import chain_devices, make_chain
from ..gradients.methods import GRADIENT_METHODS, real_stage, twin_stage
from ..gradients.spsa import SPSAConfig
from ..stages.chain import Chain
from ..stages.params import DeviceError, Param
from ..stages.registry import SYNTH_NAMES, make_device, parse_chain
from ..stages.twins import default_hop
from .config import ControlError


def chain_entries(chain) -> list[str]:
    """A chain's entries as written (``"peak:q=0.7@spsa"``), from its text or a list."""
    return [e.text for e in parse_chain(chain)]


def build_chain(chain, sample_rate: int, method: str, n_workers: int = 2, proxy_dirs=(),
                spsa: SPSAConfig = SPSAConfig(), seed: int = 0) -> Chain:
    """The chain whose gradients train a controller (``method`` for devices naming none)."""
    if method not in GRADIENT_METHODS:
        raise ControlError(f"unknown method '{method}'; choose one of "
                           f"{', '.join(GRADIENT_METHODS)}")
    synth = [e.name for e in parse_chain(chain) if e.name in SYNTH_NAMES]
    if synth:
        raise ControlError(f"'{synth[0]}' is a stage of the synthesizer: a controller drives "
                           "effect devices only")
    return make_chain(chain, sample_rate, method=method, n_workers=n_workers,
                      proxy_dirs=list(proxy_dirs), spsa=spsa, seed=seed)


def describe(chain: Chain) -> list[dict]:
    """Every device of a chain: name, how it was named, gradient method, declared
    parameters and fixed values (what a controller file records)."""
    out = []
    for stage in chain.stages():
        method = getattr(stage, "method", "autodiff")
        for device in stage.devices:
            names = [p.name for p in device.params]
            out.append({"device": device.name, "source": device.source, "method": method,
                        "params": [p.to_dict() for p in device.params],
                        "fixed": {names[i]: v for i, v in sorted(device.fixed.items())}})
    return out


def declared_params(chain: Chain) -> tuple[tuple[Param, ...], dict[int, float], list[str]]:
    """(the chain's parameters, {value index: fixed value}, device name of each parameter)."""
    fixed, devices = {}, []
    for offset, device in chain_devices(chain):
        fixed.update({offset + i: v for i, v in device.fixed.items()})
        devices += [device.name] * len(device.params)
    return tuple(chain.params), fixed, devices


def _signature(entries: list[dict]) -> list[tuple]:
    return [(e["device"], tuple((p["name"], p["min"], p["max"], p.get("scale", "linear"))
                                for p in e["params"]), tuple(sorted(e["fixed"].items())))
            for e in entries]


def check_same_chain(trained: list[dict], chain, sample_rate: int) -> None:
    """ControlError (one line) unless ``chain`` has the devices, parameters and fixed values
    of the chain the controller was trained for (``trained``: :func:`describe`'s list);
    gradient methods may differ (they only matter for training)."""
    other = []
    for entry in parse_chain(chain):
        device = make_device(entry, sample_rate)
        names = [p.name for p in device.params]
        other.append({"device": device.name, "params": [p.to_dict() for p in device.params],
                      "fixed": {names[i]: v for i, v in sorted(device.fixed.items())}})
    if _signature(other) != _signature(trained):
        mine = ",".join(e["source"] for e in trained)
        raise ControlError(f"this controller was trained for the chain '{mine}', not "
                           f"'{','.join(e.text for e in parse_chain(chain))}'")


def render_chain(entries: list[str], sample_rate: int, n_workers: int = 2,
                 real: bool = True) -> tuple[Chain, str]:
    """The chain at ``sample_rate`` for rendering: its real devices as one black box where
    every device has one (and pedalboard is there when needed), else the twins.

    Returns:
        (a Chain: it carries state across chunks and holds per-frame settings' last frame),
        ``"real"`` or ``"twins"``.
    """
    from ..blackbox.specs import import_pedalboard, needs_pedalboard

    devices = [make_device(e, sample_rate) for e in parse_chain(entries)]
    hop = default_hop(sample_rate)
    usable = real and all(d.spec is not None for d in devices)
    if usable and any(needs_pedalboard(d.spec) for d in devices):
        try:
            import_pedalboard()
        except DeviceError:
            usable = False
    if usable:
        return Chain([real_stage(devices, hop, n_workers)], ["devices"]), "real"
    missing = [d.name for d in devices if d.twin is None]
    if missing:
        raise ControlError(f"device '{missing[0]}' has neither a real implementation here "
                           "nor a twin")
    stages = [twin_stage(d, hop) for d in devices]
    return Chain(stages, [f"d{i}" for i in range(len(stages))]), "twins"


def clip_to(declared: tuple[Param, ...], values: np.ndarray) -> np.ndarray:
    """Natural values [..., P] clipped into the declared ranges."""
    lo = np.array([p.min for p in declared for _ in range(p.size)])
    hi = np.array([p.max for p in declared for _ in range(p.size)])
    return np.clip(values, lo, hi)
