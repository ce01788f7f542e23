"""The two signals of tone matching, checked: arrays or (for the reference) a file, any
rate, any channel count, as ``[n_channels, n_samples]`` float32.

A bad signal is one line (:class:`~ddsp_synth.errors.InputError`, or
:class:`~ddsp_synth.audio_io.AudioError` for a file): empty, too short, not finite, silent,
or a file that cannot be read.
"""

from __future__ import annotations

import os
import re

import numpy as np
import soundfile as sf

from ..audio_io import MAX_PEAK, AudioError, check_regular_file, check_sample_rate
from ..errors import InputError
from ..dsp.loudness import ABSOLUTE_GATE_LUFS, integrated_loudness

# A 2-D array with more channels than this on its shorter axis is not audio
MAX_CHANNELS = 64


def as_channels(audio, what: str) -> np.ndarray:
    """``audio`` (numpy or torch; [n_samples], [n_channels, n_samples] or [n_samples,
    n_channels]: the shorter axis holds the channels) as float32 [n_channels, n_samples]."""
    if hasattr(audio, "detach"):  # a torch tensor
        audio = audio.detach().cpu().numpy()
    try:
        audio = np.asarray(audio, np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be an array of samples, got {type(audio).__name__}") \
            from None
    if audio.ndim == 1:
        audio = audio[None]
    elif audio.ndim == 2:
        if audio.shape[0] > audio.shape[1]:
            audio = audio.T
        if audio.shape[0] > MAX_CHANNELS:
            raise InputError(f"{what}: expected [n_channels, n_samples] audio, got shape "
                             f"{audio.shape}")
    else:
        raise InputError(f"{what}: expected mono [n_samples] or [n_channels, n_samples] audio, "
                         f"got shape {audio.shape}")
    return np.ascontiguousarray(audio)


def check_signal(audio: np.ndarray, sample_rate, what: str, min_seconds: float) -> int:
    """Checks ``audio`` [n_channels, n_samples]; returns its rate as an int. InputError
    (one line) when it is empty, shorter than ``min_seconds``, not finite, far above full
    scale, or silent (no 400 ms block above BS.1770's -70 LUFS gate)."""
    rate = check_sample_rate(sample_rate, f"{what}'s sample rate")
    if audio.size == 0:
        raise InputError(f"{what} is empty")
    seconds = audio.shape[1] / rate
    if seconds < min_seconds:
        raise InputError(f"{what} is too short: {seconds:.2f} s, tone matching needs at "
                         f"least {min_seconds:g} s")
    if not np.all(np.isfinite(audio)):
        raise InputError(f"{what} contains NaN or infinite samples")
    peak = float(np.abs(audio).max())
    if peak > MAX_PEAK:
        raise InputError(f"{what}'s samples reach {peak:.3g}, far above full scale")
    if integrated_loudness(audio, rate, channels="mean") == -np.inf:
        raise InputError(f"{what} is silent (nothing above {ABSOLUTE_GATE_LUFS:g} LUFS)")
    return rate


def read_audio_file(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A whole file at its own rate: ([n_channels, n_samples] float32, rate). AudioError
    (one line) when it is missing, not a regular file or not readable audio."""
    path = check_regular_file(path)
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:  # libsndfile's errors have several types
        reason = re.sub(r"^Error opening .*?: ", "", str(err).splitlines()[0] if str(err)
                        else type(err).__name__).strip().rstrip(".")
        raise AudioError(f"{path}: unreadable audio ({reason}); formats: wav, flac, ogg, "
                         "mp3, aiff") from None
    if len(data) == 0:
        raise AudioError(f"{path}: empty file (no samples)")
    return np.ascontiguousarray(data.T), int(rate)


def load_signal(audio, sample_rate, what: str, min_seconds: float
                ) -> tuple[np.ndarray, int]:
    """An array with its rate, or a file path (``sample_rate`` None: the file's own; else
    it must agree), checked: ([n_channels, n_samples] float32, rate)."""
    if isinstance(audio, (str, os.PathLike)):
        audio, file_rate = read_audio_file(audio)
        if sample_rate is not None and check_sample_rate(sample_rate) != file_rate:
            raise InputError(f"{what}: the file is at {file_rate} Hz, not the {sample_rate} Hz "
                             "given (leave the rate out for a file)")
        sample_rate = file_rate
    elif sample_rate is None:
        raise InputError(f"{what}: an array needs its sample rate")
    else:
        audio = as_channels(audio, what)
    return audio, check_signal(audio, sample_rate, what, min_seconds)
