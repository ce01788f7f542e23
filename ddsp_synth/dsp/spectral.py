"""Spectra: |STFT| with a fast exact backward, A-weighted loudness on the frame grid.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from .checks import check_finite, check_positive_int, check_tensor
from .interpolation import n_frames_for


class _StftMagnitude(torch.autograd.Function):
    """|STFT| of zero-padded centred frames with a direct backward.

    The values are ``torch.stft(..., center=True, pad_mode="constant").abs()``. Autograd
    through ``torch.stft`` zero-fills every one-sided gradient spectrum to full length and
    runs a complex FFT over it; the adjoint of the real FFT is a real inverse FFT with the
    interior bins halved, then the window and an overlap-add (``fold``): about 2x less work
    in backward, which the training loss runs 14 times per step.
    """

    @staticmethod
    def forward(ctx, audio, n_fft, hop, window):
        frames = F.pad(audio, (n_fft // 2, n_fft // 2)).unfold(1, n_fft, hop)  # [B, T, n]
        spec = torch.fft.rfft(frames.transpose(1, 2) * window[:, None], dim=1)  # [B, F, T]
        re_im = torch.view_as_real(spec)
        mag = torch.hypot(re_im[..., 0], re_im[..., 1])  # = spec.abs(), about 2x faster
        ctx.save_for_backward(spec, mag, window)
        ctx.config = (n_fft, hop, audio.shape[1])
        return mag

    @staticmethod
    def backward(ctx, grad):
        spec, mag, window = ctx.saved_tensors
        n_fft, hop, n_samples = ctx.config
        # d|X|/dX = X / |X|, 0 where the spectrum is exactly zero (as abs' subgradient); real
        # arithmetic on (re, im) pairs, which is far faster than complex division here.
        scale = torch.where(mag > 0, grad / mag.clamp_min(1e-30), 0.0)
        scale[:, 1 : (n_fft + 1) // 2] *= 0.5  # the adjoint of rfft counts interior bins twice
        g = torch.view_as_complex(torch.view_as_real(spec) * scale[..., None])
        d_frames = torch.fft.irfft(g, n_fft, dim=1) * (n_fft * window[:, None])  # [B, n, T]
        batch, _, n_frames = d_frames.shape
        if n_fft % hop == 0:  # overlap-add as n_fft / hop shifted sums of hop-long pieces
            pieces = d_frames.view(batch, n_fft // hop, hop, n_frames)
            d_pad = d_frames.new_zeros(batch, hop, n_frames + n_fft // hop - 1)
            for j in range(n_fft // hop):
                d_pad[:, :, j : j + n_frames] += pieces[:, j]
            d_pad = d_pad.transpose(1, 2).reshape(batch, -1)
        else:
            padded = (n_frames - 1) * hop + n_fft
            d_pad = F.fold(d_frames, (1, padded), (1, n_fft), stride=(1, hop))[:, 0, 0]
        return d_pad[:, n_fft // 2 : n_fft // 2 + n_samples], None, None, None


def magnitude_spectrogram(audio: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """|STFT| with a periodic Hann window, zero-padded centred frames (as
    ``torch.stft(center=True, pad_mode="constant").abs()``, with a faster backward).

    Args:
        audio: [batch, n_samples].

    Returns:
        [batch, n_fft // 2 + 1, 1 + n_samples // hop] linear magnitudes.
    """
    check_tensor(audio, "audio", rank=2)
    window = torch.hann_window(n_fft, dtype=audio.dtype, device=audio.device)
    return _StftMagnitude.apply(audio, n_fft, hop, window)


def a_weighting_db(frequencies_hz: np.ndarray | torch.Tensor, min_db: float = -120.0):
    """IEC 61672 A-weighting in dB (0 dB at 1 kHz), clipped below at ``min_db``."""
    f = frequencies_hz
    lib = torch if isinstance(f, torch.Tensor) else np
    f2 = f * f
    c1, c2, c3, c4 = 20.598997**2, 107.65265**2, 737.86223**2, 12194.217**2
    ra = (c4 * f2 * f2) / ((f2 + c1) * lib.sqrt((f2 + c2) * (f2 + c3)) * (f2 + c4))
    db = 20.0 * lib.log10(lib.clip(ra, 1e-30, None) if lib is np else ra.clamp_min(1e-30))
    db = db + 2.0
    return lib.clip(db, min_db, None) if lib is np else db.clamp_min(min_db)


@functools.lru_cache(maxsize=16)
def _a_weights(sample_rate: float, n_fft: int) -> tuple[torch.Tensor, float]:
    """A-weighting power gains of the rfft bins [n_fft // 2 + 1] (float64), and the one-sided
    power of a full-scale sine through a Hann window of ``n_fft``: ``n_fft * sum(w^2) / 4``.
    Cached: the streaming front end asks for them every 10 ms."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    return 10.0 ** (a_weighting_db(freqs) / 10.0), float(n_fft * window.square().sum() / 4.0)


def window_loudness_db(window: np.ndarray, sample_rate: float,
                       floor_db: float = -120.0) -> float:
    """:func:`a_weighted_loudness` of one frame, in numpy: the Hann-windowed ``window``
    ([n_fft] samples, the frame's centre at ``n_fft // 2``) -> dB. The streaming front end's
    path (a few microseconds instead of a batched torch call); equal to the batched frame
    within float32 rounding."""
    weight, ref_power, hann = _a_weights_np(float(sample_rate), len(window))
    spec = np.fft.rfft(np.asarray(window, np.float64) * hann)
    power = float(np.dot(spec.real ** 2 + spec.imag ** 2, weight)) / ref_power
    return float(10.0 * np.log10(power + 10.0 ** (floor_db / 10.0)))


@functools.lru_cache(maxsize=16)
def _a_weights_np(sample_rate: float, n_fft: int) -> tuple[np.ndarray, float, np.ndarray]:
    """:func:`_a_weights` in numpy, and the periodic Hann window (as torch's)."""
    weight, ref_power = _a_weights(sample_rate, n_fft)
    return weight.numpy(), ref_power, torch.hann_window(n_fft, dtype=torch.float64).numpy()


def a_weighted_loudness(
    audio: torch.Tensor,
    sample_rate: float,
    hop: int,
    n_fft: int,
    floor_db: float = -120.0,
) -> torch.Tensor:
    """A-weighted loudness in dB per frame, on the shared frame grid.

    Frame ``t`` is a Hann-windowed FFT centred on sample ``t * hop``; its A-weighted power
    (sum over bins of ``|X|^2 * 10^(A(f)/10)``) is expressed in dB relative to a full-scale
    1 kHz sine, so a sine of amplitude ``a`` at 1 kHz reads ``20*log10(a)`` dB. The level is
    floored smoothly at ``floor_db`` (``10*log10(p + 10^(floor/10))``), which keeps it finite
    and differentiable on silence, so the same function serves as a feature and inside a loss.

    Args:
        audio: [batch, n_samples].
        sample_rate: Hz.
        hop: samples per frame.
        n_fft: window length in samples.

    Returns:
        [batch, ceil(n_samples / hop), 1] loudness in dB.
    """
    check_tensor(audio, "audio", rank=2)
    check_positive_int(hop, "hop")
    check_positive_int(n_fft, "n_fft")
    check_finite(audio, "audio")
    n_frames = n_frames_for(audio.shape[1], hop)
    mag = magnitude_spectrogram(audio, n_fft, hop)[..., :n_frames]  # [B, F, T]
    weight, ref_power = _a_weights(float(sample_rate), n_fft)
    weight = weight.to(audio.dtype).to(audio.device)
    power = (mag.square() * weight[None, :, None]).sum(dim=1) / ref_power  # [B, T]
    loudness = 10.0 * torch.log10(power + 10.0 ** (floor_db / 10.0))
    return loudness[..., None]


# --------------------------------------------------------------------------------------
# The one spectral distance: training loss, matching loss, proxy accuracy, rel_spec.
# --------------------------------------------------------------------------------------
# FFT sizes of the distance behind rel_spec and the proxies' accuracy
DISTANCE_FFT_SIZES = (2048, 1024, 512, 256, 128, 64)
DISTANCE_LOG_EPS = 1e-5


class _SpectralL1(torch.autograd.Function):
    """Per item ``w_lin * mean|S_p - S_t| + w_log * mean|log(S_p + eps) - log(S_t + eps)|``
    of two magnitude spectrograms [batch, bins, frames], with a one-pass backward.

    The log is increasing, so both terms share ``s = sign(S_p - S_t)``: the gradient is
    ``s * (w_lin + w_log / (S_p + eps)) / N`` for ``S_p`` and ``-s * (w_lin + w_log / (S_t +
    eps)) / N`` for ``S_t`` (0 where they are equal, as ``abs``' subgradient), ``N`` the
    values per item. Autograd through the two terms would run about ten elementwise passes
    over the spectrogram in backward; this runs three per side that needs a gradient (a
    loss usually keeps the target out of the graph).
    """

    @staticmethod
    def forward(ctx, mag_p, mag_t, w_lin: float, w_log: float, eps: float):
        diff = mag_p - mag_t
        log_p, log_t = torch.log(mag_p + eps), torch.log(mag_t + eps)
        value = mag_p.new_zeros(mag_p.shape[0])
        if w_lin:
            value = value + w_lin * diff.abs().mean((1, 2))
        if w_log:
            value = value + w_log * (log_p - log_t).abs().mean((1, 2))
        ctx.save_for_backward(diff.sign_(), log_p, log_t if mag_t.requires_grad else None)
        ctx.weights = (w_lin, w_log)
        return value

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        sign, log_p, log_t = ctx.saved_tensors
        w_lin, w_log = ctx.weights
        scale = (grad / sign[0].numel())[:, None, None]

        def side(log_mag):  # w_lin + w_log / (S + eps), from the saved log
            return torch.exp(-log_mag).mul_(w_log).add_(w_lin) if w_log else w_lin

        d_p = sign * side(log_p) * scale if ctx.needs_input_grad[0] else None
        d_t = sign * side(log_t) * -scale if ctx.needs_input_grad[1] else None
        return d_p, d_t, None, None, None


def spectral_hop(n_fft: int, overlap: float) -> int:
    """Hop of a spectrogram of ``n_fft`` with the given overlap (0.75: ``n_fft / 4``)."""
    return max(1, int(round(n_fft * (1.0 - overlap))))


def spectra(audio: torch.Tensor, fft_sizes, overlap: float = 0.75) -> dict:
    """{n_fft: |STFT| [batch, bins, frames]}: a target's spectrograms, computed once for
    many :func:`spectral_distance` calls."""
    return {n: magnitude_spectrogram(audio, n, spectral_hop(n, overlap)) for n in fft_sizes}


def spectral_distance(prediction, target, fft_sizes=DISTANCE_FFT_SIZES,
                      overlap: float = 0.75, linear_weight: float = 1.0,
                      log_weight: float = 1.0, log_eps: float | dict = DISTANCE_LOG_EPS
                      ) -> torch.Tensor:
    """Multi-resolution spectral distance, per batch item.

    Sum over FFT sizes of ``linear_weight * mean|S_p - S_t| + log_weight * mean|log(S_p +
    eps) - log(S_t + eps)|`` with ``S = |STFT|`` (periodic Hann window, centred frames, hop
    from ``overlap``). Zero for identical inputs, symmetric, differentiable (a target that
    needs no gradient stays out of the graph).

    Args:
        prediction: [batch, n_samples] audio, or its :func:`spectra`.
        target: [batch or 1, n_samples] audio, or its :func:`spectra`.
        log_eps: the log term's floor (magnitude), or one per FFT size
            (:func:`noise_floor_eps`).

    Returns:
        [batch] distances.
    """
    if isinstance(prediction, torch.Tensor):
        check_tensor(prediction, "prediction", rank=2)
        if isinstance(target, torch.Tensor) and (
                target.shape[1] != prediction.shape[1]
                or target.shape[0] not in (1, prediction.shape[0])):
            raise ValueError(f"prediction {tuple(prediction.shape)} and target "
                             f"{tuple(target.shape)} differ in shape")
        prediction = spectra(prediction, fft_sizes, overlap)
    if isinstance(target, torch.Tensor):
        check_tensor(target, "target", rank=2)
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            target = spectra(target, fft_sizes, overlap)
    total = 0.0
    for n_fft in fft_sizes:
        mag_p = prediction[n_fft]
        eps = log_eps[n_fft] if isinstance(log_eps, dict) else log_eps
        total = total + _SpectralL1.apply(mag_p, target[n_fft].expand_as(mag_p),
                                          linear_weight, log_weight, eps)
    return total


def noise_floor_eps(rms: float | None, fft_sizes=DISTANCE_FFT_SIZES) -> float | dict:
    """``log_eps`` for :func:`spectral_distance` over a noise floor of ``rms``: {n_fft: 10x
    the mean |STFT| of white noise of that RMS} (a periodic Hann window's sum of squares is
    ``3 n_fft / 8``), never below :data:`DISTANCE_LOG_EPS`; that default where there is no
    floor (None). Detail within 20 dB of the floor stops counting, so digital silence
    against that noise costs about log(1.1) per bin instead of log(noise / 1e-5)."""
    if rms is None:
        return DISTANCE_LOG_EPS
    return {n: max(DISTANCE_LOG_EPS, 10.0 * float(rms) * math.sqrt(3.0 * n / 8.0))
            for n in fft_sizes}


def mr_log_distance(a: torch.Tensor, b: torch.Tensor,
                    fft_sizes: tuple[int, ...] = DISTANCE_FFT_SIZES,
                    log_eps: float | dict = DISTANCE_LOG_EPS) -> torch.Tensor:
    """Multi-resolution log-magnitude L1 distance, per batch item: the measure behind
    ``rel_spec`` = distance(matched, target) / distance(dry, target) and the proxies'
    accuracy (:func:`spectral_distance` with the log term alone)."""
    return spectral_distance(a, b, fft_sizes, linear_weight=0.0, log_weight=1.0,
                             log_eps=log_eps)
