"""Declared device parameters: natural units for people, normalised [0, 1] for optimisers.

Every device declares its parameters as a tuple of :class:`Param`. Optimisers, SPSA and the
neural proxies work on normalised values ``u`` in [0, 1]; people, presets and pedalboard use
natural units. ``scale="log"`` maps ``u`` geometrically (frequencies, times, q, ratio), so a
step in ``u`` is the same musical step anywhere in the range.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass

import numpy as np

SCALES = ("linear", "log")


def _is_tensor(x) -> bool:
    # Worker processes of black-box devices never import torch (it costs seconds at start-up),
    # so this module must not either: a tensor can only exist if torch is already imported.
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


class DeviceError(Exception):
    """A problem with a device (unknown name or parameter, a failed or hung worker, a bad
    device file), with a one-line message for the user."""


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
    """

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: str = "linear"

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
        return asdict(self)

    @staticmethod
    def from_dict(d: dict, where: str = "") -> "Param":
        """A Param from a JSON object; DeviceError (one line) on missing or wrong fields."""
        prefix = f"{where}: " if where else ""
        if not isinstance(d, dict):
            raise DeviceError(f"{prefix}each parameter must be an object, got {type(d).__name__}")
        allowed = {"name", "unit", "min", "max", "default", "scale"}
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
        return Param(str(d["name"]), str(d.get("unit", "")), lo, hi, default,
                     str(d.get("scale", "linear")))


def param_names(params: tuple[Param, ...]) -> list[str]:
    return [p.name for p in params]


def normalise(params: tuple[Param, ...], values):
    """Natural units -> normalised, along the last axis.

    Args:
        params: the P declared parameters.
        values: [..., P] tensor or array in natural units.

    Returns:
        [..., P] normalised values, same type.
    """
    _check_last_dim(values, len(params))
    if _is_tensor(values):
        lo, span, is_log = _columns(params, values)
        log_u = torch_log_ratio(values, lo, span, is_log)
        return sys.modules["torch"].where(is_log, log_u, (values - lo) / span)
    cols = [p.to_normalised(values[..., i]) for i, p in enumerate(params)]
    return _stack(cols, values)


def denormalise(params: tuple[Param, ...], values):
    """Normalised -> natural units, along the last axis ([..., P] tensor or array)."""
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
    is_log = torch.tensor([p.scale == "log" for p in params], device=like.device)
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
    """[P] default values in natural units (float64)."""
    return np.array([p.default for p in params], dtype=np.float64)


def to_dict(params: tuple[Param, ...], values) -> dict[str, float]:
    """{name: value} of one parameter vector [P] (natural units)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    _check_last_dim(values, len(params))
    return {p.name: float(v) for p, v in zip(params, values)}


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
    for i, p in enumerate(params):
        if p.name not in values:
            continue
        v = values[p.name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DeviceError(f"{device_name}.{p.name} must be a finite number, got {v!r}")
        if clip:
            v = min(max(float(v), p.min), p.max)
        elif not p.min <= v <= p.max:
            raise DeviceError(f"{device_name}.{p.name} = {v} is outside [{p.min:g}, {p.max:g}] "
                              f"{p.unit}".rstrip())
        out[i] = float(v)
    return out


def _check_last_dim(values, n: int) -> None:
    if values.shape[-1] != n:
        raise DeviceError(f"expected {n} parameter values on the last axis, got shape "
                          f"{tuple(values.shape)}")


def frames_to_samples(values, n_samples: int, hop: int):
    """Per-frame controls -> per-sample controls by linear interpolation.

    Frame ``t`` sits at sample ``t * hop``; samples between two frames interpolate linearly,
    samples after the last frame hold it (the synth's frame grid: ``n_frames = ceil(n / hop)``).

    Args:
        values: [batch, n_frames, P].
        n_samples: length of the audio; needs ``n_frames >= ceil(n_samples / hop)``.
        hop: samples per frame.

    Returns:
        [batch, n_samples, P].
    """
    if values.dim() != 3:
        raise DeviceError(f"per-frame parameters must be [batch, n_frames, P], got shape "
                          f"{tuple(values.shape)}")
    if not isinstance(hop, int) or hop < 1:
        raise DeviceError(f"hop must be a positive integer, got {hop!r}")
    n_frames = values.shape[1]
    needed = -(-n_samples // hop)
    if n_frames < needed:
        raise DeviceError(f"{n_frames} frames of hop {hop} cover {n_frames * hop} samples, "
                          f"the audio has {n_samples}")
    torch = sys.modules["torch"]
    nxt = torch.cat([values[:, 1:], values[:, -1:]], 1)
    frac = (torch.arange(hop, dtype=values.dtype, device=values.device) / hop)[None, None, :, None]
    per_sample = values[:, :, None] + frac * (nxt - values)[:, :, None]
    return per_sample.reshape(values.shape[0], n_frames * hop, -1)[:, :n_samples]
