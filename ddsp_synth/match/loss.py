"""The matching loss: the one spectral distance plus a distance of long-term spectra."""

from __future__ import annotations

import numpy as np
import torch

from ..dsp.spectral import spectra, spectral_distance
from .config import MatchConfig

LTAS_FLOOR = 1e-10  # power floor of the long-term average spectra


def log_frequency_smoothers(n_bins: int, widths_octaves) -> list[torch.Tensor]:
    """[n_bins, n_bins] column-normalised Gaussian kernels in log frequency, one per width.

    Wide kernels make a spectral mismatch visible to a filter whose frequency is far off (a
    peak at the wrong frequency has no overlap with the right one at full resolution, and so
    no gradient towards it)."""
    bins = torch.arange(n_bins, dtype=torch.float64)
    octave = torch.log2(bins.clamp_min(0.5))
    out = []
    for w in widths_octaves:
        k = torch.exp(-0.5 * ((octave[:, None] - octave[None, :]) / w) ** 2)
        out.append((k / k.sum(0, keepdim=True)).float())
    return out


class WindowLoss:
    """Per-candidate matching loss against the target's analysis window.

    :func:`~ddsp_synth.dsp.spectral.spectral_distance` (log and linear magnitudes, per
    candidate, against the target's spectra computed once) plus the distance of long-term
    average spectra smoothed over several widths in log frequency (so that a filter whose
    frequency is far off still sees where the target's energy is). Candidate outputs cover
    pre-roll + window; the pre-roll is cut off before the comparison.
    """

    def __init__(self, target_window: np.ndarray, preroll: int, config: MatchConfig):
        self.preroll = preroll
        self.config = config
        # every size once: the long-term spectra's size is usually one of the distance's
        self.sizes = tuple(dict.fromkeys(tuple(config.fft_sizes) + (config.ltas_fft,)))
        t = torch.from_numpy(np.asarray(target_window, np.float32))[None]
        self.target = spectra(t, self.sizes)
        self.smoothers = log_frequency_smoothers(config.ltas_fft // 2 + 1,
                                                 config.ltas_smoothing_octaves)
        self.ltas_target = self._ltas(self.target[config.ltas_fft])

    def _ltas(self, mag: torch.Tensor) -> torch.Tensor:
        """Long-term average spectra (log amplitude) of [N, bins, frames] magnitudes,
        smoothed at each width: [n_widths, N, bins]."""
        ltas = 0.5 * torch.log(mag.square().mean(2) + LTAS_FLOOR)
        return torch.stack([ltas @ s for s in self.smoothers])

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        """[N, preroll + window] -> [N] losses (differentiable)."""
        cfg = self.config
        mags = spectra(outputs[:, self.preroll :], self.sizes)
        total = spectral_distance(mags, self.target, cfg.fft_sizes, 0.75, cfg.linear_weight,
                                  cfg.log_weight)
        if cfg.ltas_weight:
            diff = (self._ltas(mags[cfg.ltas_fft]) - self.ltas_target).abs().mean(2).sum(0)
            total = total + cfg.ltas_weight * diff
        return total
