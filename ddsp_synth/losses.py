"""Losses: the multi-resolution spectral loss, the loudness loss, and the training loss that
combines them as a model's config says (:func:`training_loss`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import core
from .config import ConfigError, check_fields
from .features import FeatureConfig


@dataclass(frozen=True)
class SpectralLossConfig:
    """Settings of :class:`MultiResolutionSTFTLoss`.

    Attributes:
        fft_sizes: FFT sizes in samples; each uses a hop of ``fft_size * (1 - overlap)``.
        overlap: fraction of overlap between neighbouring frames (0.75 = hop of n_fft / 4).
        linear_weight: weight of the mean absolute difference of linear magnitudes.
        log_weight: weight of the mean absolute difference of ``log(mag + log_eps)``.
        log_eps: floor inside the log, in linear magnitude units.
        loudness_weight: weight of the mean absolute A-weighted loudness difference in dB
            (per frame, both sides floored at ``loudness_floor_db``) in
            :func:`training_loss`. Spectral L1 alone leaves the output about 1 dB too quiet where the
            recording's vibrato is not in the f0 curve (misaligned partials are cheaper
            quiet); this term removes that bias.
        loudness_floor_db: level below which loudness differences do not count.
    """

    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)
    overlap: float = 0.75
    linear_weight: float = 1.0
    log_weight: float = 1.0
    log_eps: float = 1e-5
    loudness_weight: float = 0.25
    loudness_floor_db: float = -80.0

    def __post_init__(self):
        check_fields(self, ranges={"fft_sizes": (8, 65536), "overlap": (0.0, 0.99),
                                   "linear_weight": (0.0, None), "log_weight": (0.0, None),
                                   "log_eps": (1e-12, 1.0), "loudness_weight": (0.0, None),
                                   "loudness_floor_db": (-200.0, 0.0)})
        if not 1 <= len(self.fft_sizes) <= 16:
            raise ConfigError(f"fft_sizes must list 1 to 16 sizes, got {len(self.fft_sizes)}")


def multi_resolution_stft_loss(
    prediction: torch.Tensor, target: torch.Tensor, config: SpectralLossConfig = SpectralLossConfig()
) -> torch.Tensor:
    """Sum over FFT sizes of L1 distances between magnitude spectrograms.

    For each size: ``linear_weight * mean|S_p - S_t| + log_weight * mean|log(S_p + eps) -
    log(S_t + eps)|`` with ``S = |STFT|`` (periodic Hann window, centred frames). Zero for
    identical inputs, symmetric, differentiable.

    Args:
        prediction: [batch, n_samples] audio.
        target: [batch, n_samples] audio.

    Returns:
        Scalar loss.
    """
    core._check_tensor(prediction, "prediction", rank=2)
    core._check_tensor(target, "target", rank=2)
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape"
        )
    total = prediction.new_zeros(())
    for n_fft in config.fft_sizes:
        hop = max(1, int(round(n_fft * (1.0 - config.overlap))))
        mag_p = core.magnitude_spectrogram(prediction, n_fft, hop)
        # The target usually needs no gradient: keeping it out of the graph halves backward.
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            mag_t = core.magnitude_spectrogram(target, n_fft, hop)
        total = total + _SpectralL1.apply(mag_p, mag_t, config.linear_weight,
                                          config.log_weight, config.log_eps)
    return total


class _SpectralL1(torch.autograd.Function):
    """``w_lin * mean|S_p - S_t| + w_log * mean|log(S_p + eps) - log(S_t + eps)|`` of two
    magnitude spectrograms, with a one-pass backward.

    The log is increasing, so both terms share ``s = sign(S_p - S_t)``: the gradient is
    ``s * (w_lin + w_log / (S_p + eps)) / N`` for ``S_p`` and ``-s * (w_lin + w_log / (S_t +
    eps)) / N`` for ``S_t`` (0 where they are equal, as ``abs``' subgradient). Autograd
    through the two terms would run about ten elementwise passes over the spectrogram in
    backward; this runs three per side that needs a gradient (the training loss keeps the
    target out of the graph).
    """

    @staticmethod
    def forward(ctx, mag_p, mag_t, w_lin: float, w_log: float, eps: float):
        diff = mag_p - mag_t
        log_p, log_t = torch.log(mag_p + eps), torch.log(mag_t + eps)
        value = mag_p.new_zeros(())
        if w_lin:
            value = value + w_lin * diff.abs().mean()
        if w_log:
            value = value + w_log * (log_p - log_t).abs().mean()
        ctx.save_for_backward(diff.sign_(), log_p, log_t if mag_t.requires_grad else None)
        ctx.weights = (w_lin, w_log)
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        sign, log_p, log_t = ctx.saved_tensors
        w_lin, w_log = ctx.weights
        scale = grad / sign.numel()

        def side(log_mag):  # w_lin + w_log / (S + eps), from the saved log
            return torch.exp(-log_mag).mul_(w_log).add_(w_lin) if w_log else w_lin

        d_p = sign * side(log_p) * scale if ctx.needs_input_grad[0] else None
        d_t = sign * side(log_t) * -scale if ctx.needs_input_grad[1] else None
        return d_p, d_t, None, None, None


class MultiResolutionSTFTLoss(nn.Module):
    """Module wrapper of :func:`multi_resolution_stft_loss`."""

    def __init__(self, config: SpectralLossConfig = SpectralLossConfig()):
        super().__init__()
        self.config = config

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return multi_resolution_stft_loss(prediction, target, self.config)


def loudness_loss(prediction: torch.Tensor, target: torch.Tensor, sample_rate: int, hop: int,
                  n_fft: int, floor_db: float = -80.0) -> torch.Tensor:
    """Mean |loudness(prediction) - loudness(target)| in dB, both floored at ``floor_db``.

    Args:
        prediction, target: [batch, n_samples] audio.

    Returns:
        Scalar loss in dB.
    """
    loud_p = core.a_weighted_loudness(prediction, sample_rate, hop, n_fft).clamp_min(floor_db)
    with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
        loud_t = core.a_weighted_loudness(target, sample_rate, hop, n_fft).clamp_min(floor_db)
    return (loud_p - loud_t).abs().mean()


def training_loss(prediction: torch.Tensor, target: torch.Tensor, config: SpectralLossConfig,
                  features: FeatureConfig) -> torch.Tensor:
    """The loss a model trains on: :func:`multi_resolution_stft_loss` plus
    ``config.loudness_weight`` times :func:`loudness_loss`, measured as the model's loudness
    feature is (``features``: sample rate, hop, window).

    Args:
        prediction, target: [batch, n_samples] audio.

    Returns:
        Scalar loss.
    """
    loss = multi_resolution_stft_loss(prediction, target, config)
    if config.loudness_weight:
        loss = loss + config.loudness_weight * loudness_loss(
            prediction, target, features.sample_rate, features.hop, features.loudness_n_fft,
            config.loudness_floor_db)
    return loss
