"""The harmonic check: is the tracked pitch really a harmonic of a lower fundamental?

CREPE tiny reads notes whose fundamental is weak at one of their harmonics: the lowest cello
notes at three times their frequency, some bassoon notes at twice or five times theirs. For
every frame the tracked pitch ``f`` is compared with its sub-multiples ``f / k`` (k = 2..8,
down to :data:`CHECK_MIN_HZ`) on the same 1024-sample window CREPE saw, so the check adds no
latency. Four pieces of evidence that the true pitch is ``f / k``, each a number per frame
and divisor:

1. CREPE's own activation near ``f / k`` against its activation at ``f`` (log ratio): the
   small network often sees the fundamental as a runner-up;
2. periodicity: the normalised difference function (YIN's, 1 - normalised autocorrelation
   over the overlap) at the period of ``f / k`` against that at the period of ``f`` (log
   ratio). A signal periodic at ``1 / f`` is as periodic at ``k / f``; only a true
   fundamental at ``f / k`` makes ``k / f`` clearly better;
3. spectral prominence of the partials of ``f / k`` that are not harmonics of ``f`` (the
   odd multiples of ``f / 2``, the multiples of ``f / 3`` not divisible by 3, ...): their
   peak above the spectrum half a partial away, in dB / 10;
4. the level of that partial relative to the peak at ``f`` (dB / 10).

They are weighed by a logistic regression (:data:`CHECK_WEIGHTS`, fitted by
``bench/fit_harmonic_check.py`` on renders with seeds 9000..9103, none of them used for
training or for the tracker benchmark) into log-odds per divisor, and a divisor path through
the frames is decoded by a small Viterbi (:func:`divisor_path`; :func:`divisor_advance` frame
by frame for the streaming front end): changing the divisor costs :data:`DIVISOR_SWITCH`
nats, so a reading holds through a note instead of flickering frame by frame.
"""

from __future__ import annotations

import numpy as np

from .core import hz_to_cents

CHECK_SAMPLE_RATE = 16000
CHECK_WINDOW = 1024
# Sub-multiples f / k tried for every frame (k = 1 is the tracked pitch itself).
DIVISORS = np.arange(1, 9)
# Lowest fundamental the check proposes: its period (400 samples) leaves 624 samples of
# overlap in the 1024-sample window for the difference function.
CHECK_MIN_HZ = 40.0
# Relative lag tolerance when reading the difference function at a period: the tracked
# pitch is within a few cents of the harmonic, the minimum may be up to 3 % away.
LAG_TOLERANCE = 0.03
# FFT size of the spectrum (the window zero-padded 4 times).
SPECTRUM_N_FFT = 4096
# The log-frequency grid of the spectral features: CREPE's 20-cent bins from 20 Hz.
LOG_BIN_CENTS = 20.0
LOG_BIN_LO_HZ = 20.0
N_LOG_BINS = 540
# Half-width (in log bins, 40 cents) of the window where a partial's peak is looked for.
PEAK_HALF_BINS = 2
# Logistic regression over the four features (see the module docstring) and its intercept,
# fitted by bench/fit_harmonic_check.py; DIVISOR_BIAS is added to the log-odds: a divisor
# needs a little less than even odds per frame because the path also weighs its neighbours.
CHECK_WEIGHTS = np.array([1.74, 1.959, 0.906, 0.323])
CHECK_INTERCEPT = -0.102
DIVISOR_BIAS = 2.0
# Cost (nats) of changing the divisor between two frames.
DIVISOR_SWITCH = 10.0
# Floors of the two log ratios (activation, difference function).
ACT_FLOOR = 0.01
DIFF_FLOOR = 0.02


def difference_function(frames: np.ndarray, max_lag: int) -> np.ndarray:
    """Normalised difference ``d(tau) = 1 - 2 r(tau) / (e0(tau) + e1(tau))`` per frame.

    ``r`` is the autocorrelation over the overlap of the window and its copy shifted by
    ``tau``, ``e0`` and ``e1`` the energies of the two overlapping parts: 0 for a signal
    periodic at ``tau``, about 1 for an unrelated one, scale-free.

    Args:
        frames: [n_frames, window] audio.
        max_lag: lags ``0 .. max_lag - 1`` are returned.

    Returns:
        [n_frames, max_lag] float64.
    """
    n = frames.shape[1]
    spec = np.fft.rfft(frames, 2 * n, axis=1)
    r = np.fft.irfft(spec * np.conj(spec), 2 * n, axis=1)[:, :max_lag]
    energy = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    tau = np.arange(max_lag)
    e0 = energy[:, n - tau]
    e1 = energy[:, n : n + 1] - energy[:, tau]
    return 1.0 - 2.0 * r / np.maximum(e0 + e1, 1e-12)


