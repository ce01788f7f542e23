"""Black-box devices: recipes (picklable specs) and the processors they build.

A black box is any device we can only run: a pedalboard built-in, a VST3/AU plugin loaded
by pedalboard, an external command (a JSON device file whose command template runs e.g.
``sox``), or a Python callable. Specs are small frozen dataclasses that pickle, so that each
worker process of :mod:`ddsp_synth.effects.pool` builds its own instance of the device (a
pedalboard object does not pickle, and a plugin that crashes must take down only its worker).

A processor has ``process(audio [n_samples] float32, params [P] natural units) -> [n_samples]``
and ``reset()``; the pool resets it before every call, so tails and envelopes never leak from
one call into the next.

This module imports neither torch nor pedalboard at import time: worker processes start in a
fraction of a second, and pedalboard (GPL-3.0, an optional extra) is imported only when a
pedalboard device is used.

JSON device file (``--chain my_fx.json``)::

    {"name": "sox_overdrive",
     "command": ["sox", "{input}", "{output}", "overdrive", "{gain_db:.2f}", "20"],
     "params": [{"name": "gain_db", "unit": "dB", "min": 0, "max": 40, "default": 10}],
     "timeout_s": 30}

``{input}`` / ``{output}`` are WAV paths (float32, mono), ``{sample_rate}`` the rate in Hz,
``{NAME}`` (with an optional format spec) each declared parameter. The command runs without a
shell. Its output is read back as mono, cut or zero-padded to the input's length. A plugin
file is ``{"type": "plugin", "path": "x.vst3", "plugin_name": null, "params": [...]}`` (params
optional: then every numeric parameter the plugin reports is used).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import string
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .params import DeviceError, Param

PEDALBOARD_HINT = ("pedalboard is not installed; it is the optional 'effects' extra (GPL-3.0): "
                   "pip install -e '.[effects]'")
MAX_DEVICE_FILE_BYTES = 1 << 20


def import_pedalboard():
    """pedalboard, imported on first use; DeviceError naming the extra when missing."""
    try:
        import pedalboard
    except ImportError:
        raise DeviceError(PEDALBOARD_HINT) from None
    return pedalboard


# --------------------------------------------------------------------------------------
# Specs
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PedalboardSpec:
    """A pedalboard built-in (``PeakFilter``, ``Compressor``, ...); our parameter names are
    its attribute names."""

    name: str
    class_name: str
    params: tuple[Param, ...]

    def build(self, sample_rate: int) -> "Processor":
        return _PedalboardProcessor(self, sample_rate)


@dataclass(frozen=True)
class ScipyBiquadSpec:
    """A filter with no pedalboard counterpart (``lowpass2``/``highpass2``): JUCE's
    ``makeLowPass``/``makeHighPass`` coefficients computed in numpy (float64) and run by
    ``scipy.signal.sosfilt``, independently of the PyTorch twin."""

    name: str
    params: tuple[Param, ...]

    def build(self, sample_rate: int) -> "Processor":
        return _ScipyBiquadProcessor(self, sample_rate)


@dataclass(frozen=True)
class PluginSpec:
    """A VST3/AU plugin loaded by ``pedalboard.load_plugin`` (path, or a name pedalboard's
    plugin search resolves); ``params`` empty means: every numeric parameter it reports."""

    name: str
    path: str
    plugin_name: str | None = None
    params: tuple[Param, ...] = ()

    def build(self, sample_rate: int) -> "Processor":
        return _PluginProcessor(self, sample_rate)


@dataclass(frozen=True)
class CommandSpec:
    """An external command run once per call on temporary WAV files."""

    name: str
    command: tuple[str, ...]
    params: tuple[Param, ...]
    timeout_s: float = 30.0
    source: str = ""

    def __post_init__(self):
        validate_command(self.command, self.params, self.source or self.name)

    def build(self, sample_rate: int) -> "Processor":
        return _CommandProcessor(self, sample_rate)


@dataclass(frozen=True)
class CallableSpec:
    """A Python callable ``fn(audio [n] float32, params: dict, sample_rate) -> [n]``.

    To run in worker processes it must pickle (a module-level function or object).
    """

    name: str
    fn: Callable
    params: tuple[Param, ...]

    def build(self, sample_rate: int) -> "Processor":
        return _CallableProcessor(self, sample_rate)


@dataclass(frozen=True)
class ChainSpec:
    """Black boxes in series; parameters concatenated in order."""

    name: str
    parts: tuple = field(default_factory=tuple)

    @property
    def params(self) -> tuple[Param, ...]:
        return tuple(p for part in self.parts for p in part.params)

    def build(self, sample_rate: int) -> "Processor":
        return _ChainProcessor(self, sample_rate)


def check_picklable(spec) -> None:
    """DeviceError when a spec cannot be sent to a worker process."""
    try:
        pickle.dumps(spec)
    except Exception as err:
        raise DeviceError(f"device '{spec.name}' cannot be sent to a worker process ({err}); "
                          f"use a module-level function, or n_workers=0 to run it in-process"
                          ) from None


# --------------------------------------------------------------------------------------
# Processors (built inside the worker)
# --------------------------------------------------------------------------------------
def needs_pedalboard(spec) -> bool:
    """Whether building ``spec`` imports pedalboard (a built-in or a plugin, in a chain too)."""
    if isinstance(spec, ChainSpec):
        return any(needs_pedalboard(part) for part in spec.parts)
    return isinstance(spec, (PedalboardSpec, PluginSpec))


def call_timeout_s(spec) -> float:
    """The longest one call of ``spec`` may take by its own declaration: the sum of its
    commands' ``timeout_s`` (0 when nothing declares one)."""
    if isinstance(spec, ChainSpec):
        return sum(call_timeout_s(part) for part in spec.parts)
    return float(spec.timeout_s) if isinstance(spec, CommandSpec) else 0.0


