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

Where the check stays unsure of an octave, a second model decides: :func:`octave_doubts`
picks the stretches, :func:`doubt_samples` the frames, :func:`doubt_votes` reads the second
model's activations there (CREPE full, run by ``pitch.second_opinion``) and
:func:`settle_doubts` moves the stretches most votes put in the other octave.
"""

from __future__ import annotations

import numpy as np

from .crepe_grid import CREPE_BINS, CREPE_CENTS_OFFSET, CREPE_CENTS_PER_BIN
from .dsp.units import hz_to_cents

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
# fitted by bench/fit_harmonic_check.py. DIVISOR_BIAS (nats) is added to its log-odds: a frame
# counts as evidence for f / k from odds of about 1:7 on, since the divisor path weighs every
# frame's neighbours too. It and DIVISOR_SWITCH were chosen on the fit set (bias 1-3, switch
# 1-15 tried), never on the benchmark.
CHECK_WEIGHTS = np.array([1.74, 1.959, 0.906, 0.323])
CHECK_INTERCEPT = -0.102
DIVISOR_BIAS = 2.0
# Cost (nats) of changing the divisor between two frames.
DIVISOR_SWITCH = 10.0
# The streaming front end's online divisor filter cannot carry a reading back to a note's
# first frames as the offline path does: every frame it waits for evidence is a frame played
# wrong, the lowest notes (read at 3x from their start) most of all. So for a divisor whose
# pitch f / k lies below STREAM_LOW_HZ (k >= 3: the octave below is left to the usual filter,
# which a cheaper switch to f / 2 made read more 100-200 Hz notes at half), its evidence counts
# in full from a note's first frame (no onset part in :func:`evidence_weight`: the legato
# intervals the onset weighting is for are those of higher notes) and switching to it costs
# STREAM_LOW_SWITCH nats. Chosen on the fit renders (seeds 9000..9103: the low instruments
# and the violins) and the legato tests, then measured on the benchmark; a lower cost for every
# divisor read legato violin notes at half, and offline, where the divisor path looks both
# ways, neither helped.
STREAM_LOW_HZ = 100.0
STREAM_LOW_MIN_DIVISOR = 3
STREAM_LOW_SWITCH = 5.0
# Inside a held note CREPE tiny flips between a pitch and its octave (the FluidR3 bassoon's
# Bb3 at 233 Hz, read at 463 Hz for a few frames every vibrato cycle). Offline the divisor
# path looks both ways and halves those frames; the online filter, starting on divisor 1 and
# asked 10 nats to leave it, played each flip an octave up: 2.6 % of a fit bassoon's frames.
# So the streaming filter follows the pitch it *plays*, not the divisor: where the raw pitch
# moves by an octave and one of divisors 1 and 2 keeps the output within ONSET_CHANGE_CENTS
# of the last frame's, that change of divisor is free (:func:`stream_carry`), and the
# evidence decides between carrying the note and following the jump. Only for a note held
# STREAM_CARRY_HOLD frames or more (an attack CREPE read an octave low, the tenor and alto
# saxes', must not be carried), and not at an attack (loudness up more than STREAM_ATTACK_DB
# within STREAM_ATTACK_FRAMES frames: the flute's octave leaps after a breath were carried
# at their old pitch), nor where CREPE is unsure of the new reading (confidence under
# STREAM_CARRY_MIN_CONFIDENCE, :data:`CONFIDENT`: a violin's change of note passed through
# an octave of the old one there and was carried; the fit violin 9000 2.48 -> 2.36 % off, no
# other file changed). Only divisors 1 and 2: carrying a 4x or 8x jump carried an attack's
# low reading too. Chosen on the fit renders (seeds 9000..9103: hold 0, 8, 14 and 20 frames,
# with and without the attack gate; 14 with it read 1.61 % of their frames off, against 1.78
# %, and 0.19 % at 2x, against 0.34 %), then measured on the benchmark. Offline is unchanged.
# The cost: a legato slur up an octave while the first note still rings (its window holds
# both) is carried at the old pitch for a few frames more, up to about 90 ms after the change
# where it was 50 ms. Not counting the first one or two frames after the jump as evidence
# (their window, and CREPE's activation, still hold the pitch before) kept those slurs right
# but lost most of the bassoon's gain (2.6 % -> 3.0 %, not 1.6 %): there the carry holds on
# the evidence of those frames.
STREAM_CARRY_HOLD = 14
STREAM_CARRY_DIVISORS = 2
STREAM_ATTACK_DB = 6.0
STREAM_ATTACK_FRAMES = 5
STREAM_CARRY_MIN_CONFIDENCE = 0.3  # CONFIDENT, defined below
# After a note change the window still holds the previous note (and its release): two notes
# a fifth or a fourth apart are both harmonics of a lower tone, so the check read the first
# frames of many legato notes (violin, and the models' outputs of it) at half their pitch;
# and the first frames of a note out of silence, where CREPE is unsure (confidence < 0.3),
# gave evidence for f / 2 that the steady note does not (the alto sax's F#5). Evidence for a
# divisor therefore counts only in part (:func:`evidence_weight`) until the tracked pitch has
# held for ONSET_FRAMES frames (a frame ``n`` frames after the last change of more than
# ONSET_CHANGE_CENTS weighs ``n / ONSET_FRAMES``) and where CREPE's confidence is under
# CONFIDENT (times ``confidence / CONFIDENT``). Offline, a true subharmonic (the cello's
# lowest notes) is still read from the note's start: the divisor path carries it back over
# the neutral frames. Chosen on the shipped models' unseen performances and their outputs
# (seeds 7000..7024) and checked on the fit set, never on the benchmark.
ONSET_FRAMES = 8
ONSET_CHANGE_CENTS = 70.0
CONFIDENT = 0.3
# An attack where CREPE holds its pitch (a repeated note, or a note out of a silence after which
# CREPE still reads the last one) is no change of pitch, so the weighting above never started
# there: the alto sax's F#5 (740 Hz) out of silence was read at 370 Hz for its first 4-9
# frames, the window holding the attack's noise and little of the note. So a frame where
# CREPE is unsure (confidence < CONFIDENT) restarts the count too, for the divisors whose pitch
# f / k is at least RESTART_MIN_HZ (:func:`onset_counts`). The lower ones keep counting from
# the last change of pitch: a low note CREPE reads at 2-4x (the cello's lowest, the bassoon's
# A3-Bb3) needs its division from the attack on, and restarting them traded the bassoon's
# frames read an octave low for frames read an octave high (the 2x the goal counts). Chosen on
# the fit renders (seeds 9000..9103) and the models' unseen inputs (7000..7024): 150 Hz read
# no frame worse there; 100 Hz and every divisor traded the bassoons' as above, 200 Hz left
# the tenor sax's half readings; then measured on the benchmark. Offline only: the streaming
# filter cannot carry a division back over the restarted frames, and there the restart read
# more of the fit bassoons' frames at 2x (at 150 Hz) or the oboe's off (at 300 Hz).
RESTART_MIN_HZ = 150.0
# The harmonic check only divides. CREPE also reads the first frames of some notes out of
# silence an octave *low*, confidently (the alto sax's F#5: 367 Hz at confidence 0.85 for
# 50 ms, then 734 Hz), while its window holds the attack's first milliseconds; the tracked
# pitch then jumps up an octave inside the note, and a model plays the jump a frame or two
# late. :func:`repair_attack_octaves` lifts such a segment to the note that follows it: at
# most ATTACK_REPAIR_FRAMES frames long, ending in a jump of an octave (+-REPAIR_CENTS) up to
# a frame of confidence >= REPAIR_CONFIDENCE, and starting where CREPE was unsure (a silence
# or an attack, confidence < CONFIDENT) or with a drop of an octave from the pitch it returns
# to (a repeated note, whose re-attack CREPE read at half and the check halved). A legato
# leap to another note is never touched. Chosen on the fit renders and the models' unseen
# inputs: 6 to 15 frames read no frame worse and each more of the attacks right (15: the
# alto sax's, the tenor sax's and the bassoon's); 25 read some whole short notes of the tenor
# sax and the violin at 2x. Offline only: live, the segment has been played before the jump
# is heard.
ATTACK_REPAIR_FRAMES = 15
REPAIR_CENTS = 50.0
REPAIR_CONFIDENCE = 0.5
# At a legato change between two notes that are both harmonics of a lower tone (F5 to A#5:
# the 3rd and 4th harmonics of 233 Hz), CREPE reads some frames at that tone, confidently,
# while its window holds both notes; no divisor can lift them. :func:`bridge_subharmonics`
# gives such a stretch (at most BRIDGE_FRAMES frames, between two notes of at least
# BRIDGE_NEIGHBOUR_FRAMES frames each, its pitch within REPAIR_CENTS of an integer fraction of
# both) the pitch of the note that follows. Chosen on the fit renders and the models' unseen
# inputs: 10 to 20 frames read no frame worse and each more right (the violins', the cellos'
# and the bassoons' legato changes), 25 read a violin's frames worse. The guard in that
# function was found on the benchmark (a cello's D#2 given the 3x reading after it), which
# the fit and unseen sets hold no case of; a fresh set (seeds 8200-8201, six instruments) read
# the same with and without it.
BRIDGE_FRAMES = 20
BRIDGE_NEIGHBOUR_FRAMES = 3
# The check weighs four features with one logistic regression, and on the FluidR3 bassoon's
# short A3-Bb3 notes (208-233 Hz, odd harmonics 14-22 dB under the second) it stays unsure:
# their log-odds for f / 2 are about -3 (the notes read right about -9), under what a short
# note needs to switch the divisor, while CREPE tiny reads them at 2x with confidence 0.8;
# those notes were the 1.3 % of frames at 2x left in a bassoon played by the cello. CREPE full
# reads them right. So a stretch of steady pitch the check kept whole (divisor 1), at least
# DOUBT_MIN_FRAMES frames long and confident on average (>= CONFIDENT), whose mean raw log-odds
# for f / 2 (:func:`octave_logodds`, without DIVISOR_BIAS or the onset weighting) lie in
# (DOUBT_LOGODDS, DOUBT_MAX_LOGODDS], gets a second opinion: CREPE full on the frames at
# DOUBT_POSITIONS of its length (:func:`doubt_samples`; late in it, where the window no longer
# holds the note before), and the stretch is halved when most of them hold more activation
# near f / 2 than near f (:func:`settle_doubts`). Above even odds the check itself is sure
# and the onset weighting holds it back for a reason: there CREPE full too heard the FluidR3
# tenor sax's legato attacks an octave low. A few stretches per minute of audio, so a few
# dozen frames of CREPE full (about 17 ms each on two threads) where tiny costs 4-5 s.
# Chosen on the fit renders (seeds 9000..9113; -4 to -5 and upper bounds 0 and none tried;
# the positions 1/4, 1/2, 3/4 read the fit set the same), then measured on the benchmark.
# Offline only (``pitch.decode_f0_readings``): live, 17 ms of CREPE full does not fit a
# 10 ms hop.
# The same bassoon notes, where the check did divide, were divided by 4 as often as by 2: a
# reading at 2x taken down to half the pitch. On the fit and benchmark renders, of the frames
# the check divided by 4 (all of them bassoon), 284 of 293 were then an octave low; by 2, 39 of
# 4217; by 3 and 5, none. So every such stretch (divisor DOUBT_DIVISOR) also gets the second
# opinion, the other way: doubled where CREPE full holds more activation near 2 f than near f.
DOUBT_DIVISOR = 4
# Live there is no second opinion, so the streaming front end plays a division by
# DOUBT_DIVISOR as a division by STREAM_DOUBT_PLAYED (its filter keeps the divisor it chose:
# only the pitch played changes). On the fit renders (26 files, seeds 9000..9113) this read
# 1.87 -> 1.60 % of frames > 50 cents, no file worse (the bassoons 9104 4.19 -> 2.11 %, 9106
# 3.53 -> 1.67 %), 2x 0.36 -> 0.38 %, half 0.80 -> 0.54 %. Forbidding the division by 4
# instead moved those frames to 2x (0.19 -> 0.27 % on the first 16 files). A note truly read
# at four times its pitch is played an octave high: of the 293 frames the offline check
# divided by 4, 9 were right.
STREAM_DOUBT_PLAYED = 2
DOUBT_LOGODDS = -4.5
DOUBT_MAX_LOGODDS = 0.0
DOUBT_MIN_FRAMES = 4
DOUBT_POSITIONS = np.array([1.0 / 2.0, 2.0 / 3.0, 5.0 / 6.0])
# Floors of the two log ratios (activation, difference function).
ACT_FLOOR = 0.01
DIFF_FLOOR = 0.02
# The streaming front end cannot repair an attack read an octave low as the offline path
# does (:func:`repair_attack_octaves` looks at the note that follows). Its own window shows
# the one sign of it there is: the alto sax's F#5 starts with a tone at 370 Hz, 15-22 dB
# under the note's 740 Hz, that CREPE tiny reads confidently (0.75-0.88) for 50-70 ms, and
# the check (which only divides) finds the window truly periodic at 370 Hz. A steady note at
# f has its own partial at f within a few dB of the one at 2 f (on the fit renders the
# level of f, or of 3 f where stronger, against 2 f was above -13 dB in 95 % of the frames
# read right). So within STREAM_LIFT_FRAMES frames of a jump of the tracked pitch (by any
# interval, the octave included: CREPE often reads the attack's first frame at 740 Hz) or of
# a frame where CREPE was unsure (< CONFIDENT), a pitch of at least STREAM_LIFT_MIN_HZ that
# the check left undivided is played an octave up where that level is under
# STREAM_LIFT_LEVEL_DB (:func:`stream_lift`). Chosen on the fit renders (26 files, seeds
# 9000..9113; levels -15 and -17 dB, 5-7 frames, 300 and 340 Hz): the alto saxes 0.77 ->
# 0.06 % and 0.42 -> 0.05 % of frames > 50 cents, all 1.59 -> 1.55 %, half 0.54 -> 0.49 %,
# 2x unchanged; one frame more off on a horn; 6 or 7 frames lifted a few right bassoon,
# oboe and cello frames, -17 dB lifted half the attacks. Counting from note changes only
# (an octave jump not counted) lifted about half as many. Streaming only: offline repairs the
# attack from the note that follows.
STREAM_LIFT_FRAMES = 5
STREAM_LIFT_MIN_HZ = 340.0
STREAM_LIFT_LEVEL_DB = -15.0


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
        d: [n_frames, max_lag]; lag: [n_frames, K] float samples (K lags per frame).

    Returns:
        [n_frames, K]; +inf where the window falls outside the computed lags.
    """
    max_lag = d.shape[1]
    lo = np.floor(lag * (1.0 - LAG_TOLERANCE)).astype(np.int64)
    hi = np.ceil(lag * (1.0 + LAG_TOLERANCE)).astype(np.int64)
    width = int(np.max(hi - lo, initial=0)) + 1
    idx = lo[..., None] + np.arange(width)
    valid = (idx <= hi[..., None]) & (idx >= 1) & (idx < max_lag)
    vals = np.take_along_axis(d, np.clip(idx, 0, max_lag - 1).reshape(len(d), -1), axis=1)
    return np.where(valid, vals.reshape(idx.shape), np.inf).min(axis=-1)


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
    window = np.hanning(frames.shape[1]).astype(np.float32)
    mag = np.abs(np.fft.rfft(np.asarray(frames, np.float32) * window, SPECTRUM_N_FFT, axis=1))
    out = mag[:, _CENTRE_BINS]
    lo, hi = _EDGE_BINS[:-1], _EDGE_BINS[1:]
    wide = np.nonzero(hi > lo)[0]  # bins wider than one FFT bin: the largest inside
    if len(wide):
        pooled = np.maximum.reduceat(mag, lo[wide], axis=1)
        out[:, wide] = np.maximum(out[:, wide], pooled)
    out = 20.0 * np.log10(out + 1e-9)  # after pooling: the logarithm keeps the order
    return out


