"""Loudness after ITU-R BS.1770-4 at any sample rate, the one home of it in the package:
K-weighting, 400 ms block loudness, gated integrated loudness (LUFS), and the spread of the
block loudness (a momentary loudness range, in LU).

Channels: these functions take ``[n_channels, n_samples]`` (or ``[n_samples]``). By default
(``channels="sum"``) the channels' mean squares are summed, as BS.1770 does for left and
right: a full-scale 997 Hz sine in one channel reads -3.01 LUFS, the same sine in two reads
0.0. ``channels="mean"`` averages them instead: for a mono signal nothing changes; for a
stereo file the value is BS.1770's minus 3.01 dB, which is what a mono signal played on both
loudspeakers needs in order to sound as loud. Tone matching compares a mono instrument with
recordings of any channel count, so it measures both that way; controllers and their
experiment report the standard's figure.

The K-weighting filters are designed from their analog prototypes for the given rate (as
libebur128 does); at 48 kHz they give the coefficients printed in BS.1770-4, which
``tests/test_tone.py`` checks.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.signal

# BS.1770-4 constants
BLOCK_S = 0.4
BLOCK_STEP_S = 0.1  # 75 % overlap
ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LOUDNESS_OFFSET_DB = -0.691
# EBU Tech 3342 gates the loudness range 20 LU below the loudness of the blocks above the
# absolute gate
RANGE_RELATIVE_GATE_LU = -20.0

# The pre-filter (a high shelf, about +4 dB above 2 kHz: the head's acoustic effect) and the
# RLB high-pass (about -3 dB at 38 Hz), as analog prototypes (libebur128's parameters)
_SHELF_HZ, _SHELF_GAIN_DB, _SHELF_Q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
_SHELF_VB_EXPONENT = 0.4996667741545416
_HIGHPASS_HZ, _HIGHPASS_Q = 38.13547087602444, 0.5003270373238773


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """The K-weighting filter for ``sample_rate`` as two second-order sections [2, 6]
    (scipy's ``sos`` layout: ``b0, b1, b2, a0, a1, a2``), float64."""
    k = math.tan(math.pi * _SHELF_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh ** _SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [(vh + vb * k / _SHELF_Q + k * k) / a0, 2.0 * (k * k - vh) / a0,
             (vh - vb * k / _SHELF_Q + k * k) / a0,
             1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _SHELF_Q + k * k) / a0]
    k = math.tan(math.pi * _HIGHPASS_HZ / sample_rate)
    d = 1.0 + k / _HIGHPASS_Q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / d, (1.0 - k / _HIGHPASS_Q + k * k) / d]
    return np.array([shelf, highpass])


CHANNELS = ("sum", "mean")


def weighted_power(audio: np.ndarray, sample_rate: int, channels: str = "sum") -> np.ndarray:
    """[n_samples] the K-weighted signal squared, channels summed or averaged (see the
    module's docstring; ``audio``: [n_channels, n_samples] or [n_samples])."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
    weighted = scipy.signal.sosfilt(k_weighting_sos(sample_rate),
                                    np.atleast_2d(np.asarray(audio, np.float64)), axis=-1)
    power = np.square(weighted)
    return power.sum(axis=0) if channels == "sum" else power.mean(axis=0)


def blocks_of(power: np.ndarray, sample_rate: int, block_s: float = BLOCK_S,
              step_s: float = BLOCK_STEP_S) -> np.ndarray:
    """[n_blocks] mean of ``power`` [n_samples] over every whole block (BS.1770: 0.4 s
    blocks every 0.1 s); none when the signal is shorter than one block."""
    block, step = int(round(block_s * sample_rate)), int(round(step_s * sample_rate))
    if len(power) < block:
        return np.zeros(0)
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    starts = np.arange(0, len(power) - block + 1, step)
    return (cumulative[starts + block] - cumulative[starts]) / block


def block_power(audio: np.ndarray, sample_rate: int, channels: str = "sum") -> np.ndarray:
    """[n_blocks] mean square of the K-weighted signal in each 400 ms block of ``audio``
    [n_channels, n_samples] (channels summed or averaged)."""
    return blocks_of(weighted_power(audio, sample_rate, channels), sample_rate)


def power_to_lufs(power):
    """Mean square of the K-weighted signal -> LUFS (-inf for zero)."""
    with np.errstate(divide="ignore"):
        return LOUDNESS_OFFSET_DB + 10.0 * np.log10(power)


def integrated_loudness(audio: np.ndarray, sample_rate: int, channels: str = "sum") -> float:
    """Gated integrated loudness in LUFS (BS.1770-4; ``channels`` as in the module's
    docstring); -inf when no block is above the absolute gate (silence, or shorter than
    400 ms)."""
    return gated_loudness(block_power(audio, sample_rate, channels))


def gated_loudness(power: np.ndarray) -> float:
    """BS.1770's gated loudness (LUFS) of block powers [n_blocks]; -inf when no block is
    above the absolute gate."""
    power = power[power_to_lufs(power) > ABSOLUTE_GATE_LUFS]
    if len(power) == 0:
        return -math.inf
    gate = power_to_lufs(power.mean()) + RELATIVE_GATE_LU
    return float(power_to_lufs(power[power_to_lufs(power) > gate].mean()))


def active_block_loudness(audio: np.ndarray, sample_rate: int,
                          relative_gate_lu: float = RANGE_RELATIVE_GATE_LU,
                          channels: str = "sum") -> np.ndarray:
    """Loudness (LUFS) of the 400 ms blocks of ``audio`` [n_channels, n_samples] that are
    above the absolute gate and within ``relative_gate_lu`` of the loudness of those
    blocks: the sounding part of a signal, as the loudness range (EBU Tech 3342) gates it.
    [n_active_blocks], possibly empty."""
    return active_blocks(block_power(audio, sample_rate, channels), relative_gate_lu)


def active_blocks(power: np.ndarray, relative_gate_lu: float = RANGE_RELATIVE_GATE_LU
                  ) -> np.ndarray:
    """The loudness (LUFS) of the blocks of powers [n_blocks] that pass both gates."""
    loud = power_to_lufs(power)
    keep = loud > ABSOLUTE_GATE_LUFS
    if not keep.any():
        return loud[keep]
    gate = power_to_lufs(power[keep].mean()) + relative_gate_lu
    return loud[keep & (loud > gate)]


def loudness_spread(block_loudness: np.ndarray, low_pct: float = 10.0,
                    high_pct: float = 95.0) -> float:
    """The loudness range of active blocks: the ``high_pct`` minus the ``low_pct``
    percentile, in LU (EBU Tech 3342's percentiles, on 400 ms blocks rather than 3 s ones,
    so that a clip of a few seconds has one). 0 for fewer than two blocks."""
    if len(block_loudness) < 2:
        return 0.0
    low, high = np.percentile(block_loudness, [low_pct, high_pct])
    return float(high - low)
