"""Black-box devices: picklable recipes (specs) of devices we can only run.

A black box is a pedalboard built-in, a VST3/AU plugin loaded by pedalboard, an external
command (a JSON device file, :mod:`.device_files`), a Python callable, or a float64 scipy
filter. A spec is a small frozen dataclass that pickles, so that each worker process of
:mod:`.pool` builds its own instance of the device (a pedalboard object does not pickle, and
a plugin that crashes must take down only its worker); :meth:`build` makes the processor
(:mod:`.processors`).

This module imports neither torch nor pedalboard: worker processes start in a fraction of a
second, and pedalboard (GPL-3.0, an optional extra) is imported only when a pedalboard
device is built.
"""

from __future__ import annotations

import pickle
import string
from dataclasses import dataclass, field
from typing import Callable

from ..stages.params import DeviceError, Param
from .optional import PEDALBOARD_HINT, import_pedalboard  # noqa: F401 (re-exported)


@dataclass(frozen=True)
class PedalboardSpec:
    """A pedalboard built-in (``PeakFilter``, ``Compressor``, ...); our parameter names are
    its attribute names."""

    name: str
    class_name: str
    params: tuple[Param, ...]

    def build(self, sample_rate: int):
        from .processors import PedalboardProcessor

        return PedalboardProcessor(self, sample_rate)


@dataclass(frozen=True)
class ScipyBiquadSpec:
    """A filter with no pedalboard counterpart (``lowpass2``/``highpass2``): JUCE's
    ``makeLowPass``/``makeHighPass`` coefficients computed in numpy (float64) and run by
    ``scipy.signal.sosfilt``, independently of the PyTorch twin."""

    name: str
    params: tuple[Param, ...]

    def build(self, sample_rate: int):
        from .processors import ScipyBiquadProcessor

        return ScipyBiquadProcessor(self, sample_rate)


@dataclass(frozen=True)
class PluginSpec:
    """A VST3/AU plugin loaded by ``pedalboard.load_plugin`` (path, or a name pedalboard's
    plugin search resolves); ``params`` empty means: every numeric parameter it reports."""

    name: str
    path: str
    plugin_name: str | None = None
    params: tuple[Param, ...] = ()

    def build(self, sample_rate: int):
        from .processors import PluginProcessor

        return PluginProcessor(self, sample_rate)


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

    def build(self, sample_rate: int):
        from .processors import CommandProcessor

        return CommandProcessor(self, sample_rate)


@dataclass(frozen=True)
class CallableSpec:
    """A Python callable ``fn(audio [n] float32, params: dict, sample_rate) -> [n]``.

    To run in worker processes it must pickle (a module-level function or object).
    """

    name: str
    fn: Callable
    params: tuple[Param, ...]

    def build(self, sample_rate: int):
        from .processors import CallableProcessor

        return CallableProcessor(self, sample_rate)


@dataclass(frozen=True)
class ChainSpec:
    """Black boxes in series; parameters concatenated in order."""

    name: str
    parts: tuple = field(default_factory=tuple)

    @property
    def params(self) -> tuple[Param, ...]:
        return tuple(p for part in self.parts for p in part.params)

    def build(self, sample_rate: int):
        from .processors import ChainProcessor

        return ChainProcessor(self, sample_rate)


def check_picklable(spec) -> None:
    """DeviceError when a spec cannot be sent to a worker process."""
    try:
        pickle.dumps(spec)
    except Exception as err:
        raise DeviceError(f"device '{spec.name}' cannot be sent to a worker process ({err}); "
                          f"use a module-level function, or n_workers=0 to run it in-process"
                          ) from None


def parts_of(spec) -> tuple:
    """The devices of a spec: its parts for a chain, else the spec itself."""
    return spec.parts if isinstance(spec, ChainSpec) else (spec,)


def needs_pedalboard(spec) -> bool:
    """Whether building ``spec`` imports pedalboard (a built-in or a plugin, in a chain too)."""
    return any(isinstance(p, (PedalboardSpec, PluginSpec)) for p in parts_of(spec))


def call_timeout_s(spec) -> float:
    """The longest one call of ``spec`` may take by its own declaration: the sum of its
    commands' ``timeout_s`` (0 when nothing declares one)."""
    return sum(float(p.timeout_s) for p in parts_of(spec) if isinstance(p, CommandSpec))


def carries_state(spec) -> bool:
    """Whether the device keeps its state from one call to the next in a stream (and so can
    take per-frame settings): commands and callables run once per call, from nothing."""
    return not any(isinstance(p, (CommandSpec, CallableSpec)) for p in parts_of(spec))
