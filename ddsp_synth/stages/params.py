"""Declared stage parameters: natural units for people, normalised [0, 1] for optimisers.

Every stage declares its parameters as a tuple of :class:`Param`. Optimisers, SPSA and the
neural proxies work on normalised values ``u`` in [0, 1]; people, presets, stages and
pedalboard use natural units. ``scale="log"`` maps ``u`` geometrically (frequencies, times,
q, ratio), so a step in ``u`` is the same musical step anywhere in the range. A parameter
may have several channels (``size``: a harmonic distribution, noise band magnitudes); the
last axis of a parameter tensor holds every channel of every parameter, in order.

This module imports neither torch nor pedalboard: black-box worker processes use it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import UserError

SCALES = ("linear", "log")


def _is_tensor(x) -> bool:
    # Worker processes of black-box devices never import torch (it costs seconds at start-up),
    # so this module must not either: a tensor can only exist if torch is already imported.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class DeviceError(UserError):
    """A problem with a device or stage (unknown name or parameter, a failed or hung worker,
    a bad device file), with a one-line message for the user."""


@dataclass(frozen=True)
class Param:
    """One declared parameter of a device.

    Attributes:
        name: pedalboard-style name with the unit in it (``cutoff_frequency_hz``, ``gain_db``).
        unit: unit for people ("Hz", "dB", "ms", "" for plain numbers).
        min: lowest value, natural units.
        max: highest value, natural units.
        default: value used when nothing else is known (a neutral setting where one exists).
        scale: ``"linear"`` or ``"log"`` (then ``min`` must be > 0).
        size: channels (values per frame) of this parameter.
    """

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: str = "linear"
    size: int = 1

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise DeviceError(f"parameter name must be a non-empty string, got {self.name!r}")
        if self.scale not in SCALES:
            raise DeviceError(f"parameter {self.name}: scale must be one of {SCALES}, got "
                              f"{self.scale!r}")
        values = (self.min, self.max, self.default)
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise DeviceError(f"parameter {self.name}: min, max and default must be finite "
                              f"numbers, got {values}")
        if not self.min < self.max:
            raise DeviceError(f"parameter {self.name}: min {self.min} must be below max {self.max}")
        if not self.min <= self.default <= self.max:
            raise DeviceError(f"parameter {self.name}: default {self.default} outside "
                              f"[{self.min}, {self.max}]")
        if self.scale == "log" and self.min <= 0:
            raise DeviceError(f"parameter {self.name}: a log scale needs min > 0, got {self.min}")
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise DeviceError(f"parameter {self.name}: size must be a positive integer, got "
                              f"{self.size!r}")

    def to_normalised(self, value):
        """Natural units -> [0, 1] (float, numpy or torch; values outside the range map
        outside [0, 1])."""
        if self.scale == "log":
            lib = sys.modules["torch"] if _is_tensor(value) else np
            return lib.log(value / self.min) / math.log(self.max / self.min)
        return (value - self.min) / (self.max - self.min)

    def from_normalised(self, u):
        """[0, 1] -> natural units (float, numpy or torch)."""
        if self.scale == "log":
            if _is_tensor(u):
                return self.min * (u * math.log(self.max / self.min)).exp()
            return self.min * np.exp(np.asarray(u) * math.log(self.max / self.min))
        return self.min + u * (self.max - self.min)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.size == 1:  # the JSON of one-channel parameters stays as it always was
            del d["size"]
        return d

    @staticmethod
    def from_dict(d: dict, where: str = "") -> "Param":
        """A Param from a JSON object; DeviceError (one line) on missing or wrong fields."""
        prefix = f"{where}: " if where else ""
        if not isinstance(d, dict):
            raise DeviceError(f"{prefix}each parameter must be an object, got {type(d).__name__}")
        allowed = {"name", "unit", "min", "max", "default", "scale", "size"}
        unknown = set(d) - allowed
        if unknown:
            raise DeviceError(f"{prefix}unknown parameter field(s) {sorted(unknown)}; allowed: "
                              f"{sorted(allowed)}")
        missing = {"name", "min", "max"} - set(d)
        if missing:
            raise DeviceError(f"{prefix}parameter {d.get('name', '?')!r} lacks {sorted(missing)}")
        for key in ("min", "max", "default"):
            if key in d and (isinstance(d[key], bool) or not isinstance(d[key], (int, float))):
                raise DeviceError(f"{prefix}parameter {d['name']!r}: {key} must be a number, got "
                                  f"{d[key]!r}")
        lo, hi = float(d["min"]), float(d["max"])
        default = float(d.get("default", (lo + hi) / 2))
        try:
            return Param(str(d["name"]), str(d.get("unit", "")), lo, hi, default,
                         str(d.get("scale", "linear")), d.get("size", 1))
        except DeviceError as err:  # the range's own checks: say where it was declared
            raise DeviceError(f"{prefix}{err}") from None


def device_params(raw, where: str) -> tuple[Param, ...]:
    """A device's declared parameters from a list of :class:`Param` or JSON objects (a
    device file's ``params``, :func:`~ddsp_synth.stages.registry.register_device`'s):
    DeviceError naming ``where`` unless a list of distinct names of one value each."""
    if not isinstance(raw, (list, tuple)):
        raise DeviceError(f"{where}: 'params' must be a list")
    params = tuple(p if isinstance(p, Param) else Param.from_dict(p, where) for p in raw)
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise DeviceError(f"{where}: duplicate parameter names in {names}")
    if any(p.size != 1 for p in params):
        raise DeviceError(f"{where}: device parameters take one value each (no 'size')")
    return params


def param_names(params: tuple[Param, ...]) -> list[str]:
    return [p.name for p in params]


def n_values(params: tuple[Param, ...]) -> int:
    """Values per frame of a parameter declaration (every channel of every parameter)."""
    return sum(p.size for p in params)


def expand(params: tuple[Param, ...]) -> tuple[Param, ...]:
    """One declaration per value: a parameter of ``size`` n repeated n times."""
    return tuple(p for p in params for _ in range(p.size))


def params_from_raw(params: tuple[Param, ...], raw):
    """The default mapping of raw network outputs onto declared ranges, the same for every
    device: ``denormalise(sigmoid(raw))`` ([..., P] tensor -> natural units)."""
    return denormalise(params, sys.modules["torch"].sigmoid(raw))


def normalise(params: tuple[Param, ...], values):
    """Natural units -> normalised, along the last axis.

    Args:
        params: the P declared parameters.
        values: [..., P] tensor or array in natural units.

    Returns:
        [..., P] normalised values, same type.
    """
    params = expand(params)
    _check_last_dim(values, len(params))
    if _is_tensor(values):
        lo, span, is_log = _columns(params, values)
        log_u = torch_log_ratio(values, lo, span, is_log)
        return sys.modules["torch"].where(is_log, log_u, (values - lo) / span)
    cols = [p.to_normalised(values[..., i]) for i, p in enumerate(params)]
    return _stack(cols, values)


def denormalise(params: tuple[Param, ...], values):
    """Normalised -> natural units, along the last axis ([..., P] tensor or array)."""
    params = expand(params)
    _check_last_dim(values, len(params))
    if _is_tensor(values):
        # One vectorised expression: slicing a [batch, n_samples, P] tensor column by column
        # would make autograd allocate the whole tensor once per column in the backward pass.
        torch = sys.modules["torch"]
        lo, span, is_log = _columns(params, values)
        # exp only of the log columns: exp(u * span) of a wide linear column overflows, and
        # where() would then pass 0 * inf = NaN back as the gradient of the kept branch
        log_v = lo * torch.exp(torch.where(is_log, values * span, torch.zeros_like(values)))
        return torch.where(is_log, log_v, lo + values * span)
    cols = [p.from_normalised(values[..., i]) for i, p in enumerate(params)]
    return _stack(cols, values)


def _columns(params, like):
    """Per-column constants as tensors: lower bound, span (linear: max - min; log:
    ln(max / min)) and the log-scale mask."""
    torch = sys.modules["torch"]
    is_log = torch.tensor([p.scale == "log" for p in params], dtype=torch.bool,
                          device=like.device)
    lo = torch.tensor([p.min for p in params], dtype=like.dtype, device=like.device)
    span = torch.tensor([math.log(p.max / p.min) if p.scale == "log" else p.max - p.min
                         for p in params], dtype=like.dtype, device=like.device)
    return lo, span, is_log


def torch_log_ratio(values, lo, span, is_log):
    """ln(values / lo) / span where the column is log-scaled (1 elsewhere, unused)."""
    torch = sys.modules["torch"]
    # divide only the log columns (a linear column may have lo = 0: values / 0 would put
    # NaN into the gradient through where()); their lo is positive by construction
    lo_safe = torch.where(is_log, lo, torch.ones_like(lo))
    safe = torch.where(is_log, values / lo_safe, torch.ones_like(values))
    return torch.log(safe.clamp_min(1e-30)) / span


def _stack(cols, like):
    return sys.modules["torch"].stack(cols, -1) if _is_tensor(like) else np.stack(cols, -1)


def defaults(params: tuple[Param, ...]) -> np.ndarray:
    """[P] default values in natural units (float64), every channel."""
    return np.array([p.default for p in expand(params)], dtype=np.float64)


def to_dict(params: tuple[Param, ...], values) -> dict:
    """{name: value} of one parameter vector [P] (natural units); a parameter of several
    channels gives a list."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    _check_last_dim(values, n_values(params))
    out, i = {}, 0
    for p in params:
        chunk = values[i : i + p.size]
        out[p.name] = float(chunk[0]) if p.size == 1 else [float(v) for v in chunk]
        i += p.size
    return out


