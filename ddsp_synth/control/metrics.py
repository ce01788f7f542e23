"""How close a controller's output is to its target: the figures of the experiment and of
the controllers' validation.

* ``rel_spec``: the multi-resolution log-spectral distance of the output to the target,
  divided by that of the input (0: the target exactly, 1: no better than doing nothing);
  the distance is :func:`ddsp_synth.dsp.spectral.mr_log_distance`, the one behind
  ``match``'s ``rel_spec``.
* Integrated loudness (ITU-R BS.1770-4, LUFS, from :mod:`ddsp_synth.dsp.loudness`), for
  the loudness error in LU.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..dsp.loudness import integrated_loudness as bs1770_loudness
from ..dsp.spectral import mr_log_distance

SILENT_LUFS = -70.0  # what a signal with no block above the absolute gate reads


def integrated_loudness(audio: np.ndarray, sample_rate: float) -> float:
    """BS.1770-4 integrated loudness in LUFS (:mod:`ddsp_synth.dsp.loudness`, channels
    summed as the standard does).

    Args:
        audio: [n_samples] or [channels, n_samples].

    Returns:
        LUFS; ``SILENT_LUFS`` when nothing passes the absolute gate (or the signal is
        shorter than one 400 ms block).
    """
    lufs = bs1770_loudness(np.atleast_2d(np.asarray(audio, np.float64)), sample_rate)
    return float(lufs) if math.isfinite(lufs) else SILENT_LUFS


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