def _partials() -> tuple[np.ndarray, np.ndarray]:
    """The partials of :func:`spectral_features` as a [K - 1, M] grid: row ``k - 2`` holds
    the ratios ``m / k`` with ``m < 2 k`` not divisible by ``k`` (in order of ``m``), padded
    with NaN to the longest row. Returns the ratios and their divisors k, both [K - 1, M]."""
    rows = [[m / k for m in range(1, 2 * k) if m % k] for k in DIVISORS[1:]]
    width = max(len(r) for r in rows)
    ratio = np.array([r + [np.nan] * (width - len(r)) for r in rows])
    return ratio, np.broadcast_to(DIVISORS[1:, None], ratio.shape).astype(np.float64)


_PARTIAL_RATIO, _PARTIAL_K = _partials()


def _window_extremes(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and min of ``spec`` ([n, bins]) over every window of ``2 * PEAK_HALF_BINS + 1`` log
    bins, the spectrum's edge values repeated past its ends: [n, bins + 2 * PEAK_HALF_BINS]
    each, entry ``c + PEAK_HALF_BINS`` for the window centred on bin ``c``."""
    h = PEAK_HALF_BINS
    ext = np.concatenate([np.repeat(spec[:, :1], 2 * h, axis=1), spec,
                          np.repeat(spec[:, -1:], 2 * h, axis=1)], axis=1)
    width = spec.shape[1] + 2 * h
    high, low = ext[:, :width].copy(), ext[:, :width].copy()
    for i in range(1, 2 * h + 1):  # a few shifted passes: cheaper than a window view per call
        np.maximum(high, ext[:, i : i + width], out=high)
        np.minimum(low, ext[:, i : i + width], out=low)
    return high, low


def _window_reduce(extremes: np.ndarray, f_hz: np.ndarray) -> np.ndarray:
    """The entry of ``extremes`` (one of :func:`_window_extremes`) for the window centred on
    the log bin of each frequency (bins within +-2, clipped to the spectrum): extremes [n, ...],
    f_hz [n, ...] -> [n, ...]."""
    centre = np.round(1200.0 * np.log2(np.maximum(np.nan_to_num(f_hz, nan=1.0), 1e-3)
                                       / LOG_BIN_LO_HZ) / LOG_BIN_CENTS)
    # a window centred further below bin 0 than its half-width holds bin 0 alone, as at -h
    centre = np.clip(centre.astype(np.int64), -PEAK_HALF_BINS, N_LOG_BINS - 1)
    idx = (centre + PEAK_HALF_BINS).reshape(len(extremes), -1)
    return np.take_along_axis(extremes, idx, axis=1).reshape(centre.shape)


def spectral_features(spec_db: np.ndarray, f0_hz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Prominence and level of the partials of ``f0 / k`` that are not harmonics of ``f0``.

    For every divisor k and the partials ``m f0 / k`` with ``m < 2 k`` not divisible by
    ``k``: peak (max within +-40 cents) minus the floor (the mean of the minima half a
    partial below and above). The most prominent partial of each divisor is kept (the
    lowest on a tie), with its peak relative to the peak at ``f0``.

    Args:
        spec_db: [n_frames, 540] from :func:`log_spectrum_db`; f0_hz: [n_frames].

    Returns:
        prominence_db, level_db: [n_frames, len(DIVISORS) - 1] each (k = 2..8).
    """
    f = np.asarray(f0_hz, np.float64)[:, None, None]
    high, low = _window_extremes(spec_db)
    base = _window_reduce(high, f[:, 0])  # [n, 1]
    peak = _window_reduce(high, f * _PARTIAL_RATIO)
    below = _window_reduce(low, f * (_PARTIAL_RATIO - 0.5 / _PARTIAL_K))
    above = _window_reduce(low, f * (_PARTIAL_RATIO + 0.5 / _PARTIAL_K))
    prominence = np.where(np.isnan(_PARTIAL_RATIO), -np.inf, peak - 0.5 * (below + above))
    best = np.argmax(prominence, axis=-1)[..., None]
    return (np.take_along_axis(prominence, best, axis=-1)[..., 0],
            np.take_along_axis(peak, best, axis=-1)[..., 0] - base)


def _activation_near(activations: np.ndarray, f_hz: np.ndarray) -> np.ndarray:
    """CREPE's largest activation within +-2 bins (40 cents) of each frequency:
    activations [n, 360], f_hz [n, K] -> [n, K]."""
    centre = np.round((hz_to_cents(f_hz) - CREPE_CENTS_OFFSET) / CREPE_CENTS_PER_BIN)
    idx = centre.astype(np.int64)[..., None] + np.arange(-2, 3)
    inside = (idx >= 0) & (idx < CREPE_BINS)
    vals = np.take_along_axis(activations, np.clip(idx, 0, CREPE_BINS - 1).reshape(
        len(f_hz), -1), axis=1).reshape(idx.shape)
    return np.where(inside, vals, 0.0).max(axis=-1)


def check_features(frames: np.ndarray, activations: np.ndarray,
                   f0_hz: np.ndarray, spec_db: np.ndarray | None = None) -> np.ndarray:
    """The four pieces of evidence for every frame and divisor (module docstring).

    Args:
        frames: [n_frames, 1024] audio at 16 kHz, the windows CREPE analysed.
        activations: [n_frames, 360] CREPE activations of those windows.
        f0_hz: [n_frames] the tracked pitch.
        spec_db: [n_frames, N_LOG_BINS] :func:`log_spectrum_db` of ``frames`` where the
            caller has it already (None: computed here).

    Returns:
        [n_frames, len(DIVISORS), 4] float64; row 0 (k = 1) is zero.
    """
    frames = np.asarray(frames, np.float64)
    f0_hz = np.maximum(np.asarray(f0_hz, np.float64), 1.0)
    max_lag = int(np.ceil(CHECK_SAMPLE_RATE / CHECK_MIN_HZ * (1 + LAG_TOLERANCE))) + 2
    spec_db = log_spectrum_db(frames) if spec_db is None else spec_db
    prominence, level = spectral_features(spec_db, f0_hz)
    d = min_near_lag(difference_function(frames, max_lag),
                     CHECK_SAMPLE_RATE / f0_hz[:, None] * DIVISORS[None, :])
    a = _activation_near(activations, f0_hz[:, None] / DIVISORS[None, :])
    d = np.minimum(d, 9.0)
    out = np.zeros((len(f0_hz), len(DIVISORS), 4))
    out[:, 1:, 0] = np.log((a[:, 1:] + ACT_FLOOR) / (a[:, :1] + ACT_FLOOR))
    out[:, 1:, 1] = np.log((d[:, :1] + DIFF_FLOOR) / (d[:, 1:] + DIFF_FLOOR))
    out[:, 1:, 2] = np.clip(prominence, -20.0, 60.0) / 10.0
    out[:, 1:, 3] = np.clip(level, -60.0, 10.0) / 10.0
    return out


_HARMONIC_CENTS = 1200.0 * np.log2(DIVISORS[1:].astype(np.float64))


def frames_since_change(f0_hz: np.ndarray, previous: tuple[float, int] | None = None
                        ) -> np.ndarray:
    """Frames since the tracked pitch last changed by more than :data:`ONSET_CHANGE_CENTS`
    from one frame to the next (a jump by a whole ratio 2..8 does not count), capped at
    :data:`ONSET_FRAMES`.

    Args:
        f0_hz: [n_frames] the tracked pitch (before the check).
        previous: (pitch in Hz, count) of the frame before ``f0_hz[0]``; None: the first
            frame counts as settled (a block decodes like the same frames of a whole file).

    Returns:
        [n_frames] int counts in 0 .. ONSET_FRAMES.
    """
    cents = 1200.0 * np.log2(np.maximum(np.asarray(f0_hz, np.float64), 1e-3))
    if not len(cents):
        return np.zeros(0, np.int64)
    prev_cents, count = ((cents[0], ONSET_FRAMES) if previous is None
                         else (1200.0 * np.log2(max(previous[0], 1e-3)), previous[1]))
    step = np.abs(np.diff(np.r_[prev_cents, cents]))
    # A jump by a whole ratio k (CREPE moving to or from a harmonic of the same note) is
    # not a note change: the check must act on it at once.
    harmonic = (np.min(np.abs(step[:, None] - _HARMONIC_CENTS[None, :]), axis=1)
                <= ONSET_CHANGE_CENTS)
    return _count_since(((step > ONSET_CHANGE_CENTS) & ~harmonic), count)


def _count_since(restart: np.ndarray, count: int) -> np.ndarray:
    """Frames since the last ``restart`` frame (0 there), capped at :data:`ONSET_FRAMES`;
    ``count`` is the frame before the first's: [n_frames] bool -> [n_frames] int."""
    out = np.empty(len(restart), np.int64)
    for i, r in enumerate(restart):
        count = 0 if r else min(ONSET_FRAMES, count + 1)
        out[i] = count
    return out


def frames_since_unsure(since_change: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Frames since the last change of pitch or the last frame where CREPE was unsure
    (confidence < :data:`CONFIDENT`), capped at :data:`ONSET_FRAMES`.

    Args:
        since_change: [n_frames] from :func:`frames_since_change`.
        confidence: [n_frames] CREPE's activation at the tracked bin.

    Returns:
        [n_frames] int counts in 0 .. ONSET_FRAMES (the first frame counts as settled).
    """
    return _count_since((np.asarray(since_change) == 0)
                        | (np.asarray(confidence) < CONFIDENT), ONSET_FRAMES)


def onset_counts(since_change: np.ndarray, since_unsure: np.ndarray,
                 f0_hz: np.ndarray) -> np.ndarray:
    """Each divisor's frames since its onset (:data:`RESTART_MIN_HZ`): ``since_unsure``
    where ``f0 / k`` is at least RESTART_MIN_HZ, else ``since_change``.

    Args:
        since_change, since_unsure: [n_frames] from :func:`frames_since_change` and
            :func:`frames_since_unsure`; f0_hz: [n_frames] the tracked pitch.

    Returns:
        [n_frames, len(DIVISORS)] int.
    """
    high = np.asarray(f0_hz, np.float64)[:, None] / DIVISORS[None, :] >= RESTART_MIN_HZ
    return np.where(high, np.asarray(since_unsure)[:, None], np.asarray(since_change)[:, None])


def evidence_weight(since_onset: np.ndarray, confidence: np.ndarray,
                    exempt: np.ndarray | None = None) -> np.ndarray:
    """Weight in [0, 1] of each frame's evidence for each divisor: ``min(1, since_onset /
    ONSET_FRAMES) * min(1, confidence / CONFIDENT)`` (see :data:`ONSET_FRAMES`), without the
    onset part where ``exempt`` (the streaming filter's :func:`stream_low` divisors).

    Args:
        since_onset: [n_frames] from :func:`frames_since_change`, or [n_frames,
            len(DIVISORS)] from :func:`onset_counts`.
        confidence: [n_frames] CREPE's activation at the tracked bin.
        exempt: [n_frames, len(DIVISORS)] bool, or None (none exempt).

    Returns:
        [n_frames, len(DIVISORS)].
    """
    onset = np.minimum(1.0, np.asarray(since_onset, np.float64) / ONSET_FRAMES)
    sure = np.minimum(1.0, np.asarray(confidence, np.float64) / CONFIDENT)[:, None]
    onset = np.broadcast_to(onset if onset.ndim == 2 else onset[:, None],
                            (len(onset), len(DIVISORS)))
    return (onset if exempt is None else np.where(exempt, 1.0, onset)) * sure


def stream_low(f0_hz: np.ndarray) -> np.ndarray:
    """[n_frames, len(DIVISORS)] bool: the divisors the streaming filter treats as low."""
    k = DIVISORS[None, :]
    return (np.asarray(f0_hz, np.float64)[:, None] / k < STREAM_LOW_HZ) & (
        k >= STREAM_LOW_MIN_DIVISOR)


def stream_switch_costs(low: np.ndarray) -> np.ndarray:
    """[len(DIVISORS)] nats to switch to each divisor in the streaming filter, from one
    frame's row of :func:`stream_low`."""
    return np.where(low, STREAM_LOW_SWITCH, DIVISOR_SWITCH)


def stream_carry(previous_hz: float, f0_hz: float) -> np.ndarray:
    """The changes of divisor that keep the streaming filter's output pitch.

    Args:
        previous_hz: the last frame's tracked pitch (before the check); f0_hz: this frame's.

    Returns:
        [K, K] bool (K = len(DIVISORS)), ``[i, j]`` true where ``previous_hz / DIVISORS[i]``
        and ``f0_hz / DIVISORS[j]`` lie within ONSET_CHANGE_CENTS and ``i != j``, both
        divisors at most STREAM_CARRY_DIVISORS (see :data:`STREAM_CARRY_HOLD`).
    """
    k = DIVISORS.astype(np.float64)
    before = 1200.0 * np.log2(max(previous_hz, 1e-3) / k)
    now = 1200.0 * np.log2(max(f0_hz, 1e-3) / k)
    carry = np.abs(before[:, None] - now[None, :]) <= ONSET_CHANGE_CENTS
    small = DIVISORS <= STREAM_CARRY_DIVISORS
    return carry & small[:, None] & small[None, :] & ~np.eye(len(k), dtype=bool)


def is_attack(loudness_db: np.ndarray) -> bool:
    """Whether the last of ``loudness_db`` (the last STREAM_ATTACK_FRAMES + 1 frames, dB) is
    more than STREAM_ATTACK_DB above the lowest before it."""
    recent = np.asarray(loudness_db, np.float64)
    return len(recent) > 1 and recent[-1] - recent[:-1].min() > STREAM_ATTACK_DB


def octave_up_level_db(spec_db: np.ndarray, f0_hz: float) -> float:
    """The level (dB) of the partial at ``f0`` (or ``3 f0``, the more prominent) relative to
    the peak at ``2 f0`` in one window's spectrum (``spec_db``: [1, N_LOG_BINS] from
    :func:`log_spectrum_db`): how much of the window is a tone at ``f0`` rather than at the
    octave above."""
    return float(spectral_features(spec_db, np.array([2.0 * f0_hz]))[1][0, 0])


def frames_since_onset(previous_hz: float | None, f0_hz: float, confidence: float,
                       count: int) -> int:
    """The streaming lift's count (:data:`STREAM_LIFT_FRAMES`): 0 where the tracked pitch
    jumped by more than ONSET_CHANGE_CENTS from ``previous_hz`` (any interval) or CREPE is
    unsure (``confidence`` < CONFIDENT), else ``count`` (the last frame's) + 1, capped at
    ONSET_FRAMES; ``previous_hz`` None (the first frame) counts as no jump."""
    jump = (previous_hz is not None
            and abs(1200.0 * np.log2(max(f0_hz, 1e-3) / max(previous_hz, 1e-3)))
            > ONSET_CHANGE_CENTS)
    return int(_count_since(np.array([jump or confidence < CONFIDENT]), count)[0])


def stream_lift(spec_db: np.ndarray, f0_hz: float, since_onset: int, max_hz: float) -> bool:
    """Whether the streaming front end plays an undivided pitch ``f0_hz`` an octave up: an
    attack read an octave low (:data:`STREAM_LIFT_FRAMES`). ``spec_db``: the window's
    [1, N_LOG_BINS] :func:`log_spectrum_db`; ``since_onset``: from :func:`frames_since_onset`;
    ``max_hz``: the highest pitch the analysis reads."""
    return (since_onset <= STREAM_LIFT_FRAMES and STREAM_LIFT_MIN_HZ <= f0_hz
            and 2.0 * f0_hz <= max_hz
            and octave_up_level_db(spec_db, f0_hz) < STREAM_LIFT_LEVEL_DB)


def divisor_emissions(features: np.ndarray, f0_hz: np.ndarray,
                      min_hz: float = CHECK_MIN_HZ,
                      weight: np.ndarray | None = None) -> np.ndarray:
    """Log-odds that the pitch is ``f0 / k`` rather than ``f0``, per frame and divisor.

    Args:
        features: [n_frames, len(DIVISORS), 4] from :func:`check_features`.
        f0_hz: [n_frames]; divisors that would go below ``min_hz`` are excluded (-inf).
        weight: [n_frames, len(DIVISORS)] from :func:`evidence_weight`: positive log-odds
            are multiplied by it (None: every frame counts in full).

    Returns:
        [n_frames, len(DIVISORS)]; column 0 (the tracked pitch itself) is 0.
    """
    logits = features @ CHECK_WEIGHTS + CHECK_INTERCEPT + DIVISOR_BIAS
    if weight is not None:
        w = np.asarray(weight, np.float64)
        logits = np.where(logits > 0.0, logits * w, logits)
    logits[:, 0] = 0.0
    too_low = np.asarray(f0_hz)[:, None] / DIVISORS[None, :] < min_hz
    too_low[:, 0] = False
    return np.where(too_low, -np.inf, logits)


def divisor_advance(score: np.ndarray | None, emission_t: np.ndarray,
                    switch: float | np.ndarray = DIVISOR_SWITCH,
                    free: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One step of the divisor Viterbi: (new score [K], back-pointers [K] to the previous
    divisor index). ``score`` None starts a path at this frame; ``switch`` (nats, or [K]: per
    divisor switched to) is the cost of changing the divisor; ``free`` ([K, K] bool, from
    :func:`stream_carry`, or None) marks changes ``i -> j`` that cost nothing."""
    k = len(emission_t)
    if score is None:
        return emission_t - np.max(emission_t), np.arange(k)
    best = int(np.argmax(score))
    stay = score >= score[best] - switch
    back = np.where(stay, np.arange(k), best)
    new = np.where(stay, score, score[best] - switch)
    if free is not None and free.any():
        carried = np.where(free, score[:, None], -np.inf)  # [i, j]
        source = np.argmax(carried, axis=0)
        gain = carried[source, np.arange(k)] > new
        back = np.where(gain, source, back)
        new = np.where(gain, carried[source, np.arange(k)], new)
    new = new + emission_t
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


def repair_attack_octaves(f0_hz: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """The attacks read an octave low, lifted to the note that follows them
    (:data:`ATTACK_REPAIR_FRAMES`).

    Args:
        f0_hz: [n_frames] the tracked pitch after the check; confidence: [n_frames].

    Returns:
        [n_frames] float64, a copy.
    """
    f0 = np.asarray(f0_hz, np.float64).copy()
    conf = np.asarray(confidence, np.float64)
    cents = hz_to_cents(f0)
    step = np.diff(cents)
    jumps = np.nonzero((np.abs(step - 1200.0) < REPAIR_CENTS)
                       & (conf[1:] >= REPAIR_CONFIDENCE))[0] + 1
    for t in jumps:
        start = t - 1  # walk back over the segment before the jump (steps < a note change)
        while (start > 0 and t - start <= ATTACK_REPAIR_FRAMES
               and abs(cents[start] - cents[start - 1]) < ONSET_CHANGE_CENTS):
            start -= 1
        if t - start > ATTACK_REPAIR_FRAMES:
            continue
        if (start > 0 and min(conf[start - 1], conf[start]) >= CONFIDENT
                and abs(cents[start - 1] - cents[t]) >= REPAIR_CENTS):
            continue  # neither an unsure frame nor a dip from the same pitch: a note of its own
        f0[start:t] *= 2.0
        cents[start:t] += 1200.0
    return f0


def _is_subharmonic(high_cents: float, low_cents: float) -> bool:
    """Whether ``low`` is within REPAIR_CENTS of ``high / k`` for an integer k >= 2."""
    ratio = 2.0 ** ((high_cents - low_cents) / 1200.0)
    k = np.round(ratio)
    return bool(k >= 2 and abs(1200.0 * np.log2(ratio / k)) < REPAIR_CENTS)


def steady_spans(cents: np.ndarray) -> list[tuple[int, int]]:
    """Stretches of steady pitch: [n_frames] cents split wherever the pitch moves by a note
    change (ONSET_CHANGE_CENTS) or more from one frame to the next; ``[(start, stop), ...]``
    covering every frame."""
    edges = np.r_[0, np.nonzero(np.abs(np.diff(cents)) >= ONSET_CHANGE_CENTS)[0] + 1,
                  len(cents)]
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def bridge_subharmonics(f0_hz: np.ndarray, divisors: np.ndarray) -> np.ndarray:
    """Short stretches read at a common subharmonic of the notes on either side, given the
    pitch of the note that follows (:data:`BRIDGE_FRAMES`). A stretch the check divided by k
    is left alone where the note after it is at k times its pitch: that is CREPE's reading of
    the same low note, which the check did not reach (a short low cello note before its
    release, read at 3x).

    Args:
        f0_hz: [n_frames] the tracked pitch after the check; divisors: [n_frames] the check's.

    Returns:
        [n_frames] float64, a copy.
    """
    f0 = np.asarray(f0_hz, np.float64).copy()
    cents = hz_to_cents(f0)
    spans = steady_spans(cents)
    for (a0, a1), (s0, s1), (b0, b1) in zip(spans, spans[1:], spans[2:]):
        if (s1 - s0 > BRIDGE_FRAMES or a1 - a0 < BRIDGE_NEIGHBOUR_FRAMES
                or b1 - b0 < BRIDGE_NEIGHBOUR_FRAMES):
            continue
        before, here, after = (float(np.median(cents[i:j])) for i, j in ((a0, a1), (s0, s1),
                                                                            (b0, b1)))
        k = float(np.median(divisors[s0:s1]))
        if k > 1 and abs(after - here - 1200.0 * np.log2(k)) < REPAIR_CENTS:
            continue  # the same note, undivided after the stretch
        if (abs(after - before) >= ONSET_CHANGE_CENTS and _is_subharmonic(before, here)
                and _is_subharmonic(after, here)):
            f0[s0:s1] = f0[b0]
    return f0


def octave_logodds(features: np.ndarray) -> np.ndarray:
    """The check's raw log-odds that the pitch is an octave lower (``f / 2``), before
    DIVISOR_BIAS and the onset weighting: features [n, len(DIVISORS), 4] -> [n]."""
    return features[:, 1] @ CHECK_WEIGHTS + CHECK_INTERCEPT


def octave_doubts(f0_hz: np.ndarray, divisors: np.ndarray, logodds: np.ndarray,
                  confidence: np.ndarray, min_hz: float) -> list[tuple[int, int, float]]:
    """The stretches that get a second opinion (:data:`DOUBT_LOGODDS`,
    :data:`DOUBT_DIVISOR`).

    Args:
        f0_hz: [n_frames] the tracked pitch after the check; divisors: [n_frames] the check's;
        logodds: [n_frames] :func:`octave_logodds` at the pitch as CREPE read it;
        confidence: [n_frames]; min_hz: the lowest pitch the octave below may take.

    Returns:
        ``[(start, stop, factor), ...]``: frame ranges of steady pitch (split where it moves by
        ONSET_CHANGE_CENTS or more) and the octave in doubt, ``0.5`` (below) or ``2.0``
        (above).
    """
    f0 = np.asarray(f0_hz, np.float64)
    out = []
    for a, b in steady_spans(hz_to_cents(np.maximum(f0, 1e-3))):
        if b - a < DOUBT_MIN_FRAMES or np.mean(confidence[a:b]) < CONFIDENT:
            continue
        if (np.all(divisors[a:b] == 1) and np.min(f0[a:b]) / 2.0 >= min_hz
                and DOUBT_LOGODDS < np.mean(logodds[a:b]) <= DOUBT_MAX_LOGODDS):
            out.append((int(a), int(b), 0.5))
        elif np.all(divisors[a:b] == DOUBT_DIVISOR):
            out.append((int(a), int(b), 2.0))
    return out


def doubt_samples(stretches: list[tuple[int, int, float]]) -> np.ndarray:
    """The frames the second opinion reads, at :data:`DOUBT_POSITIONS` of each stretch:
    [len(stretches), len(DOUBT_POSITIONS)] frame indices."""
    return np.array([np.round(a + DOUBT_POSITIONS * (b - 1 - a)) for a, b, _ in stretches],
                    np.int64).reshape(len(stretches), len(DOUBT_POSITIONS))


def doubt_votes(f0_hz: np.ndarray, stretches: list[tuple[int, int, float]],
                samples: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """Whether the second model, at each sampled frame, holds more activation at the octave
    in doubt (``f`` times the stretch's factor) than near ``f``.

    Args:
        f0_hz: [n_frames]; stretches: from :func:`octave_doubts`; samples: [len(stretches),
            k] frames of each (from :func:`doubt_samples`, or some of its columns);
            activations: [samples.size, 360] the second model's, in the order of
            ``samples.ravel()``.

    Returns:
        [len(stretches), k] bool.
    """
    at = np.asarray(f0_hz, np.float64)[samples.ravel()]
    factor = np.repeat([x for _, _, x in stretches], samples.shape[1])
    near = _activation_near(activations, np.stack([at, at * factor], axis=1))
    return (near[:, 1] > near[:, 0]).reshape(samples.shape)


def settle_doubts(f0_hz: np.ndarray, stretches: list[tuple[int, int, float]],
                  votes: np.ndarray) -> np.ndarray:
    """Each stretch moved to the octave in doubt (times its factor) where most of its votes
    (:func:`doubt_votes`, one per sampled frame) say so.

    Args:
        f0_hz: [n_frames]; stretches: from :func:`octave_doubts`; votes:
        [len(stretches), len(DOUBT_POSITIONS)] bool.

    Returns:
        [n_frames] float64, a copy.
    """
    f0 = np.asarray(f0_hz, np.float64).copy()
    for (a, b, x), row in zip(stretches, np.asarray(votes, bool)):
        if 2 * int(row.sum()) > len(row):
            f0[a:b] *= x
    return f0
