"""The rule baseline of style transfer: match the long-term average spectrum, then the
loudness (DeepAFx-ST's baseline; Matchering's EQ and RMS stages without its limiter).

The average power spectra of the input and the reference (Hann windows, frames more than
``gate_db`` below the loudest one left out, as silence says nothing about a tone) are
smoothed over fractional octaves; the square root of their ratio, bounded to
``+-max_gain_db``, is the EQ curve, applied as a linear-phase FIR (frequency sampling, Hann
window, its delay removed). A gain then brings the integrated loudness (BS.1770) to the
reference's.
"""

from __future__ import annotations

import numpy as np

from .metrics import SILENT_LUFS, integrated_loudness


def average_spectrum(audio: np.ndarray, n_fft: int, gate_db: float = 50.0) -> np.ndarray:
    """Mean power spectrum [n_fft // 2 + 1] of the frames within ``gate_db`` of the
    loudest (mono [n_samples]; half-overlapping Hann frames)."""
    hop = n_fft // 2
    x = np.pad(np.asarray(audio, np.float64), (0, max(0, n_fft - len(audio))))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    power = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=-1)) ** 2
    energy = power.sum(-1)
    keep = energy >= energy.max() * 10.0 ** (-gate_db / 10.0)
    return power[keep].mean(0)


def smooth_octaves(power: np.ndarray, sample_rate: float, fraction: float) -> np.ndarray:
    """Power spectrum averaged over ``fraction`` of an octave around every bin (linear
    frequency bins; below 20 Hz the window is 20 Hz wide)."""
    n = len(power)
    freqs = np.linspace(0.0, sample_rate / 2, n)
    cum = np.concatenate([[0.0], np.cumsum(power)])
    half = 2.0 ** (fraction / 2)
    lo = np.searchsorted(freqs, np.maximum(freqs / half, freqs - 10.0), side="left")
    hi = np.searchsorted(freqs, np.maximum(freqs * half, freqs + 10.0), side="right")
    return (cum[hi] - cum[lo]) / np.maximum(hi - lo, 1)


def eq_fir(gain_db: np.ndarray, max_gain_db: float) -> np.ndarray:
    """[n_fft + 1] linear-phase FIR (frequency sampling, Hann window, delay n_fft / 2) of an
    EQ curve [n_fft // 2 + 1] in dB, its median removed (the level is the loudness stage's
    job) and bounded to +-max_gain_db."""
    n_fft = 2 * (len(gain_db) - 1)
    gain_db = np.clip(gain_db - np.median(gain_db), -max_gain_db, max_gain_db)
    taps = np.roll(np.fft.irfft(10.0 ** (gain_db / 20.0), n_fft), n_fft // 2)
    return np.append(taps, taps[0]) * np.hanning(n_fft + 1)


def match_eq_fir(audio: np.ndarray, reference: np.ndarray, sample_rate: float,
                 n_fft: int = 4096, fraction: float = 1 / 3, max_gain_db: float = 18.0
                 ) -> np.ndarray:
    """[n_fft + 1] linear-phase FIR taking the input's average spectrum to the reference's."""
    p_in = smooth_octaves(average_spectrum(audio, n_fft), sample_rate, fraction)
    p_ref = smooth_octaves(average_spectrum(reference, n_fft), sample_rate, fraction)
    return eq_fir(10.0 * np.log10((p_ref + 1e-20) / (p_in + 1e-20)), max_gain_db)


def apply_fir(audio: np.ndarray, fir: np.ndarray) -> np.ndarray:
    """[..., n_samples] through a linear-phase FIR of odd length, its delay removed."""
    from scipy.signal import fftconvolve

    delay = (len(fir) - 1) // 2
    x = np.atleast_2d(audio)
    y = fftconvolve(x, fir[None], axes=-1)[:, delay : delay + x.shape[-1]]
    return y if np.ndim(audio) == 2 else y[0]


def match_loudness(audio: np.ndarray, reference: np.ndarray, sample_rate: float) -> np.ndarray:
    """``audio`` scaled to the integrated loudness (BS.1770) of ``reference`` (unchanged when
    either is silent)."""
    level, target = integrated_loudness(audio, sample_rate), integrated_loudness(reference,
                                                                                 sample_rate)
    if level > SILENT_LUFS and target > SILENT_LUFS:
        return audio * 10.0 ** ((target - level) / 20.0)
    return audio


def rule_baseline(audio: np.ndarray, reference: np.ndarray, sample_rate: float,
                  reference_rate: float | None = None) -> np.ndarray:
    """The input with the reference's average spectrum and integrated loudness.

    Args:
        audio: [n_samples] or [channels, n_samples] (every channel gets the same EQ and
            gain, measured on their mix).
        reference: [n_samples] or [channels, n_samples] at ``reference_rate`` (default the
            input's; resampled for the measurements).

    Returns:
        float32, the shape of ``audio``.
    """
    from ..audio_io import resample_audio

    x = np.asarray(audio, np.float64)
    mono = x.mean(0) if x.ndim == 2 else x
    ref = np.asarray(reference, np.float32)
    ref = ref.mean(0) if ref.ndim == 2 else ref
    ref = resample_audio(ref, int(reference_rate or sample_rate), int(sample_rate))
    y = apply_fir(x, match_eq_fir(mono, ref, sample_rate))
    return match_loudness(y, ref, sample_rate).astype(np.float32)
