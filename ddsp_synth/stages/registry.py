"""Every stage by name, and the one chain syntax.

A chain is written ``harmonic,noise,peak:q=0.7,compressor@spsa,reverb``: entries separated
by commas, each a registry name, a JSON device file or a ``.vst3``/``.component`` path;
``:param=value`` fixes a parameter (it is not estimated or predicted), ``@method`` chooses
how the gradient crosses that device (``autodiff``, ``spsa``, ``proxy``, ``hybrid``; default
``autodiff`` where the device has a PyTorch twin). A list of entries works as well as a
string.

Names:

* the synthesizer's stages, which need the synthesizer's settings (``harmonic``, ``noise``,
  ``reverb``);
* effect devices with a twin and a real counterpart, named as in pedalboard (``gain``,
  ``lowshelf``, ``highshelf``, ``peak``, ``lowpass``, ``highpass``, ``compressor``,
  ``distortion``) or with a float64 scipy reference (``lowpass2``, ``highpass2``: second
  order, with a q). pedalboard's ``LowpassFilter``/``HighpassFilter`` are first order and
  have no q, so ``lowpass``/``highpass`` declare none either.

* Python functions registered in this process with :func:`register_device` (black boxes,
  run in worker processes like a command).

A :class:`Device` is what an effect entry names: its declared parameters, its twin (white
box) and its real device (black box); :func:`ddsp_synth.gradients.device_stage` turns it
into a stage for a gradient method.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .params import DeviceError, Param, device_params, from_dict

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
EFFECT_NAMES = tuple(PEDALBOARD_CLASSES) + SCIPY_DEVICES
SYNTH_NAMES = ("harmonic", "noise", "reverb")
BUILTIN_NAMES = EFFECT_NAMES  # the devices (synth stages are not devices)
STAGE_NAMES = SYNTH_NAMES + EFFECT_NAMES
PLUGIN_SUFFIXES = (".vst3", ".component")
METHODS = ("autodiff", "spsa", "proxy", "hybrid")


@dataclass(frozen=True)
class ChainEntry:
    """One entry of a chain.

    Attributes:
        name: a registry name or a path.
        fixed: {parameter: natural value} held fixed.
        method: the gradient method asked for with ``@method`` (None: the chain's default).
        text: the entry as written.
    """

    name: str
    fixed: dict = field(default_factory=dict)
    method: str | None = None
    text: str = ""


@dataclass
class Device:
    """An effect device: declared parameters, a PyTorch twin and/or a real device.

    Attributes:
        name: ``peak``, a device file's name.
        sample_rate: Hz.
        params: declared parameters, natural units.
        twin: the twin's class (``twin(sample_rate, hop)``), or None (no known algorithm).
        spec: picklable recipe of the real device (:mod:`ddsp_synth.blackbox.specs`), or None.
        fixed: {parameter index: natural value} held fixed.
        source: how it was named (``peak``, a path).
    """

    name: str
    sample_rate: int
    params: tuple[Param, ...]
    twin: type | None
    spec: object | None
    fixed: dict[int, float] = field(default_factory=dict)
    source: str = ""


def _is_path(text: str) -> bool:
    return os.sep in text or "/" in text or Path(text.split(":")[0].split("@")[0]).suffix.lower() \
        in (".json",) + PLUGIN_SUFFIXES


def _split_method(text: str) -> tuple[str, str | None]:
    head, sep, tail = text.rpartition("@")
    if sep and tail in METHODS:
        return head, tail
    if sep and not _is_path(text):
        raise DeviceError(f"'{text}': unknown method '{tail}' after '@'; choose one of "
                          f"{', '.join(METHODS)}")
    return text, None


def _split_fixed(text: str) -> tuple[str, dict[str, float]]:
    """``"peak:q=2:gain_db=-3"`` -> ("peak", {"q": 2.0, "gain_db": -3.0}); a path keeps the
    colons of its folders (only those after the file name fix parameters)."""
    if _is_path(text):
        suffix_at = max(text.lower().rfind(s) for s in (".json",) + PLUGIN_SUFFIXES)
        end = text.find(":", suffix_at) if suffix_at >= 0 else -1
        head, rest = (text, "") if end < 0 else (text[:end], text[end + 1 :])
        assignments = rest.split(":") if rest else []
    else:
        head, *assignments = text.split(":")
    fixed = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise DeviceError(f"'{text}': fixed parameters are written name:param=value, got "
                              f"'{item}'")
        try:
            v = float(value)
        except ValueError:
            raise DeviceError(f"'{text}': value of {key} must be a number, got '{value}'") \
                from None
        if not math.isfinite(v):
            raise DeviceError(f"'{text}': value of {key} must be finite")
        fixed[key] = v
    return head, fixed


def parse_entry(text: str) -> ChainEntry:
    """One chain entry: ``name[:param=value...][@method]``."""
    if not isinstance(text, str) or not text.strip():
        raise DeviceError("empty device name")
    text = text.strip()
    rest, method = _split_method(text)
    name, fixed = _split_fixed(rest)
    return ChainEntry(name, fixed, method, text)


def entry_file(text: str) -> str | None:
    """The device file or plugin path a chain entry names (None for a built-in device)."""
    name = parse_entry(text).name
    return name if _is_path(name) else None


def with_file(text: str, path: str) -> str:
    """Chain entry ``text`` naming the file ``path`` instead of its own, its fixed values and
    method kept (``dev/x.json:gain=2@spsa`` -> ``PATH:gain=2@spsa``)."""
    entry = parse_entry(text)
    return path + entry.text[len(entry.name):]


def parse_chain(chain) -> list[ChainEntry]:
    """``"peak,compressor@spsa"`` (or a list of entries) -> entries."""
    if isinstance(chain, str):
        items = chain.split(",")
    elif isinstance(chain, (list, tuple)) and all(isinstance(e, str) for e in chain):
        items = list(chain)
    else:
        raise DeviceError(f"a chain is a comma-separated string or a list of names, got "
                          f"{chain!r:.60}")
    if not items or any(not e.strip() for e in items):
        raise DeviceError(f"--chain needs comma-separated device names, got {chain!r:.80}")
    return [parse_entry(e) for e in items]


def _builtin(name: str, sample_rate: int) -> Device:
    from ..blackbox.specs import PedalboardSpec, ScipyBiquadSpec
    from .twins import TWINS

    twin = TWINS[name]
    params = twin(sample_rate).params
    if name in PEDALBOARD_CLASSES:
        spec = PedalboardSpec(name, PEDALBOARD_CLASSES[name], params)
    else:
        spec = ScipyBiquadSpec(name, params)
    return Device(name, sample_rate, params, twin, spec, source=name)


# name -> CallableSpec: Python functions as devices, for this process (register_device)
_REGISTERED: dict = {}


def register_device(name: str, fn, params) -> None:
    """Make the Python function ``fn`` a black-box device named ``name`` in chains of this
    process (``make_chain``, ``match``, ``train_controller``, presets): ``fn(audio [n]
    float32, params: {name: value}, sample_rate) -> [n]``, run in worker processes (a
    module-level function, which pickles; anything with ``n_workers=0``) with SPSA,
    ``cma`` or a proxy.

    Args:
        params: its parameters, :class:`~ddsp_synth.stages.params.Param` or objects as in
            a JSON device file (``{"name": "drive_db", "unit": "dB", "min": 0, "max": 30,
            "default": 0}``).

    Raises:
        DeviceError: a built-in name or not a plain name, bad parameters, ``fn`` not
            callable.
    """
    from ..blackbox.specs import CallableSpec

    if not isinstance(name, str) or not name.isidentifier():
        raise DeviceError(f"a device name is a plain name (letters, digits, _), got {name!r}")
    if name in STAGE_NAMES:
        raise DeviceError(f"'{name}' is a built-in stage: choose another name")
    if not callable(fn):
        raise DeviceError(f"device '{name}': {fn!r:.60} is not callable")
    declared = device_params(params, f"device '{name}'")
    if not declared:
        raise DeviceError(f"device '{name}': give it one or more parameters")
    _REGISTERED[name] = CallableSpec(name, fn, declared)


def _plugin_device(spec, sample_rate: int, source: str) -> Device:
    from ..blackbox.specs import PluginSpec

    if not spec.params:
        # Ask a throw-away worker what the plugin declares: loading a plugin may crash.
        from ..blackbox.pool import DevicePool

        with DevicePool(spec, sample_rate, n_workers=1) as pool:
            params = tuple(pool.params)
        if not params:
            raise DeviceError(f"{spec.path}: the plugin reports no numeric parameter")
        spec = PluginSpec(spec.name, spec.path, spec.plugin_name, params)
    return Device(spec.name, sample_rate, spec.params, None, spec, source=source)


def _device_from_path(name: str, sample_rate: int) -> Device:
    from ..blackbox.device_files import load_device_file
    from ..blackbox.specs import PluginSpec

    if name.lower().endswith(".json"):
        if not Path(name).is_file():
            raise DeviceError(f"{name}: no such device file")
        spec = load_device_file(name)
        if isinstance(spec, PluginSpec):
            return _plugin_device(spec, sample_rate, name)
        return Device(spec.name, sample_rate, spec.params, None, spec, source=name)
    if not Path(name).exists():
        raise DeviceError(f"{name}: no such plugin")
    return _plugin_device(PluginSpec(Path(name).stem, name), sample_rate, name)


def make_device(entry: str | ChainEntry, sample_rate: int) -> Device:
    """The device an entry names: a built-in name, a JSON device file or a VST3/AU path,
    with its fixed parameters.

    Raises:
        DeviceError: unknown name, unreadable or invalid device file, unknown parameter.
    """
    entry = parse_entry(entry) if isinstance(entry, str) else entry
    name = entry.name
    if name in EFFECT_NAMES:
        device = _builtin(name, sample_rate)
    elif name in _REGISTERED:
        spec = _REGISTERED[name]
        device = Device(name, sample_rate, spec.params, None, spec, source=name)
    elif name.lower().endswith((".json",) + PLUGIN_SUFFIXES):
        device = _device_from_path(name, sample_rate)
    elif name in SYNTH_NAMES:
        raise DeviceError(f"'{name}' is a stage of the synthesizer, not an effect device")
    else:
        raise DeviceError(f"unknown device '{name}'; built-in devices: "
                          f"{', '.join(EFFECT_NAMES)}; or give a JSON device file or a .vst3 "
                          f"path" + (f"; registered here: {', '.join(_REGISTERED)}"
                                     if _REGISTERED else ""))
    if entry.fixed:
        values = from_dict(device.params, entry.fixed, device.name)
        names = [p.name for p in device.params]
        device.fixed = {names.index(k): float(values[names.index(k)]) for k in entry.fixed}
    device.source = entry.text or name
    return device
