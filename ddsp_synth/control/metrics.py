"""How close a controller's output is to its target: the figures of the experiment and of
the controllers' validation.

* ``rel_spec``: the multi-resolution log-spectral distance of the output to the target,
  divided by that of the input (0: the target exactly, 1: no better than doing nothing);
  the distance is :func:`ddsp_synth.dsp.spectral.mr_log_distance`, the one behind
  ``match``'s ``rel_spec``.
* Integrated loudness (ITU-R BS.1770-4, LUFS), for the loudness error in LU: K-weighting
  (the standard's high shelf and high-pass, designed at any rate as libebur128 does),
  400 ms blocks every 100 ms, the absolute gate at -70 LUFS
  and the relative gate 10 LU below the absolutely gated level.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..dsp.spectral import mr_log_distance

# K-weighting as libebur128 designs it at any rate (reproduces BS.1770-4's 48 kHz table):
# the shelf's (centre Hz, gain dB, q, shelf exponent) and the high-pass's (centre Hz, q)
SHELF = (1681.974450955533, 3.999843853973347, 0.7071752369554196, 0.4996667741545416)
HIGHPASS = (38.13547087602444, 0.5003270373238773)
BLOCK_S, STEP_S = 0.4, 0.1
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
SILENT_LUFS = -70.0  # what a signal with no block above the absolute gate reads


def _k_weighting(sample_rate: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(b, a)] of the two K-weighting biquads at ``sample_rate``."""
    f0, gain_db, q, exponent = SHELF
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10.0 ** (gain_db / 20.0)
    vb = vh ** exponent
    a0 = 1.0 + k / q + k * k
    shelf = (np.array([vh + vb * k / q + k * k, 2.0 * (k * k - vh), vh - vb * k / q + k * k]) / a0,
             np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]))
    f0, q = HIGHPASS
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1.0 + k / q + k * k
    highpass = (np.array([1.0, -2.0, 1.0]),
                np.array([1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / q + k * k) / a0]))
    return [shelf, highpass]


def integrated_loudness(audio: np.ndarray, sample_rate: float) -> float:
    """BS.1770-4 integrated loudness in LUFS.

    Args:
        audio: [n_samples] or [channels, n_samples] (channels summed with weight 1, as left
            and right are).

    Returns:
        LUFS; ``SILENT_LUFS`` when nothing passes the absolute gate.
    """
    from scipy.signal import lfilter

    x = np.atleast_2d(np.asarray(audio, np.float64))
    for b, a in _k_weighting(sample_rate):
        x = lfilter(b, a, x, axis=-1)
    block, step = int(round(BLOCK_S * sample_rate)), int(round(STEP_S * sample_rate))
    n = x.shape[-1]
    if n < block:  # shorter than one block: the whole signal is the block
        starts, block = np.array([0]), n
    else:
        starts = np.arange(0, n - block + 1, step)
    power = np.square(x).cumsum(-1)
    power = np.concatenate([np.zeros((x.shape[0], 1)), power], -1)
    z = ((power[:, starts + block] - power[:, starts]) / max(block, 1)).sum(0)  # [blocks]
    level = -0.691 + 10.0 * np.log10(np.maximum(z, 1e-30))
    gated = z[level > ABSOLUTE_GATE_LUFS]
    if not len(gated):
        return SILENT_LUFS
    relative = -0.691 + 10.0 * np.log10(gated.mean()) + RELATIVE_GATE_LU
    kept = z[(level > ABSOLUTE_GATE_LUFS) & (level > relative)]
    return float(-0.691 + 10.0 * np.log10(kept.mean()))


def spectral_errors(output: torch.Tensor, target: torch.Tensor, dry: torch.Tensor
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per item (distance(output, target), distance(input, target)): the MR log-spectral
    distances of the output and of doing nothing. Tensors [batch, n_samples]."""
    with torch.no_grad():
        return (mr_log_distance(output.float(), target.float()).numpy(),
                mr_log_distance(dry.float(), target.float()).numpy())


def loudness_errors(output: np.ndarray, target: np.ndarray, sample_rate: float) -> np.ndarray:
    """Per item |L(output) - L(target)| in LU. Arrays [batch, n_samples]."""
    return np.array([abs(integrated_loudness(o, sample_rate) - integrated_loudness(t, sample_rate))
                     for o, t in zip(output, target)])
