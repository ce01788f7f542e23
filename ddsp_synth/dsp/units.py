"""Unit conversions (Hz, MIDI notes, cents) and DDSP's scaled sigmoid for magnitudes.

numpy arrays and torch tensors alike, unless a function says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .checks import check_tensor

TWO_PI = 2.0 * math.pi


MIDI_0_HZ = 8.175798915643707  # MIDI note 0; lower frequencies map to it


CENTS_REF_HZ = 10.0  # CREPE's cents scale is relative to 10 Hz


def hz_to_midi(f_hz):
    """MIDI note number (69 = A4 = 440 Hz) of a frequency; 0 Hz and anything below MIDI 0
    (8.18 Hz) map to 0. numpy arrays and torch tensors alike."""
    if isinstance(f_hz, torch.Tensor):
        return 69.0 + 12.0 * torch.log2(f_hz.clamp_min(MIDI_0_HZ) / 440.0)
    return 69.0 + 12.0 * np.log2(np.maximum(np.asarray(f_hz, np.float64), MIDI_0_HZ) / 440.0)


def midi_to_hz(midi):
    """Frequency in Hz of a (fractional) MIDI note number; numpy or torch."""
    if not isinstance(midi, torch.Tensor):
        midi = np.asarray(midi, np.float64)
    return 440.0 * 2.0 ** ((midi - 69.0) / 12.0)


def hz_to_cents(f_hz):
    """Cents above 10 Hz (CREPE's pitch scale); frequencies are floored at 1e-6 Hz."""
    if isinstance(f_hz, torch.Tensor):
        return 1200.0 * torch.log2(f_hz.clamp_min(1e-6) / CENTS_REF_HZ)
    return 1200.0 * np.log2(np.maximum(f_hz, 1e-6) / CENTS_REF_HZ)


def cents_to_hz(cents):
    """Inverse of :func:`hz_to_cents`."""
    return CENTS_REF_HZ * 2.0 ** (cents / 1200.0)


def exp_sigmoid(
    x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0, threshold: float = 1e-7
) -> torch.Tensor:
    """DDSP's scaled sigmoid for amplitudes and magnitudes.

    ``max_value * sigmoid(x) ** ln(exponent) + threshold``: positive, saturating at
    ``max_value``, with a gradient that does not vanish for small outputs the way a plain
    sigmoid's does. Any shape.
    """
    check_tensor(x, "x")
    return max_value * torch.sigmoid(x) ** math.log(exponent) + threshold
