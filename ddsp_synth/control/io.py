"""Controllers on files: any format, rate and channel count in; the same rate and channels
out (WAV or FLAC, written atomically, never over a file without ``force``, never into an
input or the controller's folder), and the settings as a preset file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ..audio_io import (AUDIO_OUTPUT_SUFFIXES, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioError,
                        _unreadable, atomic_write_bytes, atomic_write_text, check_audio_output,
                        check_input_signal, check_regular_file, check_writable, limit_peak)
from ..errors import InputError
from ..rack import sources_relative_to
from .apply import Applied, apply_controller
from .files import controller_path, load_controller

MAX_SECONDS = 24 * 3600.0


def read_channels(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(audio [channels, n_samples] float32, sample rate) of a file; one-line AudioError
    for anything unusable (unreadable, empty, non-finite, not an audio rate, over a day)."""
    path = check_regular_file(path)
    try:
        info = sf.info(str(path))
        if not MIN_SAMPLE_RATE <= info.samplerate <= MAX_SAMPLE_RATE:
            raise AudioError(f"{path}: sample rate {info.samplerate} Hz is not an audio rate")
        if info.frames > MAX_SECONDS * info.samplerate:
            raise AudioError(f"{path}: longer than a day; cut it first")
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except AudioError:
        raise
    except Exception as err:
        raise AudioError(f"{path}: {_unreadable(err)}") from None
    if audio.shape[0] == 0:
        raise AudioError(f"{path}: empty file (no samples)")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(audio.T), int(sr)


def write_channels(path: str | os.PathLike, audio: np.ndarray, sample_rate: int,
                   force: bool = False) -> Path:
    """[channels, n_samples] (or [n_samples]) as 32-bit float WAV or 24-bit FLAC (as ``fx``
    writes: a 24-bit song keeps its resolution), atomically."""
    path = check_audio_output(path, force)
    data = np.clip(np.atleast_2d(np.asarray(audio, np.float32)).T, -1.0, 1.0)
    fmt, subtype = ("WAV", "FLOAT") if path.suffix.lower() == ".wav" else ("FLAC", "PCM_24")
    atomic_write_bytes(path, lambda tmp: sf.write(tmp, data, sample_rate, format=fmt,
                                                  subtype=subtype))
    return path


def check_outputs(output: Path, preset_out: Path | None, inputs: list, force: bool) -> None:
    """Refuse, before any work, outputs that exist (without ``force``), are inputs, or lie
    inside an input or the controller's folder."""
    check_writable(output, force, inputs, AUDIO_OUTPUT_SUFFIXES)
    if preset_out is not None:
        check_writable(preset_out, force, inputs, (".json",))
        if preset_out.resolve() == output.resolve():
            raise AudioError(f"{preset_out}: the preset and the audio need two names")


def apply_file(controller, input_path, output_path, reference_path=None, preset_out=None,
               force: bool = False, chain=None, n_workers: int = 2, real: bool = True,
               loaded=None) -> tuple[Applied, list[str]]:
    """A file through a controller: the output at the input's rate and channels, the preset
    written to ``preset_out`` if given. Returns (what :func:`apply_controller` gave, notes).

    Args:
        controller: a controller folder or a shipped controller's name.
        loaded: the controller already loaded (``(net, meta)``), for many files.
    """
    output_path = Path(output_path)
    preset_out = Path(preset_out) if preset_out is not None else None
    inputs = [input_path, controller_path(controller)] + ([reference_path] if reference_path
                                                          else [])
    check_outputs(output_path, preset_out, inputs, force)
    loaded = loaded or load_controller(controller)
    audio, sr = read_channels(input_path)
    ref, ref_sr = read_channels(reference_path) if reference_path is not None else (None, None)
    try:
        check_input_signal(audio.reshape(-1))
    except InputError as err:  # silent, NaN: name the file
        raise InputError(f"{input_path}: {err}") from None
    applied = apply_controller(loaded, audio, sr, ref, ref_sr, chain, n_workers, real)
    notes = list(applied.notes)
    peak = float(np.abs(applied.audio).max(initial=0.0))
    out = applied.audio
    if peak > 1.0:
        out = limit_peak(out)
        notes.append(f"the output peaked at {20 * np.log10(peak):+.1f} dBFS; scaled down to "
                     "just below full scale")
    write_channels(output_path, out, sr, force)
    if preset_out is not None:
        preset = sources_relative_to(applied.preset, preset_out.parent)
        atomic_write_text(preset_out, json.dumps(preset, indent=2) + "\n")
    return applied, notes
