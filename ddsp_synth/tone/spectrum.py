"""Long-term average spectra in 1/3-octave bands.

The bands are IEC 61260's base-10 third octaves: centre ``1000 * 10^(k / 10)`` Hz, edges a
twentieth of a decade either side. A long-term average spectrum (LTAS) is the power of a
signal's Welch spectrum (Hann window, 50 % overlap, about 1.5 Hz per bin so that the 25 Hz
band, 6 Hz wide, still holds several bins) summed over each band, in dB. Channels are
averaged in power (a stereo file's channels are not summed first, which would cancel
whatever is out of phase between them).

The fine spectrum is kept as well: an equaliser's band powers are then exactly
``sum over the band's bins of P(f) |H(f)|^2`` (see :mod:`ddsp_synth.tone.eq_fit`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.signal

# Lowest band centre (the 25 Hz band: 22.4 to 28.2 Hz)
LOWEST_BAND_HZ = 25.0
# Bands stop below this fraction of the lower sample rate: the EQ's frequencies stop there
# too (ddsp_synth.stages.twins.MAX_CUTOFF_FRACTION)
TOP_FRACTION = 0.45
FINE_RESOLUTION_HZ = 1.5
# Band powers are floored this far below the signal's total power (keeps dB finite)
BAND_FLOOR_DB = -120.0


def third_octave_bands(top_hz: float, lowest_hz: float = LOWEST_BAND_HZ) -> np.ndarray:
    """[n_bands, 3] (lower edge, centre, upper edge) in Hz of the base-10 1/3-octave bands
    from the one centred at ``lowest_hz`` to the last whose upper edge is at most
    ``top_hz``."""
    k_low = math.ceil(10.0 * math.log10(lowest_hz / 1000.0) - 1e-9)
    k_high = math.floor(10.0 * math.log10(top_hz / 1000.0) - 0.5 + 1e-9)
    centres = 1000.0 * 10.0 ** (np.arange(k_low, k_high + 1) / 10.0)
    return np.stack([centres * 10 ** -0.05, centres, centres * 10 ** 0.05], axis=1)


def bands_for_rates(*sample_rates: int) -> np.ndarray:
    """The bands that every signal at these rates can hold, and that the EQ can reach."""
    return third_octave_bands(TOP_FRACTION * min(sample_rates))


def fine_fft_size(sample_rate: int) -> int:
    """Welch FFT size for about :data:`FINE_RESOLUTION_HZ` per bin (a power of two)."""
    return 1 << math.ceil(math.log2(sample_rate / FINE_RESOLUTION_HZ))


@dataclass(frozen=True)
class Spectrum:
    """A signal's long-term average power spectrum.

    Attributes:
        freqs_hz: [n_bins] bin frequencies.
        power: [n_bins] power per bin (Welch's spectrum, channels averaged).
        sample_rate: Hz.
    """

    freqs_hz: np.ndarray
    power: np.ndarray
    sample_rate: int

    def band_matrix(self, bands: np.ndarray) -> np.ndarray:
        """[n_bands, n_bins] 0/1: which bins each band sums (``lower <= f < upper``)."""
        f = self.freqs_hz[None, :]
        return ((f >= bands[:, :1]) & (f < bands[:, 2:])).astype(np.float64)

    def band_db(self, bands: np.ndarray) -> np.ndarray:
        """[n_bands] band levels in dB (power summed over each band's bins)."""
        floor = self.power.sum() * 10.0 ** (BAND_FLOOR_DB / 10.0)
        return 10.0 * np.log10(self.band_matrix(bands) @ self.power + floor + 1e-300)


def long_term_spectrum(audio: np.ndarray, sample_rate: int) -> Spectrum:
    """The Welch power spectrum of ``audio`` [n_channels, n_samples] (channels averaged).

    Signals shorter than the FFT are analysed in one zero-padded segment.
    """
    audio = np.asarray(audio, np.float64)
    n_fft = fine_fft_size(sample_rate)
    segment = min(n_fft, audio.shape[-1])
    freqs, power = scipy.signal.welch(audio, fs=sample_rate, window="hann", nperseg=segment,
                                      noverlap=segment // 2, nfft=n_fft, detrend=False,
                                      scaling="spectrum", axis=-1)
    return Spectrum(freqs, power.mean(axis=0), sample_rate)


def ltas_db(audio: np.ndarray, sample_rate: int, bands: np.ndarray) -> np.ndarray:
    """[n_bands] 1/3-octave levels (dB) of ``audio`` [n_channels, n_samples]."""
    return long_term_spectrum(audio, sample_rate).band_db(bands)


def shape_error_db(levels_db: np.ndarray, reference_db: np.ndarray) -> float:
    """Distance of two spectra's shapes: the RMS over bands, in dB, of their difference
    after removing its mean (the overall level is loudness's business, not the EQ's)."""
    diff = np.asarray(levels_db) - np.asarray(reference_db)
    return float(np.sqrt(np.mean(np.square(diff - diff.mean()))))
