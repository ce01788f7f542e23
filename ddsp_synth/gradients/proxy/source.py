"""Random segments of training audio for proxies (and controllers): recordings with a
held-out tail, or synthetic tones where there are none."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


class AudioSource:
    """Random segments of training audio, with a held-out tail of each file.

    Files are the shared recordings (``../shared/data/train/*.flac`` beside the checkout)
    unless paths are given; without any, harmonic tones with envelopes and noise bursts are
    synthesised, so training runs anywhere.
    """

    HELD_OUT_SECONDS = 20.0

    def __init__(self, sample_rate: int, paths: list[str | os.PathLike] | None = None,
                 seed: int = 0):
        from ...audio_io import find_audio_files, load_audio

        self.sample_rate = sample_rate
        self.rng = np.random.default_rng(seed)
        if paths is None:
            root = Path(__file__).resolve().parents[4] / "shared" / "data" / "train"
            paths = sorted(root.glob("*.flac")) if root.is_dir() else []
        elif paths:  # files and folders, as prepare and control take them ([]: synthetic)
            paths = find_audio_files(paths)
        self.paths = [str(p) for p in paths]
        self.train, self.held = [], []
        for p in self.paths:
            audio = load_audio(p, sample_rate)
            cut = max(len(audio) // 2, len(audio) - int(self.HELD_OUT_SECONDS * sample_rate))
            self.train.append(audio[:cut])
            self.held.append(audio[cut:])

    def _synthetic(self, n: int, rng) -> np.ndarray:
        t = np.arange(n) / self.sample_rate
        f0 = rng.uniform(80, 800)
        y = sum(np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.28)) / k ** rng.uniform(0.5, 2)
                for k in range(1, 12) if k * f0 < self.sample_rate / 2)
        y = y + rng.uniform(0, 0.5) * rng.standard_normal(n)
        env = np.interp(t, np.linspace(0, t[-1] + 1e-9, 6), rng.uniform(0, 1, 6) ** 2)
        return (y * env).astype(np.float32)

    def segment(self, n_samples: int, held_out: bool = False, rng=None) -> np.ndarray:
        """[n_samples] float32 segment, peak-normalised to 1 (silence-free where possible)."""
        rng = rng or self.rng
        pool = self.held if held_out else self.train
        for _ in range(20):
            if pool:
                audio = pool[rng.integers(len(pool))]
                if len(audio) <= n_samples:
                    x = np.pad(audio, (0, n_samples - len(audio)))
                else:
                    start = rng.integers(len(audio) - n_samples)
                    x = audio[start : start + n_samples]
            else:
                x = self._synthetic(n_samples, rng)
            peak = float(np.abs(x).max())
            if peak > 1e-3:
                return (x / peak).astype(np.float32)
        return self._synthetic(n_samples, rng) / 1.0

    def batch(self, batch: int, n_samples: int, level_db_range, held_out=False, rng=None):
        """[batch, n_samples] segments at random peak levels (dBFS) in ``level_db_range``."""
        rng = rng or self.rng
        lo, hi = level_db_range
        x = np.stack([self.segment(n_samples, held_out, rng) for _ in range(batch)])
        gains = 10.0 ** (rng.uniform(lo, hi, size=(batch, 1)) / 20.0)
        return (x * gains).astype(np.float32)
