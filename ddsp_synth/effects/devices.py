"""Devices by name: the twin (white box) and the real device (black box) side by side.

A :class:`Device` bundles what the gradient methods need: the declared parameters, the PyTorch
twin when the algorithm is known (``autodiff``, and the backward pass of ``hybrid`` where no
proxy exists) and a picklable recipe of the real device (``spsa``, ``cma``, the forward pass of
``hybrid``, and the audio that ``match`` writes). A chain of devices is a device.

Built-in names follow pedalboard (``gain``, ``lowshelf``, ``highshelf``, ``peak``, ``lowpass``,
``highpass``, ``compressor``, ``distortion``); ``lowpass2``/``highpass2`` are second-order
filters with a q. pedalboard's ``LowpassFilter``/``HighpassFilter`` are first order and have no
q, so our ``lowpass``/``highpass`` declare none either (a q the real device ignores would only
give an optimiser a direction that does nothing); use ``lowpass2``/``highpass2`` for a resonant
12 dB/octave filter, whose real device is a float64 scipy recursion (pedalboard has none).

A chain entry may also be a JSON device file (command or plugin, see
:mod:`ddsp_synth.effects.blackbox`), a ``.vst3`` path (or ``.component``), and may fix
parameters: ``peak:q=0.7:gain_db=6`` (fixed parameters are not estimated by ``match``).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import blackbox
from .params import DeviceError, Param, from_dict

PEDALBOARD_CLASSES = {
    "gain": "Gain",
    "lowshelf": "LowShelfFilter",
    "highshelf": "HighShelfFilter",
    "peak": "PeakFilter",
    "lowpass": "LowpassFilter",
    "highpass": "HighpassFilter",
    "compressor": "Compressor",
    "distortion": "Distortion",
}
SCIPY_DEVICES = ("lowpass2", "highpass2")
BUILTIN_NAMES = tuple(PEDALBOARD_CLASSES) + SCIPY_DEVICES
PLUGIN_SUFFIXES = (".vst3", ".component")


@dataclass
class Device:
    """A device: declared parameters, an optional twin, an optional real (black-box) device.

    Attributes:
        name: ``peak``, a device file's name, ``chain``.
        sample_rate: Hz.
        params: declared parameters (a chain's are ``"{i}.{device}.{param}"``).
        twin: a :class:`~ddsp_synth.effects.twins.Twin` or None (no known algorithm).
        spec: picklable recipe of the real device (None if there is none).
        parts: the devices of a chain (empty otherwise).
        fixed: {parameter index: natural value} held fixed (set by ``name:param=value``).
        source: how it was named (``peak``, a path).
    """

    name: str
    sample_rate: int
    params: tuple[Param, ...]
    twin: object | None
    spec: object | None
    parts: tuple["Device", ...] = ()
    fixed: dict[int, float] = field(default_factory=dict)
    source: str = ""

    @property
    def is_chain(self) -> bool:
        return bool(self.parts)

    def pool(self, n_workers: int = 2, timeout_s: float = 60.0):
        """A :class:`~ddsp_synth.effects.pool.DevicePool` running the real device; a command
        that declares a longer ``timeout_s`` than ``timeout_s`` gets its own plus 10 s, so
        that the command's timeout, not the pool's, ends a slow call."""
        from .pool import DevicePool

        if self.spec is None:
            raise DeviceError(f"device '{self.name}' has no real (black-box) implementation")
        timeout_s = max(timeout_s, blackbox.call_timeout_s(self.spec) + 10.0)
        return DevicePool(self.spec, self.sample_rate, n_workers, timeout_s)


def _builtin(name: str, sample_rate: int) -> Device:
    from .twins import TWINS

    twin = TWINS[name](sample_rate)
    if name in PEDALBOARD_CLASSES:
        spec = blackbox.PedalboardSpec(name, PEDALBOARD_CLASSES[name], twin.params)
    else:
        spec = blackbox.ScipyBiquadSpec(name, twin.params)
    return Device(name, sample_rate, twin.params, twin, spec, source=name)


def _plugin_device(spec: blackbox.PluginSpec, sample_rate: int, source: str) -> Device:
    if not spec.params:
        # Ask a throw-away worker what the plugin declares: loading a plugin may crash.
        from .pool import DevicePool

        with DevicePool(spec, sample_rate, n_workers=1) as pool:
            params = tuple(pool.params)
        if not params:
            raise DeviceError(f"{spec.path}: the plugin reports no numeric parameter")
        spec = blackbox.PluginSpec(spec.name, spec.path, spec.plugin_name, params)
    return Device(spec.name, sample_rate, spec.params, None, spec, source=source)


def _split_fixed(entry: str) -> tuple[str, dict[str, float]]:
    """``"peak:q=2:gain_db=-3"`` -> ("peak", {"q": 2.0, "gain_db": -3.0})."""
    head, *assignments = entry.split(":")
    fixed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeviceError(f"'{entry}': fixed parameters are written name:param=value, got "
                              f"'{item}'")
        try:
            v = float(value)
        except ValueError:
            raise DeviceError(f"'{entry}': value of {key} must be a number, got '{value}'") \
                from None
        if not math.isfinite(v):
            raise DeviceError(f"'{entry}': value of {key} must be finite")
        fixed[key] = v
    return head, fixed


def make_device(entry: str, sample_rate: int) -> Device:
    """A device from a built-in name, a JSON device file or a VST3/AU path.

    Args:
        entry: ``peak``, ``fx.json``, ``/path/Plugin.vst3``; ``:param=value`` suffixes fix
            parameters.
        sample_rate: Hz.

    Raises:
        DeviceError: unknown name, unreadable or invalid device file, unknown parameter.
    """
    if not isinstance(entry, str) or not entry.strip():
        raise DeviceError("empty device name")
    entry = entry.strip()
    is_path = os.sep in entry or entry.lower().endswith((".json",) + PLUGIN_SUFFIXES)
    head, fixed = (entry, {}) if is_path and ":" not in Path(entry).name else _split_fixed(entry)
    lowered = head.lower()
    if head in BUILTIN_NAMES:
        device = _builtin(head, sample_rate)
    elif lowered.endswith(".json"):
        if not Path(head).is_file():
            raise DeviceError(f"{head}: no such device file")
        spec = blackbox.load_device_file(head)
        if isinstance(spec, blackbox.PluginSpec):
            device = _plugin_device(spec, sample_rate, head)
        else:
            device = Device(spec.name, sample_rate, spec.params, None, spec, source=head)
    elif lowered.endswith(PLUGIN_SUFFIXES):
        if not Path(head).exists():
            raise DeviceError(f"{head}: no such plugin")
        device = _plugin_device(blackbox.PluginSpec(Path(head).stem, head), sample_rate, head)
    else:
        raise DeviceError(f"unknown device '{head}'; built-in devices: "
                          f"{', '.join(BUILTIN_NAMES)}; or give a JSON device file or a .vst3 "
                          f"path")
    if fixed:
        values = from_dict(device.params, fixed, device.name)
        names = [p.name for p in device.params]
        device.fixed = {names.index(k): float(values[names.index(k)]) for k in fixed}
    return device


def parse_chain(chain: str | list[str]) -> list[str]:
    """``"peak,compressor"`` -> ["peak", "compressor"] (a list passes through)."""
    entries = chain.split(",") if isinstance(chain, str) else list(chain)
    entries = [e.strip() for e in entries]
    if not entries or any(not e for e in entries):
        raise DeviceError(f"--chain needs comma-separated device names, got {chain!r}")
    return entries


def make_chain(chain: str | list[str], sample_rate: int) -> Device:
    """A chain device from ``"peak,compressor,distortion"`` (or a list of entries).

    One entry gives that device itself. Parameter names of a longer chain are
    ``"{i}.{device}.{param}"``.
    """
    from .twins import Chain

    devices = [make_device(e, sample_rate) for e in parse_chain(chain)]
    if len(devices) == 1:
        return devices[0]
    params = tuple(Param(f"{i}.{d.name}.{p.name}", p.unit, p.min, p.max, p.default, p.scale)
                   for i, d in enumerate(devices) for p in d.params)
    twin = Chain([d.twin for d in devices]) if all(d.twin is not None for d in devices) else None
    spec = None
    if all(d.spec is not None for d in devices):
        spec = blackbox.ChainSpec("chain", tuple(d.spec for d in devices))
    fixed, offset = {}, 0
    for d in devices:
        fixed.update({offset + i: v for i, v in d.fixed.items()})
        offset += len(d.params)
    return Device("chain", sample_rate, params, twin, spec, tuple(devices), fixed,
                  ",".join(parse_chain(chain)))
