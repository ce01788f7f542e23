"""Features the decoder listens to: f0 (CREPE, see :mod:`ddsp_synth.pitch`) and A-weighted
loudness, for a whole recording analysed block by block, with a per-recording cache.

Both are computed on the shared frame grid of :mod:`ddsp_synth.dsp.interpolation`: frame ``t`` is centred
on sample ``t * hop`` and a signal of ``n`` samples has ``ceil(n / hop)`` frames. The
streaming front end (:mod:`ddsp_synth.streaming.features`) gives the same loudness and the
same pitch model frame by frame.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .audio_io import PCM16_SCALE, atomic_write_bytes, cache_dir, resample_audio
from .config import ConfigError, check_fields
from .crepe_grid import CREPE_SAMPLE_RATE
from .dsp.interpolation import n_frames_for
from .dsp.spectral import a_weighted_loudness
from .dsp.units import cents_to_hz, hz_to_cents
from .pitch import analysis_frames, crepe_activations, decode_f0_readings, second_model_for


@dataclass(frozen=True)
class FeatureConfig:
    """How features are extracted; stored in every dataset and model.

    Attributes:
        sample_rate: Hz of the audio the features describe.
        hop: samples per frame at ``sample_rate``.
        crepe_model: ``"tiny"`` or ``"full"``.
        crepe_batch_frames: CREPE frames per forward pass (bounds memory).
        loudness_n_fft: window of the loudness spectrum, samples at ``sample_rate``.
        f0_min_hz, f0_max_hz: pitch search range.
    """

    sample_rate: int = 16000
    hop: int = 160
    crepe_model: str = "tiny"
    crepe_batch_frames: int = 512
    loudness_n_fft: int = 1024
    f0_min_hz: float = 31.7
    f0_max_hz: float = 2006.0

    def __post_init__(self):
        check_fields(self, ranges={"sample_rate": (8000, 192000), "hop": (8, 8192),
                                   "crepe_batch_frames": (1, 8192), "loudness_n_fft": (64, 65536),
                                   "f0_min_hz": (20.0, 4000.0), "f0_max_hz": (20.0, 4000.0)},
                     choices={"crepe_model": ("tiny", "full")})
        if self.f0_min_hz >= self.f0_max_hz:
            raise ConfigError(f"f0_min_hz ({self.f0_min_hz:g}) must be below f0_max_hz "
                              f"({self.f0_max_hz:g})")
        if not 10.0 <= self.frame_rate_hz <= 1000.0:
            raise ConfigError(f"hop {self.hop} at {self.sample_rate} Hz gives "
                              f"{self.frame_rate_hz:g} frames/s; use 10 to 1000")

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.hop

    @classmethod
    def for_sample_rate(cls, sample_rate: int = 16000, frame_rate_hz: float = 100.0,
                        crepe_model: str = "tiny", hop: int | None = None) -> "FeatureConfig":
        """Settings for a sample rate: hop for the frame rate (unless given), loudness window
        ~64 ms (1024 samples at 16 kHz, scaled by a power of two)."""
        scale = 2 ** round(math.log2(sample_rate / 16000))
        return cls(sample_rate=sample_rate, hop=hop or int(round(sample_rate / frame_rate_hz)),
                   crepe_model=crepe_model, loudness_n_fft=1024 * scale)


def compute_f0(audio: np.ndarray, config: FeatureConfig,
               valid_frames: tuple[int, int] | None = None,
               repairs: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """f0 and confidence on the shared frame grid.

    CREPE runs at 16 kHz on its own grid (hop ``round(hop * 16000 / sample_rate)``), decoded
    with the harmonic check on the same windows (:func:`ddsp_synth.pitch.decode_f0`); when
    that grid differs from the model's, f0 (in cents) and confidence are interpolated onto it.

    Args:
        audio: [n_samples] float audio at ``config.sample_rate``.
        valid_frames: frames ``[lo, hi)`` that hold real signal when ``audio`` was padded with
            context beyond a file's ends; only they enter the Viterbi decoding, so a block
            decodes like the same frames of the whole file. Frames outside repeat the edge.
        repairs: see :func:`ddsp_synth.pitch.decode_f0` (False to measure a model's output).

    Returns:
        f0_hz, confidence: [ceil(n_samples / hop)] float32.
    """
    repaired, as_read, conf = f0_readings(audio, config, valid_frames)
    return repaired if repairs else as_read, conf


def _at_crepe_rate(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """[n_samples] at ``sample_rate`` -> [ceil(n_samples * 16000 / sample_rate)] float32
    (soxr, high quality; zeros pad the last sample if soxr gives one fewer)."""
    n = int(np.ceil(len(audio) * (float(CREPE_SAMPLE_RATE) / sample_rate)))
    out = resample_audio(audio, sample_rate, CREPE_SAMPLE_RATE)[:n]
    return np.pad(out, (0, n - len(out)))


def f0_readings(audio: np.ndarray, config: FeatureConfig,
                valid_frames: tuple[int, int] | None = None, on_progress=None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`compute_f0` with and without the repairs, from one CREPE pass: f0_hz
    repaired, f0_hz as read, confidence, [ceil(n_samples / hop)] float32 each.
    ``on_progress``: see :func:`~ddsp_synth.pitch.crepe_activations`."""
    n_frames = n_frames_for(len(audio), config.hop)
    lo, hi = valid_frames if valid_frames is not None else (0, n_frames)
    if config.sample_rate != CREPE_SAMPLE_RATE:
        audio_16k = _at_crepe_rate(audio, config.sample_rate)
    else:
        audio_16k = np.asarray(audio, np.float32)
    hop_16k = max(1, int(round(config.hop * CREPE_SAMPLE_RATE / config.sample_rate)))
    n_crepe = 1 + len(audio_16k) // hop_16k
    t_model = np.arange(n_frames) * config.hop / config.sample_rate
    t_crepe = np.arange(n_crepe) * hop_16k / CREPE_SAMPLE_RATE
    # CREPE frames spanning the valid model frames (one extra either side for interpolation):
    # the only ones read (a block's padding beyond a file's ends is not).
    c_lo = max(0, int(np.floor(t_model[lo] * CREPE_SAMPLE_RATE / hop_16k)) - 1)
    c_hi = min(n_crepe, int(np.ceil(t_model[hi - 1] * CREPE_SAMPLE_RATE / hop_16k)) + 2)
    act = crepe_activations(audio_16k, hop_16k, config.crepe_model, config.crepe_batch_frames,
                            on_progress, frames=(c_lo, c_hi))
    readings = decode_f0_readings(
        act, config.f0_min_hz, config.f0_max_hz,
        lambda i, j: analysis_frames(audio_16k, hop_16k, c_lo + i, c_lo + j),
        second_model=second_model_for(config.crepe_model))

    def on_grid(values: np.ndarray) -> np.ndarray:
        return np.interp(t_model, t_crepe[c_lo:c_hi], values)

    repaired, as_read, conf = readings
    return (cents_to_hz(on_grid(hz_to_cents(repaired))).astype(np.float32),
            cents_to_hz(on_grid(hz_to_cents(as_read))).astype(np.float32),
            on_grid(conf).astype(np.float32))


def compute_loudness(audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """A-weighted loudness in dB on the shared grid: [ceil(n_samples / hop)] float32."""
    with torch.inference_mode():
        x = torch.as_tensor(np.ascontiguousarray(audio, dtype=np.float32))[None]
        loud = a_weighted_loudness(x, config.sample_rate, config.hop, config.loudness_n_fft)
    return loud[0, :, 0].numpy()


def compute_features(audio: np.ndarray, config: FeatureConfig,
                     valid_frames: tuple[int, int] | None = None,
                     repairs: bool = True, as_read: bool = False,
                     on_progress=None) -> dict[str, np.ndarray]:
    """All features of one signal: ``f0_hz``, ``confidence``, ``loudness_db``, [n_frames] each.

    ``valid_frames``, ``repairs``: see :func:`compute_f0`. ``as_read`` adds
    ``f0_hz_as_read``, the f0 without the repairs, from the same CREPE pass (what ``eval``
    measures a model's input by while the model hears ``f0_hz``). ``on_progress``: called
    with the share of the CREPE pass done (:func:`~ddsp_synth.pitch.crepe_activations`).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono [n_samples], got shape {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise ValueError("audio contains NaN or infinite samples")
    repaired, read, conf = f0_readings(audio, config, valid_frames, on_progress)
    out = {"f0_hz": repaired if repairs else read, "confidence": conf,
           "loudness_db": compute_loudness(audio, config)}
    if as_read:
        out["f0_hz_as_read"] = read
    return out


def features_in_blocks(audio: np.ndarray, config: FeatureConfig, block_seconds: float = 60.0,
                       context_seconds: float = 2.0, progress=None,
                       repairs: bool = True, as_read: bool = False) -> dict:
    """Features of a long signal computed block by block with context on both sides.

    Each block of ``block_seconds`` is analysed with ``context_seconds`` of neighbouring audio
    (zeros beyond the ends, like the centred analysis of a whole file), and only its own
    frames are kept, so the result matches a whole-file analysis while memory stays bounded.

    Args:
        audio: [n_samples] float, or int16 PCM (a memmap is fine).
        repairs: see :func:`compute_f0` (False to measure a model's output).
        as_read: also ``f0_hz_as_read`` (:func:`compute_features`).

    Returns:
        dict of [ceil(n_samples / hop)] float32 arrays: f0_hz, confidence, loudness_db
        (and f0_hz_as_read).
    """
    hop = config.hop
    n = len(audio)
    n_frames = n_frames_for(n, hop)
    block_frames = max(1, int(block_seconds * config.frame_rate_hz))
    ctx_frames = int(np.ceil(context_seconds * config.frame_rate_hz))
    keys = ("f0_hz", "confidence", "loudness_db") + (("f0_hz_as_read",) if as_read else ())
    out = {k: np.empty(n_frames, np.float32) for k in keys}
    for f0 in range(0, n_frames, block_frames):
        f1 = min(n_frames, f0 + block_frames)
        a0 = (f0 - ctx_frames) * hop
        a1 = (f1 + ctx_frames) * hop
        seg = np.zeros(a1 - a0, np.float32)
        lo, hi = max(0, a0), min(n, a1)
        seg[lo - a0 : hi - a0] = audio[lo:hi] / PCM16_SCALE if audio.dtype == np.int16 else audio[lo:hi]
        valid = (max(0, -a0) // hop, (min(n, a1) - a0 + hop - 1) // hop)
        on_crepe, rest = _block_progress(progress, (f1 - f0) / config.frame_rate_hz)
        feats = compute_features(seg, config, valid, repairs, as_read, on_crepe)
        for k in out:
            out[k][f0:f1] = feats[k][ctx_frames : ctx_frames + (f1 - f0)]
        rest()
    return out


# The share of a block's analysis time its CREPE pass takes (the rest: the Viterbi, the
# harmonic check and its second opinion, loudness), by which the progress bar moves during
# the pass (measured 2026-12-07: 0.77-0.88 on three 60 s files, two threads)
CREPE_SHARE = 0.82


def advance_progress(bar, n: float) -> None:
    """``bar.update(n)``, but never past the bar's total where it has one: shares and
    frame-rounded seconds add up to a hair more than a total counted in samples (tqdm then
    warns and shows a negative time left)."""
    total = getattr(bar, "total", None)
    if total is not None:
        n = max(0.0, min(n, total - bar.n))
    bar.update(n)


def _block_progress(progress, block_seconds: float):
    """(on_crepe(share_done), rest()): advance ``progress`` (a tqdm over seconds of audio)
    by ``CREPE_SHARE`` of the block's seconds as its CREPE pass goes, the rest at its end;
    no-ops without a bar."""
    if progress is None:
        return None, lambda: None
    done = [0.0]

    def on_crepe(share: float) -> None:
        step = CREPE_SHARE * block_seconds * share - done[0]
        advance_progress(progress, step)
        done[0] += step

    def rest() -> None:
        advance_progress(progress, block_seconds - done[0])

    return on_crepe, rest


# 2: the Viterbi jump and the harmonic check (issue 23) changed every f0; 3: the restart at
# unsure frames and the two repairs after the check changed some; 4: the second opinion on
# the octaves the check was unsure of changed some.
FEATURE_CACHE_VERSION = 4


def analyse(audio: np.ndarray, feature_config: FeatureConfig, progress=None,
            cache: bool = True) -> dict:
    """Features of an input signal, block by block (bounded memory for long files).

    With ``cache``, features are kept in ``cache_dir()/features`` under a SHA-256 of the
    samples and the feature settings, so transferring the same recording again (another
    instrument, other settings: the usual way to use the app) skips pitch tracking.
    """
    audio = np.ascontiguousarray(audio, np.float32)
    path = None
    if cache:
        h = hashlib.sha256(audio.tobytes())
        h.update(json.dumps([FEATURE_CACHE_VERSION, feature_config.__dict__],
                            sort_keys=True).encode())
        path = cache_dir() / "features" / f"{h.hexdigest()[:32]}.npz"
        try:
            with np.load(path) as z:
                feats = {k: z[k] for k in ("f0_hz", "confidence", "loudness_db")}
            if progress is not None:
                progress.update(len(audio) / feature_config.sample_rate)
            return feats
        except (OSError, KeyError, ValueError):
            pass  # not cached yet, or a damaged entry: compute it again
    feats = features_in_blocks(audio, feature_config, progress=progress)
    if path is not None:
        buf = io.BytesIO()
        np.savez(buf, **feats)
        try:
            atomic_write_bytes(path, lambda tmp: Path(tmp).write_bytes(buf.getvalue()))
        except OSError:
            pass  # a read-only cache only costs speed
    return feats
