"""Measuring a live performance from its recording: latency and pitch (tests and bench).

* :func:`lag_by_reference`: the delay at which the recording matches the same input rendered
  offline by the same path (sample-exact; it sees every sample the real-time plumbing
  dropped, doubled or shifted);
* :func:`lag_by_envelope`: the delay between the input's and the output's level envelopes
  (independent of the engine's own rendering: the instrument follows the input's loudness);
* :func:`pitch_error_cents`: the output's pitch against the input's, frame by frame;
* :func:`without_late_blocks`: the recording without the blocks the engine reported late;
* :func:`offset_by_equality`: one client's clock on another's, from samples both saw.
"""

from __future__ import annotations

import numpy as np

ENVELOPE_HOP_S = 0.001
ENVELOPE_WINDOW_S = 0.01
ENVELOPE_FLOOR_DB = -60.0
#: offset_by_equality compares at most this many samples (about 10 s at 48 kHz): a 5-minute
#: recording would otherwise cost minutes for the same answer
MAX_EQUALITY_SAMPLES = 1 << 19


def lag_by_reference(recording: np.ndarray, reference: np.ndarray, lags: range,
                     span: slice) -> tuple[int, float]:
    """The lag (samples) in ``lags`` at which ``recording[span]`` best matches
    ``reference[span - lag]`` (silence past its end, lags at most ``span.start``), and that
    normalised correlation (1 = identical shape). All lags at once, by FFT."""
    from scipy.signal import fftconvolve

    a = np.asarray(recording[span], np.float64)
    lo, hi = min(lags), max(lags)
    reference = np.pad(np.asarray(reference, np.float64),
                       (0, max(0, span.stop - lo - len(reference))))
    b = reference[span.start - hi : span.stop - lo]  # every shifted window of the reference
    dots = fftconvolve(b, a[::-1], mode="valid")[::-1]  # dots[k]: lag lo + k
    energy = np.concatenate([[0.0], np.cumsum(b * b)])
    n = len(a)
    norms = energy[np.arange(hi - lo, -1, -1) + n] - energy[np.arange(hi - lo, -1, -1)]
    corr = dots / np.sqrt((a @ a) * norms + 1e-30)
    k = int(np.argmax(corr))
    return lo + k, float(corr[k])


def envelope_db(x: np.ndarray, rate: int) -> np.ndarray:
    """RMS level in dB every ENVELOPE_HOP_S over ENVELOPE_WINDOW_S, floored."""
    hop, win = int(ENVELOPE_HOP_S * rate), int(ENVELOPE_WINDOW_S * rate)
    c = np.concatenate([[0.0], np.cumsum(np.asarray(x, np.float64) ** 2)])
    ends = np.arange(win, len(x) + 1, hop)
    rms = np.sqrt((c[ends] - c[ends - win]) / win)
    return np.maximum(20 * np.log10(rms + 1e-12), ENVELOPE_FLOOR_DB)


def lag_by_envelope(x: np.ndarray, y: np.ndarray, rate: int, max_lag_s: float = 0.2) -> float:
    """Delay of ``y`` after ``x`` in seconds (to ENVELOPE_HOP_S) from their level envelopes."""
    ex, ey = envelope_db(x, rate), envelope_db(y, rate)
    n = min(len(ex), len(ey))
    ex, ey = ex[:n] - ex[:n].mean(), ey[:n] - ey[:n].mean()
    lags = np.arange(0, int(max_lag_s / ENVELOPE_HOP_S) + 1)
    score = [float(ex[: n - k] @ ey[k:]) / (n - k) for k in lags]
    return float(lags[int(np.argmax(score))] * ENVELOPE_HOP_S)


def pitch_error_cents(x: np.ndarray, y: np.ndarray, rate: int, lag_samples: int,
                      min_confidence: float = 0.85) -> np.ndarray:
    """Cents of the output ``y``'s pitch above the input ``x``'s, on the frames where both
    are confidently pitched, ``y`` shifted back by ``lag_samples``."""
    from ..audio_io import resample_audio
    from ..features import FeatureConfig, compute_f0

    y = np.asarray(y[lag_samples : lag_samples + len(x)], np.float32)
    x = np.asarray(x[: len(y)], np.float32)
    cfg = FeatureConfig()
    f0x, cx = compute_f0(resample_audio(x, rate, cfg.sample_rate), cfg)
    f0y, cy = compute_f0(resample_audio(y, rate, cfg.sample_rate), cfg)
    both = (cx >= min_confidence) & (cy >= min_confidence)
    return 1200 * np.log2(f0y[both] / f0x[both])


def without_late_blocks(recording: np.ndarray, report: dict) -> np.ndarray:
    """The recording with the late blocks (silence we played) set aside as zeros, so they
    weigh nothing in a comparison."""
    y = np.array(recording, np.float32)
    rate, block = report["sample_rate"], report["block_samples"]
    for t_s in report["late_block_times_s"]:
        y[round(t_s * rate) : round(t_s * rate) + block] = 0.0
    return y


def offset_by_equality(a: np.ndarray, b: np.ndarray, guess: int, search: int) -> tuple[int, float]:
    """Where ``b`` sits in ``a``: the offset ``d`` within ``guess +- search`` at which the
    most samples ``a[d + k] == b[k]`` among the nonzero samples of ``b`` (the first
    :data:`MAX_EQUALITY_SAMPLES`), and that share.

    The same samples seen by two clients (what the engine sent and what the next client
    recorded) map one clock onto the other, to the sample, whatever the clocks reported.
    """
    k = np.flatnonzero(b)[:MAX_EQUALITY_SAMPLES]  # a clock offset shows in any stretch
    best = (guess, 0.0)
    for d in range(guess - search, guess + search + 1):
        inside = k[(k + d >= 0) & (k + d < len(a))]
        share = float(np.mean(a[inside + d] == b[inside])) if len(inside) else 0.0
        if share > best[1]:
            best = (d, share)
    return best
