"""The random settings of self-supervised style examples.

Uniform over a whole declared range would mostly draw settings nobody uses (a peak of
+24 dB at q 10, a 20:1 compressor at -60 dB), so the known devices draw from the ranges of
DeepAFx-ST's style corruptions, scaled to pedalboard's devices; every other parameter (a
plugin's, a device file's) draws from its whole range. Values are uniform in each
parameter's own scale (log ranges geometrically) and stay inside the declared range.
"""

from __future__ import annotations

import numpy as np

from ..stages.params import Param, denormalise

# (device, parameter) -> (low, high) natural units
STYLE_RANGES = {
    ("lowshelf", "cutoff_frequency_hz"): (40.0, 400.0),
    ("lowshelf", "gain_db"): (-12.0, 12.0),
    ("lowshelf", "q"): (0.5, 1.0),
    ("highshelf", "cutoff_frequency_hz"): (1500.0, 7000.0),
    ("highshelf", "gain_db"): (-12.0, 12.0),
    ("highshelf", "q"): (0.5, 1.0),
    ("peak", "cutoff_frequency_hz"): (80.0, 6000.0),
    ("peak", "gain_db"): (-12.0, 12.0),
    ("peak", "q"): (0.3, 3.0),
    ("gain", "gain_db"): (-12.0, 12.0),
    ("compressor", "threshold_db"): (-40.0, 0.0),
    ("compressor", "ratio"): (1.0, 8.0),
    ("compressor", "attack_ms"): (1.0, 50.0),
    ("compressor", "release_ms"): (30.0, 500.0),
    ("distortion", "drive_db"): (0.0, 20.0),
    ("lowpass", "cutoff_frequency_hz"): (2000.0, 7200.0),
    ("highpass", "cutoff_frequency_hz"): (20.0, 500.0),
}


def style_bounds(declared: tuple[Param, ...], devices: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised (low, high) [n_values] of the random settings of every parameter value."""
    lo, hi = [], []
    for p, device in zip(declared, devices):
        a, b = STYLE_RANGES.get((device, p.name.split(".")[-1]), (p.min, p.max))
        a, b = max(a, p.min), min(b, p.max)
        if a >= b:  # the device's range lies outside the table's (a low rate): all of it
            a, b = p.min, p.max
        lo += [float(p.to_normalised(a))] * p.size
        hi += [float(p.to_normalised(b))] * p.size
    return np.array(lo), np.array(hi)


def sample_settings(declared: tuple[Param, ...], devices: list[str], n: int,
                    rng: np.random.Generator, fixed: dict[int, float] | None = None
                    ) -> np.ndarray:
    """[n, n_values] random natural settings (fixed parameters at their values)."""
    lo, hi = style_bounds(declared, devices)
    u = lo + (hi - lo) * rng.uniform(size=(n, len(lo)))
    values = denormalise(declared, u)
    for i, v in (fixed or {}).items():
        values[:, i] = v
    return values