class Processor:
    def __init__(self, spec, sample_rate: int):
        self.spec = spec
        self.sample_rate = sample_rate

    def reset(self) -> None:
        pass

    def process(self, audio: np.ndarray, params: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def process_all(self, audio: np.ndarray, params: np.ndarray) -> list[np.ndarray]:
        """Outputs after each stage (one stage unless a chain)."""
        return [self.process(audio, params)]


class _PedalboardProcessor(Processor):
    def __init__(self, spec: PedalboardSpec, sample_rate: int):
        super().__init__(spec, sample_rate)
        pb = import_pedalboard()
        self.plugin = getattr(pb, spec.class_name)()

    def reset(self):
        self.plugin.reset()

    def process(self, audio, params):
        for p, v in zip(self.spec.params, params):
            setattr(self.plugin, p.name, float(v))
        out = self.plugin.process(audio[None].astype(np.float32), self.sample_rate, reset=True)
        return np.asarray(out[0], np.float32)


def second_order_sos(kind: str, cutoff_hz: float, q: float, sample_rate: int) -> np.ndarray:
    """[1, 6] JUCE ``makeLowPass`` (kind "lowpass2") / ``makeHighPass`` ("highpass2")."""
    t = math.tan(math.pi * cutoff_hz / sample_rate)
    high = kind == "highpass2"
    n = t if high else 1.0 / t
    c1 = 1.0 / (1.0 + n / q + n * n)
    a1 = c1 * 2.0 * ((n * n - 1.0) if high else (1.0 - n * n))
    a2 = c1 * (1.0 - n / q + n * n)
    b1 = -2.0 * c1 if high else 2.0 * c1
    return np.array([[c1, b1, c1, 1.0, a1, a2]])


class _ScipyBiquadProcessor(Processor):
    def process(self, audio, params):
        import scipy.signal

        sos = second_order_sos(self.spec.name, float(params[0]), float(params[1]),
                               self.sample_rate)
        return scipy.signal.sosfilt(sos, audio.astype(np.float64)).astype(np.float32)


def _plugin_params(plugin) -> tuple[Param, ...]:
    """Every numeric parameter a loaded plugin reports, as declared Params."""
    out = []
    for name, prm in plugin.parameters.items():
        lo, hi = getattr(prm, "min_value", None), getattr(prm, "max_value", None)
        if isinstance(lo, bool) or not isinstance(lo, (int, float)) \
                or not isinstance(hi, (int, float)) or not lo < hi:
            continue
        value = getattr(plugin, name)
        default = float(value) if isinstance(value, (int, float)) else (lo + hi) / 2
        out.append(Param(name, str(getattr(prm, "units", "") or ""), float(lo), float(hi),
                         min(max(default, lo), hi)))
    return tuple(out)


class _PluginProcessor(Processor):
    def __init__(self, spec: PluginSpec, sample_rate: int):
        super().__init__(spec, sample_rate)
        pb = import_pedalboard()
        try:
            self.plugin = pb.load_plugin(spec.path, plugin_name=spec.plugin_name)
        except Exception as err:
            raise DeviceError(f"{spec.path}: cannot load plugin ({_one_line(err)})") from None
        known = set(self.plugin.parameters)
        for p in spec.params:
            if p.name not in known:
                raise DeviceError(f"{spec.path}: plugin has no parameter '{p.name}'; it has: "
                                  f"{', '.join(sorted(known))}")
        self.params = spec.params or _plugin_params(self.plugin)

    def reset(self):
        self.plugin.reset()

    def process(self, audio, params):
        for p, v in zip(self.params, params):
            setattr(self.plugin, p.name, float(v))
        out = self.plugin.process(audio[None].astype(np.float32), self.sample_rate, reset=True)
        return np.asarray(out, np.float32).mean(0)


class _CommandProcessor(Processor):
    def __init__(self, spec: CommandSpec, sample_rate: int):
        super().__init__(spec, sample_rate)
        self.tmp = tempfile.TemporaryDirectory(prefix="ddsp_synth_cmd_")

    def process(self, audio, params):
        import soundfile as sf

        src = os.path.join(self.tmp.name, "in.wav")
        dst = os.path.join(self.tmp.name, "out.wav")
        if os.path.exists(dst):
            os.unlink(dst)
        sf.write(src, audio.astype(np.float32), self.sample_rate, subtype="FLOAT")
        values = {p.name: float(v) for p, v in zip(self.spec.params, params)}
        argv = [part.format(input=src, output=dst, sample_rate=self.sample_rate, **values)
                for part in self.spec.command]
        try:
            done = subprocess.run(argv, capture_output=True, timeout=self.spec.timeout_s)
        except FileNotFoundError:
            raise DeviceError(f"device '{self.spec.name}': command not found: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"device '{self.spec.name}': command took longer than "
                              f"{self.spec.timeout_s:g} s") from None
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            raise DeviceError(f"device '{self.spec.name}': command exited with "
                              f"{done.returncode}: {err[-1] if err else '(no message)'}")
        try:
            out, sr = sf.read(dst, dtype="float32", always_2d=True)
        except Exception as err:
            raise DeviceError(f"device '{self.spec.name}': command wrote no readable "
                              f"{{output}} ({_one_line(err)})") from None
        if sr != self.sample_rate:
            raise DeviceError(f"device '{self.spec.name}': command wrote {sr} Hz, expected "
                              f"{self.sample_rate} Hz")
        out = out.mean(1)
        n = len(audio)
        return np.pad(out[:n], (0, max(0, n - len(out)))).astype(np.float32)


class _CallableProcessor(Processor):
    def process(self, audio, params):
        values = {p.name: float(v) for p, v in zip(self.spec.params, params)}
        out = np.asarray(self.spec.fn(audio, values, self.sample_rate), np.float32)
        if out.shape != audio.shape:
            raise DeviceError(f"device '{self.spec.name}': callable returned shape {out.shape}, "
                              f"expected {audio.shape}")
        return out


class _ChainProcessor(Processor):
    def __init__(self, spec: ChainSpec, sample_rate: int):
        super().__init__(spec, sample_rate)
        self.parts = [part.build(sample_rate) for part in spec.parts]
        self.sizes = [len(part.params) for part in spec.parts]

    def reset(self):
        for part in self.parts:
            part.reset()

    def process(self, audio, params):
        return self.process_all(audio, params)[-1]

    def process_all(self, audio, params):
        outs, start, y = [], 0, audio
        for part, size in zip(self.parts, self.sizes):
            part.reset()
            y = part.process(y, params[start : start + size])
            start += size
            outs.append(y)
        return outs


# --------------------------------------------------------------------------------------
# Device files
# --------------------------------------------------------------------------------------
def _one_line(err) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def validate_command(command, params: tuple[Param, ...], where: str) -> None:
    """DeviceError unless ``command`` is a list of strings whose placeholders are known."""
    if not isinstance(command, (list, tuple)) or not command \
            or not all(isinstance(c, str) for c in command):
        raise DeviceError(f"{where}: 'command' must be a non-empty list of strings")
    known = {"input", "output", "sample_rate"} | {p.name for p in params}
    used = set()
    for part in command:
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        except ValueError as err:
            raise DeviceError(f"{where}: bad placeholder in {part!r} ({err})") from None
        for name in fields:
            if name not in known:
                raise DeviceError(f"{where}: command uses unknown parameter '{{{name}}}'; "
                                  f"declared: {', '.join(p.name for p in params) or 'none'}")
            used.add(name)
    for need in ("input", "output"):
        if need not in used:
            raise DeviceError(f"{where}: command must contain '{{{need}}}'")


def load_device_file(path: str | os.PathLike):
    """A CommandSpec or PluginSpec from a JSON device file; DeviceError on any problem."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_DEVICE_FILE_BYTES:
            raise DeviceError(f"{path}: device file larger than 1 MiB")
        data = json.loads(path.read_text())
    except DeviceError:
        raise
    except (OSError, UnicodeDecodeError) as err:
        raise DeviceError(f"{path}: cannot read device file ({_one_line(err)})") from None
    except json.JSONDecodeError as err:
        raise DeviceError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(data, dict):
        raise DeviceError(f"{path}: a device file must hold a JSON object")
    kind = data.get("type", "plugin" if "path" in data else "command")
    allowed = {"command": {"type", "name", "command", "params", "timeout_s"},
               "plugin": {"type", "name", "path", "plugin_name", "params"}}
    if kind not in allowed:
        raise DeviceError(f"{path}: 'type' must be 'command' or 'plugin', got {kind!r}")
    unknown = set(data) - allowed[kind]
    if unknown:
        raise DeviceError(f"{path}: unknown field(s) {sorted(unknown)}; allowed: "
                          f"{sorted(allowed[kind])}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise DeviceError(f"{path}: 'name' must be a non-empty string")
    raw = data.get("params", [])
    if not isinstance(raw, list):
        raise DeviceError(f"{path}: 'params' must be a list")
    params = tuple(Param.from_dict(p, str(path)) for p in raw)
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise DeviceError(f"{path}: duplicate parameter names in {names}")
    if kind == "plugin":
        plugin_path = data.get("path")
        if not isinstance(plugin_path, str):
            raise DeviceError(f"{path}: 'path' must be a string")
        if not os.path.isabs(plugin_path):
            plugin_path = str(path.parent / plugin_path)
        return PluginSpec(name, plugin_path, data.get("plugin_name"), params)
    if "command" not in data:
        raise DeviceError(f"{path}: a command device needs 'command'")
    if not params:
        raise DeviceError(f"{path}: a command device needs at least one parameter in 'params'")
    timeout = data.get("timeout_s", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not math.isfinite(timeout) or timeout <= 0:
        raise DeviceError(f"{path}: 'timeout_s' must be a positive number, got {timeout!r}")
    return CommandSpec(name, tuple(data["command"]) if isinstance(data["command"], list)
                       else data["command"], params, float(timeout), str(path))
