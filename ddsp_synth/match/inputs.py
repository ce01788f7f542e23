"""The pair ``match`` works on: checked and aligned.

:func:`align_pair` checks two signals at one sample rate and lines the target up with the
dry signal by cross-correlation (offsets up to +-50 ms; the device's own filtering is modelled
first, so that its phase is not mistaken for an offset); :func:`load_pair` reads two files
first (any format and rate: the target is resampled to the dry file's rate, and the notes
say so). Where the loss listens is :mod:`.windows`' business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.signal
import torch

from ..audio_io import (AudioError, check_regular_file, check_sample_rate, load_audio,
                        resample_audio)
from ..dsp.convolution import minimum_phase
from .config import SILENCE_PEAK, MatchConfig, MatchError


@dataclass
class MatchInputs:
    """Aligned dry and target at one sample rate, and notes on what was done to them.

    Attributes:
        dry: the whole dry signal (what the matched output is rendered from).
        target: the whole target, at the dry signal's rate.
        dry_common, target_common: the parts they share (what the search listens to; where
            the target was resampled, ``dry_common`` went through the same round trip:
            :func:`same_band`).
        start: where ``dry_common`` starts in ``dry``.
        lag: ``target[n + lag]`` lines up with ``dry[n]``.
        notes: one line per thing done to the inputs (resampling, alignment).
        target_rate: the target file's own rate where it was resampled to the dry file's
            (None: the same rate): the report compares what resampling leaves of the output
            (:func:`same_band`).
        dry_heard: the whole dry signal through that round trip (None: the same rate).
        noise_rms: the target's noise floor (RMS) where the dry signal is digitally silent
            (16-bit dither, a noisy converter), or None: spectral detail under it is not
            compared (:func:`target_noise_floor`).
    """

    dry: np.ndarray
    target: np.ndarray
    dry_common: np.ndarray
    target_common: np.ndarray
    start: int
    lag: int
    sample_rate: int
    notes: list = field(default_factory=list)
    target_rate: int | None = None
    dry_heard: np.ndarray | None = None
    noise_rms: float | None = None


SAME_SIGNAL_TOLERANCE = 1e-4  # of the peak, -80 dB: 16-bit rounding of the same signal
SILENT_FRAME_PEAK = 2e-5  # a 10 ms frame of the dry signal under 1 LSB of 16 bits: digital silence
NOISE_FLOOR_MAX_RMS = 1e-3  # -60 dBFS: louder than this is sound, not a noise floor
NOISE_FLOOR_SPREAD = 4.0  # 12 dB between its quiet and loud silent frames: a tail, not a floor


def target_noise_floor(dry: np.ndarray, target: np.ndarray, sample_rate: int) -> float | None:
    """The target's noise floor (RMS) in the frames where the aligned ``dry`` is digitally
    silent: its 10th percentile of 10 ms frame RMS there, or None where the dry signal has
    fewer than 10 such frames, the target is silent there too (the same figures as without
    a floor), or its level there spreads over more than 12 dB (a device's decaying tail,
    such as a reverb's, is sound to match, not a floor)."""
    frame = max(1, sample_rate // 100)
    n = (min(len(dry), len(target)) // frame) * frame
    d, t = dry[:n].reshape(-1, frame), target[:n].reshape(-1, frame).astype(np.float64)
    silent = np.abs(d).max(1) < SILENT_FRAME_PEAK
    if silent.sum() < 10:
        return None
    levels = np.sqrt(np.mean(t[silent] ** 2, 1))
    rms, high = (float(v) for v in np.percentile(levels, [10, 90]))
    if high > NOISE_FLOOR_SPREAD * rms:  # a device's decaying tail, not a steady floor
        return None
    return rms if 1e-7 < rms < NOISE_FLOOR_MAX_RMS else None


def check_signal(audio: np.ndarray, what: str) -> np.ndarray:
    """float32 mono audio, or a one-line error naming ``what`` (empty, non-finite, silent,
    or with nothing but a constant)."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 1 or len(audio) == 0:
        raise AudioError(f"{what}: empty audio" if audio.size == 0 else
                         f"{what}: expected mono audio [n_samples], got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{what}: audio contains NaN or infinite samples")
    if float(np.abs(audio).max()) < SILENCE_PEAK:
        raise AudioError(f"{what}: audio is silent (peak below -80 dBFS)")
    if float(np.ptp(audio)) < SILENCE_PEAK:
        raise AudioError(f"{what}: audio is a constant (no signal to compare)")
    return audio


#: device_colour reads the magnitude response over frames of this length (seconds) and
#: keeps it within +-COLOUR_RANGE_DB of its median
COLOUR_FRAME_S = 0.064
COLOUR_RANGE_DB = 60.0
# Below this normalised cross-correlation (at its best lag), a target out of the offset range is
# taken for another recording rather than an offset copy (a device keeps far more: 0.5-1).
RELATED_CORRELATION = 0.25


def device_colour(dry: np.ndarray, target: np.ndarray, sample_rate: int) -> np.ndarray:
    """A filter that colours like the device between ``dry`` and ``target`` and delays
    nothing of its own: the minimum-phase response whose magnitude is ``sqrt(S_target /
    S_dry)`` (Welch power spectra over frames of :data:`COLOUR_FRAME_S`).

    Args:
        dry, target: [n_samples] the parts to compare (an offset between them does not
            change the result).

    Returns:
        [n_taps] float64 impulse response (n_taps: the frame length, a power of two).
    """
    n_fft = 1 << int(np.ceil(np.log2(COLOUR_FRAME_S * sample_rate)))
    n_fft = min(n_fft, 1 << int(np.log2(max(16, min(len(dry), len(target))))))
    _, s_dry = scipy.signal.welch(np.asarray(dry, np.float64), nperseg=n_fft)
    _, s_target = scipy.signal.welch(np.asarray(target, np.float64), nperseg=n_fft)
    db = 10.0 * np.log10((s_target + 1e-30) / (s_dry + 1e-12 * s_dry.max() + 1e-30))
    centre = float(np.median(db))
    db = np.clip(db, centre - COLOUR_RANGE_DB, centre + COLOUR_RANGE_DB)
    zero_phase = np.roll(np.fft.irfft(10.0 ** (db / 20.0), n_fft), n_fft // 2)
    return minimum_phase(torch.from_numpy(zero_phase)[None]).numpy()[0]


def align(dry: np.ndarray, target: np.ndarray, sample_rate: int, max_offset_ms: float,
          search_ms: float = 1000.0) -> int:
    """Lag (samples) such that ``target[n + lag]`` lines up with ``dry[n]``.

    The dry signal (its first minute) goes through :func:`device_colour` first, so that the
    phase of the device's own filtering (an EQ's, a low-pass') does not move the peak: a
    device's delay is its own, and only an offset between the files is taken out. The
    magnitude of the cross-correlation with the target is searched over +-``search_ms``;
    its peak must lie within +-``max_offset_ms``, else MatchError (a larger offset needs
    trimming by hand).
    """
    n = min(len(dry), len(target), 60 * sample_rate)
    max_lag = int(search_ms * sample_rate / 1000)
    colour = device_colour(dry[:n], target[:n], sample_rate)
    a = scipy.signal.fftconvolve(dry[:n].astype(np.float64), colour)[:n]
    b = target[: n + max_lag].astype(np.float64)
    # long enough that no lag in +-max_lag wraps around, even for a dry file under max_lag
    size = 1 << (len(a) + len(b) + max_lag).bit_length()
    xc = np.fft.irfft(np.conj(np.fft.rfft(a, size)) * np.fft.rfft(b, size), size)
    lags = np.arange(-max_lag, max_lag + 1)
    vals = np.abs(xc[lags % size])
    best = int(lags[np.argmax(vals)])
    limit = int(round(max_offset_ms * sample_rate / 1000))
    if abs(best) > limit:
        inside = vals[np.abs(lags) <= limit].max()
        if vals.max() > 1.2 * inside:
            shift = 1000 * best / sample_rate
            corr = vals.max() / max(float(np.linalg.norm(a) * np.linalg.norm(b[:n])), 1e-30)
            if corr < RELATED_CORRELATION:
                raise MatchError(f"target does not look like dry through a device: the two "
                                 f"correlate at most {corr:.2f}, best at {shift:+.0f} ms; are "
                                 "they the same recording?")
            raise MatchError(f"target is offset from dry by {shift:+.0f} ms (more than "
                             f"+-{max_offset_ms:g} ms): trim one of the files")
        best = int(lags[np.abs(lags) <= limit][np.argmax(vals[np.abs(lags) <= limit])])
    return best


def overlap(dry: np.ndarray, target: np.ndarray, lag: int) -> tuple[int, int, int]:
    """(start in dry, start in target, length) of the part the two share at ``lag``."""
    d0, t0 = (0, lag) if lag >= 0 else (-lag, 0)
    return d0, t0, min(len(dry) - d0, len(target) - t0)


def offset_note(lag: int, sample_rate: int) -> str:
    return (f"target aligned to dry: offset {1000 * lag / sample_rate:+.1f} ms ({lag:+d} "
            "samples)")


def align_pair(dry: np.ndarray, target: np.ndarray, sample_rate: int,
               config: MatchConfig = MatchConfig(), names=("dry", "target"),
               notes: list | None = None) -> MatchInputs:
    """Check two signals at one rate and align them (see the module docstring)."""
    sample_rate = check_sample_rate(sample_rate)
    dry, target = (a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else a
                   for a in (dry, target))
    min_samples = int(config.min_seconds * sample_rate)
    for audio, name in zip((dry, target), names):  # length first: one sample is "constant"
        if np.ndim(audio) == 1 and 0 < np.size(audio) < min_samples:
            raise AudioError(f"{name}: {np.size(audio)} samples ({np.size(audio) / sample_rate:.3f}"
                             f" s) is too short; a match needs at least {config.min_seconds:g} s")
    dry, target = check_signal(dry, names[0]), check_signal(target, names[1])
    notes = list(notes or [])
    lag = align(dry, target, sample_rate, config.max_offset_ms)
    if lag:
        notes.append(offset_note(lag, sample_rate))
    d0, t0, n = overlap(dry, target, lag)
    if n < min_samples:
        raise MatchError(f"dry and target overlap by {max(n, 0) / sample_rate:.2f} s after "
                         f"alignment; need at least {config.min_seconds:g} s")
    if len(dry) != len(target):
        notes.append(f"lengths differ (dry {len(dry) / sample_rate:.2f} s, target "
                     f"{len(target) / sample_rate:.2f} s): compared on the common "
                     f"{n / sample_rate:.2f} s")
    dry_common, target_common = dry[d0 : d0 + n], target[t0 : t0 + n]
    if float(np.abs(target_common).max()) < SILENCE_PEAK:
        raise AudioError(f"{names[1]}: silent where it overlaps the dry signal")
    if float(np.abs(dry_common - target_common).max()) <= SAME_SIGNAL_TOLERANCE * float(
            np.abs(target_common).max()):
        raise MatchError(f"{names[1]}: the same signal as {names[0]} (to within "
                         f"{20 * np.log10(SAME_SIGNAL_TOLERANCE):.0f} dB): there is nothing "
                         "to match")
    noise_rms = target_noise_floor(dry_common, target_common, sample_rate)
    if noise_rms is not None:
        notes.append(f"the target carries a noise floor ({20 * np.log10(noise_rms):.0f} dBFS, "
                     "dither or hiss) where the dry signal is digitally silent: spectral "
                     "detail under it is not compared")
    return MatchInputs(dry, target, dry_common, target_common, d0, lag, sample_rate, notes,
                       noise_rms=noise_rms)


def _native_rate(path: Path) -> int:
    import soundfile as sf

    check_regular_file(path)
    try:
        return int(sf.info(str(path)).samplerate)
    except Exception as err:
        text = str(err).strip().splitlines()
        reason = text[0] if text else type(err).__name__
        # libsndfile repeats the path in its message; say it once.
        reason = reason.replace(f"Error opening {str(path)!r}: ", "")
        raise AudioError(f"{path}: unreadable audio ({reason})") from None


def load_pair(dry_path, target_path, config: MatchConfig = MatchConfig()) -> MatchInputs:
    """Read DRY and TARGET (the target at the dry file's rate, said in the notes), then
    :func:`align_pair`."""
    dry_path, target_path = Path(dry_path), Path(target_path)
    sr = _native_rate(dry_path)
    sr_target = _native_rate(target_path)
    notes = []
    dry = load_audio(dry_path, sr)
    if sr_target == sr:
        return align_pair(dry, load_audio(target_path, sr), sr, config,
                          (str(dry_path), str(target_path)), notes)
    notes.append(f"target resampled from {sr_target} Hz to the dry file's {sr} Hz (the search "
                 "and the distances hear the dry file and the output through the same round "
                 "trip, so both lose the same top band)")
    heard = same_band(dry, sr, sr_target)
    inputs = align_pair(heard, load_audio(target_path, sr), sr, config,
                        (str(dry_path), str(target_path)), notes)
    # the search listens to the round trip (dry_common); the output is the dry file's own
    inputs.dry, inputs.target_rate, inputs.dry_heard = dry, sr_target, heard
    return inputs


def same_band(dry: np.ndarray, sample_rate: int, other_rate: int) -> np.ndarray:
    """``dry`` [n] through a resampling round trip to ``other_rate`` and back, [n]: what
    resampling leaves of a target made at ``other_rate`` (its anti-aliasing filters take
    the top of the band away). Compared with the dry file as it was, a matched target lost
    the same band the device did not touch, and the log-spectral distance counted it as a
    mismatch: a pair whose target was upsampled from 16 to 48 kHz read rel_spec 0.24 with
    the right settings (0.09 through the round trip; 0.03 with both files at 16 kHz)."""
    back = resample_audio(resample_audio(dry, sample_rate, other_rate), other_rate,
                          sample_rate)
    out = np.zeros(len(dry), np.float32)
    out[: min(len(dry), len(back))] = back[: len(dry)]
    return out