def from_dict(params: tuple[Param, ...], values: dict, device_name: str = "device",
              clip: bool = False) -> np.ndarray:
    """[P] natural values from {name: value}; missing names take their default.

    Raises:
        DeviceError: an unknown name, a non-number, or (unless ``clip``) a value out of range.
    """
    known = {p.name: p for p in params}
    for name in values:
        if name not in known:
            raise DeviceError(f"{device_name} has no parameter '{name}'; it has: "
                              f"{', '.join(known) or 'none'}")
    out = defaults(params)
    i = 0
    for p in params:
        if p.name in values:
            given = values[p.name]
            items = given if p.size > 1 and isinstance(given, list) else [given]
            if len(items) != p.size:
                raise DeviceError(f"{device_name}.{p.name} needs {p.size} values, got "
                                  f"{len(items)}")
            out[i : i + p.size] = [_checked_value(p, v, device_name, clip) for v in items]
        i += p.size
    return out


def _checked_value(p: Param, v, device_name: str, clip: bool) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise DeviceError(f"{device_name}.{p.name} must be a finite number, got {v!r:.60}")
    if clip:
        return min(max(float(v), p.min), p.max)
    if not p.min <= v <= p.max:
        raise DeviceError(f"{device_name}.{p.name} = {v} is outside [{p.min:g}, {p.max:g}] "
                          f"{p.unit}".rstrip())
    return float(v)


def _check_last_dim(values, n: int) -> None:
    if values.shape[-1] != n:
        raise DeviceError(f"expected {n} parameter values on the last axis, got shape "
                          f"{tuple(values.shape)}")
