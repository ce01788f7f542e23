"""A preset's chain applied to audio files through the real devices (``ddsp-synth fx``).

What pedalboard's ``board(audio, sample_rate)`` does, as a command: any rate the devices
accept, any number of channels (the same settings on each), any length (blocks of
``BLOCK_SECONDS`` streamed through devices that carry their state; devices that cannot
stream, such as command-line effects, get the whole file in one call). The output keeps the
input's rate and channels: a ``.wav`` is written as 32-bit float (no clipping), a ``.flac``
as 24-bit (clipped at full scale, and said so).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio_io import (MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioError, _unreadable,
                       atomic_write_bytes, check_regular_file)
from .rack import Preset, Rack

BLOCK_SECONDS = 30.0


def _open(path: Path) -> sf.SoundFile:
    check_regular_file(path)
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:  # noqa: BLE001 - libsndfile's reasons, one line
        raise AudioError(f"{path}: {_unreadable(err)}") from None
    if not MIN_SAMPLE_RATE <= f.samplerate <= MAX_SAMPLE_RATE:
        f.close()
        raise AudioError(f"{path}: sample rate {f.samplerate} Hz is not an audio rate")
    if f.frames == 0:
        f.close()
        raise AudioError(f"{path}: empty file (no samples)")
    return f


def check_input(path: str | os.PathLike) -> None:
    """AudioError (one line) unless ``path`` is audio ``fx`` can read (header only)."""
    _open(Path(path)).close()


def _streams(rack: Rack) -> bool:
    """Whether every device of the rack can continue from one block to the next."""
    return bool(getattr(rack.chain, "streamable", True))


def fx_file(preset: Preset, src: str | os.PathLike, dst: str | os.PathLike,
            n_workers: int = 1, progress=None) -> dict:
    """``src`` through the preset's real devices into ``dst`` (written atomically).

    Returns:
        ``seconds``, ``sample_rate``, ``channels``, ``peak`` (the output's, linear) and
        ``clipped`` (a FLAC output that had to be clipped).
    """
    src, dst = Path(src), Path(dst)
    with _open(src) as f:
        sr, channels = f.samplerate, f.channels
        subtype = "FLOAT" if dst.suffix.lower() == ".wav" else "PCM_24"
        peak = 0.0
        with Rack(preset, sr, engine="real", n_workers=n_workers) as rack:
            if rack.chain is not None and not _streams(rack):
                blocks = [f.read(dtype="float32", always_2d=True)]  # one call, whole file
                player = rack
            else:
                blocks = f.blocks(blocksize=int(BLOCK_SECONDS * sr), dtype="float32",
                                  always_2d=True)
                player = rack.stream(channels) if rack.chain is not None else rack

            def write(tmp: str) -> None:
                nonlocal peak
                with sf.SoundFile(tmp, "w", sr, channels, subtype=subtype,
                                  format="WAV" if subtype == "FLOAT" else "FLAC") as out:
                    for block in blocks:
                        if not np.all(np.isfinite(block)):
                            raise AudioError(f"{src}: audio contains NaN or infinite samples")
                        y = player.process(block)
                        peak = max(peak, float(np.abs(y).max(initial=0.0)))
                        out.write(np.clip(y, -1.0, 1.0) if subtype != "FLOAT" else y)
                        if progress is not None:
                            progress.update(len(block) / sr)

            atomic_write_bytes(dst, write)
            if hasattr(player, "close") and player is not rack:
                player.close()
        seconds = f.frames / sr
    return {"seconds": seconds, "sample_rate": sr, "channels": channels, "peak": peak,
            "clipped": subtype != "FLOAT" and peak > 1.0}
