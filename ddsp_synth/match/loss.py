"""The matching loss: the one spectral distance plus a distance of long-term spectra."""

from __future__ import annotations

import numpy as np
import torch

from ..dsp.spectral import noise_floor_eps, spectra, spectral_distance
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
    """Per-candidate matching loss against the target's analysis windows.

    :func:`~ddsp_synth.dsp.spectral.spectral_distance` (log and linear magnitudes, per
    candidate, against the target's spectra computed once; the mean over the windows) plus
    the distance of long-term average spectra (over all windows together) smoothed over
    several widths in log frequency (so that a filter whose frequency is far off still sees
    where the target's energy is). Candidate outputs cover pre-roll + window; the pre-roll
    is cut off before the comparison.

    Args:
        target_windows: [W, n] the target's windows (or [n]: one window).
        preroll: samples before each window in the candidates' outputs.
    """

    def __init__(self, target_windows: np.ndarray, preroll: int, config: MatchConfig,
                 noise_rms: float | None = None):
        self.preroll = preroll
        self.config = config
        # the log term's floor: over the target's noise floor where it has one (MatchInputs)
        self.log_eps = noise_floor_eps(noise_rms, config.fft_sizes)
        # every size once: the long-term spectra's size is usually one of the distance's
        self.sizes = tuple(dict.fromkeys(tuple(config.fft_sizes) + (config.ltas_fft,)))
        t = torch.from_numpy(np.atleast_2d(np.asarray(target_windows, np.float32)))
        self.n_windows = t.shape[0]
        self.target = {n: self._merge(m) for n, m in spectra(t, self.sizes).items()}
        self.smoothers = log_frequency_smoothers(config.ltas_fft // 2 + 1,
                                                 config.ltas_smoothing_octaves)
        self.ltas_target = self._ltas(self.target[config.ltas_fft])

    def _merge(self, mag: torch.Tensor) -> torch.Tensor:
        """[N * W, bins, frames] -> [N, W * bins, frames]: one item per candidate (a mean
        over its items is the mean over its windows)."""
        return mag.reshape(-1, self.n_windows * mag.shape[1], mag.shape[2])

    def _ltas(self, mag: torch.Tensor) -> torch.Tensor:
        """Long-term average spectra (log amplitude) of [N, W * bins, frames] magnitudes,
        over all windows, smoothed at each width: [n_widths, N, bins]."""
        power = mag.square().mean(2).reshape(mag.shape[0], self.n_windows, -1).mean(1)
        ltas = 0.5 * torch.log(power + LTAS_FLOOR)
        return torch.stack([ltas @ s for s in self.smoothers])

    def __call__(self, outputs: torch.Tensor) -> torch.Tensor:
        """[N * W, preroll + window] (candidate-major: item ``k * W + w`` is candidate
        ``k``'s window ``w``) -> [N] losses (differentiable)."""
        cfg = self.config
        mags = {n: self._merge(m) for n, m in spectra(outputs[:, self.preroll :],
                                                      self.sizes).items()}
        total = spectral_distance(mags, self.target, cfg.fft_sizes, 0.75, cfg.linear_weight,
                                  cfg.log_weight, self.log_eps)
        if cfg.ltas_weight:
            diff = (self._ltas(mags[cfg.ltas_fft]) - self.ltas_target).abs().mean(2).sum(0)
            total = total + cfg.ltas_weight * diff
        return total
