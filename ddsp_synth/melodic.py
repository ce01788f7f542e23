"""Is the input one melody? The share of its sound at the harmonics of the tracked pitch.

A monophonic instrument or voice puts nearly all of its energy at whole multiples of its f0;
a chord, a band or a duet adds partials between them, and speech adds consonants (noise) and
fast glides. The share is measured per sounding frame from a magnitude spectrogram and its
median is compared with a threshold chosen on solo recordings, mixes and speech (see
``MIN_HARMONIC_SHARE``). CREPE's confidence alone does not separate them: a cello reads lower
than a violin-and-cello duet.
"""

from __future__ import annotations

import numpy as np

N_FFT = 2048
# frames this far below the loud level (95th percentile) are not judged
SOUNDING_DB = 30.0
# a frame's f0 counts when CREPE is at least this confident; other sounding frames count as 0
MIN_CONFIDENCE = 0.3
# a bin belongs to harmonic k when it lies within this share of f0 (or two bins) of k * f0
HARMONIC_TOLERANCE = 0.04
MAX_HZ = 6000.0
# Medians measured with tiny CREPE at 16 kHz: solo instruments 0.87-1.00 (10 s windows of
# the five shared recordings: lowest cello 0.87, violin 0.92, trumpet 0.93; held-out renders
# of six other instruments and voice 0.95-0.99; the singing and clarinet examples 0.99,
# 0.95); speech (espeak-ng, two voices) 0.72, 0.77; mixes of the shared recordings: three
# and five instruments 0.70, 0.42, duets 0.65 (violin-flute), 0.81 (violin-cello), 0.87
# (flute-cello), 0.94 (trumpet-alto sax). So speech, bands and most ensembles get the note;
# some duets, where one voice dominates, do not.
MIN_HARMONIC_SHARE = 0.82


def harmonic_share(audio: np.ndarray, f0_hz: np.ndarray, confidence: np.ndarray,
                   loudness_db: np.ndarray, sample_rate: int, hop: int) -> float:
    """Median over the sounding frames of the share of spectral energy (0.8 f0 to 6 kHz)
    within ``HARMONIC_TOLERANCE`` of a multiple of the frame's f0; 1 when nothing sounds.

    Args:
        audio: [n_samples] at ``sample_rate``.
        f0_hz, confidence, loudness_db: [n_frames] features on the hop grid of ``hop``.
    """
    import torch

    from .dsp.spectral import magnitude_spectrogram

    audio = np.asarray(audio, np.float32)
    if len(audio) < N_FFT:  # a clip shorter than one window: zeros after it
        audio = np.pad(audio, (0, N_FFT - len(audio)))
    n_frames = 1 + len(audio) // hop
    n = min(n_frames, len(f0_hz), len(confidence), len(loudness_db))
    loud = np.asarray(loudness_db[:n], np.float64)
    sounding = loud > np.percentile(loud, 95) - SOUNDING_DB if n else np.zeros(0, bool)
    if not sounding.any():
        return 1.0
    freqs = np.fft.rfftfreq(N_FFT, 1.0 / sample_rate)
    n_bins = int(np.searchsorted(freqs, MAX_HZ))  # only bins below MAX_HZ count
    with torch.inference_mode():
        mag = magnitude_spectrogram(torch.from_numpy(audio)[None], N_FFT, hop)[0]
        # [bins < MAX_HZ, sounding frames] power
        spec = mag[:n_bins, :n][:, torch.from_numpy(sounding)].square().double().numpy()
    f0 = np.maximum(np.asarray(f0_hz[:n], np.float64)[sounding], 1.0)  # [m]
    freqs = freqs[:n_bins, None]  # [bins, 1]
    k = freqs / f0
    width = np.maximum(2.0 * sample_rate / N_FFT, HARMONIC_TOLERANCE * f0)
    near = (np.abs(k - np.round(k)) * f0 < width) & (np.round(k) >= 1)
    band = freqs > 0.8 * f0
    share = (spec * (band & near)).sum(0) / np.maximum((spec * band).sum(0), 1e-12)
    share[np.asarray(confidence[:n])[sounding] < MIN_CONFIDENCE] = 0.0
    return float(np.median(share))


def melody_warning(share: float) -> str | None:
    """A note for people when the input does not look like one melody, else None."""
    if share >= MIN_HARMONIC_SHARE:
        return None
    return (f"only {share:.0%} of the input's sound lies at the harmonics of one pitch: "
            "speech, or several voices or instruments at once? ddsp_synth follows one melody, "
            "so the result will not sound musical")