def min_near_lag(d: np.ndarray, lag: np.ndarray) -> np.ndarray:
    """Minimum of each frame's difference function within +-3 % of ``lag``.

    Args:
        d: [n_frames, max_lag]; lag: [n_frames] float samples.

    Returns:
        [n_frames]; +inf where the window falls outside the computed lags.
    """
    n, max_lag = d.shape
    lo = np.floor(lag * (1.0 - LAG_TOLERANCE)).astype(np.int64)
    hi = np.ceil(lag * (1.0 + LAG_TOLERANCE)).astype(np.int64)
    width = int(np.max(hi - lo, initial=0)) + 1
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = (idx <= hi[:, None]) & (idx >= 1) & (idx < max_lag)
    vals = d[np.arange(n)[:, None], np.clip(idx, 0, max_lag - 1)]
    return np.where(valid, vals, np.inf).min(axis=1)


def _log_bin_edges() -> tuple[np.ndarray, np.ndarray]:
    """For every log bin: the FFT bin nearest its centre and the FFT bins [lo, hi) inside it."""
    cents = np.arange(N_LOG_BINS + 1) * LOG_BIN_CENTS - LOG_BIN_CENTS / 2
    edges_hz = LOG_BIN_LO_HZ * 2.0 ** (cents / 1200.0)
    to_bin = SPECTRUM_N_FFT / CHECK_SAMPLE_RATE
    centre = np.round(LOG_BIN_LO_HZ * 2.0 ** (np.arange(N_LOG_BINS) * LOG_BIN_CENTS / 1200.0)
                      * to_bin).astype(np.int64)
    edges = np.minimum(np.ceil(edges_hz * to_bin).astype(np.int64), SPECTRUM_N_FFT // 2)
    return np.minimum(centre, SPECTRUM_N_FFT // 2), edges


_CENTRE_BINS, _EDGE_BINS = _log_bin_edges()


def log_spectrum_db(frames: np.ndarray) -> np.ndarray:
    """Hann-windowed magnitude spectrum in dB on 20-cent bins from 20 Hz (max-pooled).

    Args:
        frames: [n_frames, 1024] audio at 16 kHz.

    Returns:
        [n_frames, 540] float32 dB (relative: only differences are used).
    """
    window = np.hanning(frames.shape[1])
    mag = np.abs(np.fft.rfft(frames * window, SPECTRUM_N_FFT, axis=1))
    db = (20.0 * np.log10(mag + 1e-9)).astype(np.float32)
    out = db[:, _CENTRE_BINS]
    lo, hi = _EDGE_BINS[:-1], _EDGE_BINS[1:]
    wide = np.nonzero(hi > lo)[0]  # bins wider than one FFT bin: the largest inside
    if len(wide):
        pooled = np.maximum.reduceat(db, lo[wide], axis=1)
        out[:, wide] = np.maximum(out[:, wide], pooled)
    return out


def _window_reduce(spec: np.ndarray, centre: np.ndarray, reduce) -> np.ndarray:
    """``reduce`` (np.max / np.min) of ``spec`` over log bins ``centre +- 2``, per frame."""
    idx = centre[:, None] + np.arange(-PEAK_HALF_BINS, PEAK_HALF_BINS + 1)[None, :]
    idx = np.clip(idx, 0, spec.shape[1] - 1)
    return reduce(spec[np.arange(len(spec))[:, None], idx], axis=1)


def _log_bin(f_hz: np.ndarray) -> np.ndarray:
    return np.round(1200.0 * np.log2(np.maximum(f_hz, 1e-3) / LOG_BIN_LO_HZ)
                    / LOG_BIN_CENTS).astype(np.int64)


def spectral_features(spec_db: np.ndarray, f0_hz: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Prominence and level of the partials of ``f0 / k`` that are not harmonics of ``f0``.

    For the partials ``m f0 / k`` with ``m < 2 k`` not divisible by ``k``: peak (max within
    +-40 cents) minus the floor (the mean of the minima half a partial below and above). The
    most prominent one is kept, with its peak relative to the peak at ``f0``.

    Args:
        spec_db: [n_frames, 540] from :func:`log_spectrum_db`; f0_hz: [n_frames].

    Returns:
        prominence_db, level_db: [n_frames] each.
    """
    top = N_LOG_BINS - 1
    base = _window_reduce(spec_db, np.minimum(_log_bin(f0_hz), top), np.max)
    best = np.full(len(f0_hz), -99.0)
    level = np.full(len(f0_hz), -99.0)
    for m in range(1, 2 * k):
        if m % k == 0:
            continue
        peak = _window_reduce(spec_db, np.minimum(_log_bin(m * f0_hz / k), top), np.max)
        below = _window_reduce(spec_db, np.minimum(_log_bin((m - 0.5) * f0_hz / k), top), np.min)
        above = _window_reduce(spec_db, np.minimum(_log_bin((m + 0.5) * f0_hz / k), top), np.min)
        prominence = peak - 0.5 * (below + above)
        better = prominence > best
        best = np.where(better, prominence, best)
        level = np.where(better, peak - base, level)
    return best, level


def _activation_near(activations: np.ndarray, f_hz: np.ndarray) -> np.ndarray:
    """CREPE's largest activation within +-2 bins (40 cents) of ``f_hz``: [n_frames]."""
    from .pitch import CREPE_BINS, CREPE_CENTS_OFFSET, CREPE_CENTS_PER_BIN

    centre = np.round((hz_to_cents(f_hz) - CREPE_CENTS_OFFSET) / CREPE_CENTS_PER_BIN)
    idx = centre.astype(np.int64)[:, None] + np.arange(-2, 3)[None, :]
    inside = (idx >= 0) & (idx < CREPE_BINS)
    vals = activations[np.arange(len(f_hz))[:, None], np.clip(idx, 0, CREPE_BINS - 1)]
    return np.where(inside, vals, 0.0).max(axis=1)


def check_features(frames: np.ndarray, activations: np.ndarray,
                   f0_hz: np.ndarray) -> np.ndarray:
    """The four pieces of evidence for every frame and divisor (module docstring).

    Args:
        frames: [n_frames, 1024] audio at 16 kHz, the windows CREPE analysed.
        activations: [n_frames, 360] CREPE activations of those windows.
        f0_hz: [n_frames] the tracked pitch.

    Returns:
        [n_frames, len(DIVISORS), 4] float64; row 0 (k = 1) is zero.
    """
    frames = np.asarray(frames, np.float64)
    f0_hz = np.maximum(np.asarray(f0_hz, np.float64), 1.0)
    max_lag = int(np.ceil(CHECK_SAMPLE_RATE / CHECK_MIN_HZ * (1 + LAG_TOLERANCE))) + 2
    d = difference_function(frames, max_lag)
    spec = log_spectrum_db(frames)
    period = CHECK_SAMPLE_RATE / f0_hz
    d_1 = min_near_lag(d, period)
    a_1 = _activation_near(activations, f0_hz)
    out = np.zeros((len(f0_hz), len(DIVISORS), 4))
    for j, k in enumerate(DIVISORS[1:], start=1):
        d_k = min_near_lag(d, k * period)
        a_k = _activation_near(activations, f0_hz / k)
        prominence, level = spectral_features(spec, f0_hz, int(k))
        out[:, j, 0] = np.log((a_k + ACT_FLOOR) / (a_1 + ACT_FLOOR))
        out[:, j, 1] = np.log((np.minimum(d_1, 9.0) + DIFF_FLOOR) / (np.minimum(d_k, 9.0) + DIFF_FLOOR))
        out[:, j, 2] = np.clip(prominence, -20.0, 60.0) / 10.0
        out[:, j, 3] = np.clip(level, -60.0, 10.0) / 10.0
    return out


def divisor_emissions(features: np.ndarray, f0_hz: np.ndarray,
                      min_hz: float = CHECK_MIN_HZ) -> np.ndarray:
    """Log-odds that the pitch is ``f0 / k`` rather than ``f0``, per frame and divisor.

    Args:
        features: [n_frames, len(DIVISORS), 4] from :func:`check_features`.
        f0_hz: [n_frames]; divisors that would go below ``min_hz`` are excluded (-inf).

    Returns:
        [n_frames, len(DIVISORS)]; column 0 (the tracked pitch itself) is 0.
    """
    logits = features @ CHECK_WEIGHTS + CHECK_INTERCEPT + DIVISOR_BIAS
    logits[:, 0] = 0.0
    too_low = np.asarray(f0_hz)[:, None] / DIVISORS[None, :] < min_hz
    too_low[:, 0] = False
    return np.where(too_low, -np.inf, logits)


def divisor_advance(score: np.ndarray | None, emission_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One step of the divisor Viterbi: (new score [K], back-pointers [K] to the previous
    divisor index). ``score`` None starts a path at this frame."""
    k = len(emission_t)
    if score is None:
        return emission_t - np.max(emission_t), np.arange(k)
    best = int(np.argmax(score))
    stay = score >= score[best] - DIVISOR_SWITCH
    back = np.where(stay, np.arange(k), best)
    new = np.where(stay, score, score[best] - DIVISOR_SWITCH) + emission_t
    return new - np.max(new), back


def divisor_path(emissions: np.ndarray) -> np.ndarray:
    """Most likely divisor per frame (offline, with backtracking).

    Args:
        emissions: [n_frames, K] from :func:`divisor_emissions`.

    Returns:
        [n_frames] divisors (values of :data:`DIVISORS`).
    """
    n = len(emissions)
    if n == 0:
        return np.ones(0, np.int64)
    back = np.zeros(emissions.shape, np.int64)
    score = None
    for t in range(n):
        score, back[t] = divisor_advance(score, emissions[t])
    path = np.empty(n, np.int64)
    path[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    return DIVISORS[path]
