"""Distances used to judge matches and proxies."""

from __future__ import annotations

import torch

from ..core import magnitude_spectrogram

DISTANCE_FFT_SIZES = (2048, 1024, 512, 256, 128, 64)
DISTANCE_LOG_EPS = 1e-5


def mr_log_distance(a: torch.Tensor, b: torch.Tensor,
                    fft_sizes: tuple[int, ...] = DISTANCE_FFT_SIZES) -> torch.Tensor:
    """Multi-resolution log-magnitude L1 distance, per batch item.

    ``sum over n_fft of mean |log(|A| + eps) - log(|B| + eps)|`` (Hann window, hop n_fft / 4),
    the measure behind ``rel_spec`` = distance(matched, target) / distance(dry, target).

    Args:
        a, b: [batch, n_samples] (``b`` may have batch 1).

    Returns:
        [batch] distances.
    """
    total = a.new_zeros(a.shape[0])
    for n_fft in fft_sizes:
        hop = n_fft // 4
        la = torch.log(magnitude_spectrogram(a, n_fft, hop) + DISTANCE_LOG_EPS)
        lb = torch.log(magnitude_spectrogram(b, n_fft, hop) + DISTANCE_LOG_EPS)
        total = total + (la - lb).abs().mean((1, 2))
    return total
